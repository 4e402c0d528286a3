//! A user's browser sessions: listed and ended.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use opentrusty_core::rbac::{Permission, Scope};
use opentrusty_store::Subject;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::ApiError;
use crate::views::*;

use super::{ApiResult, Errors, may_act_on_target, page, user_ids};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default().routes(routes!(list_sessions, end_sessions))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/sessions",
    tag = "sessions", params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = SessionList), Errors))]
pub async fn list_sessions(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<SessionList>> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageSessions, Scope::Tenant(t))?;
    let q: PageQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    let after = Cursor::after(q.cursor.as_deref())?;
    if state.store().get_user(t, u).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let rows = state
        .store()
        .list_sessions(t, u, after.map(opentrusty_core::SessionId), limit + 1)
        .await?;
    let (items, next_cursor) = page(rows, limit, |s| Cursor::After(s.id.0), SessionView::from);
    Ok(Json(SessionList { items, next_cursor }))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/sessions",
    tag = "sessions", params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = SessionsEnded), Errors))]
pub async fn end_sessions(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<SessionsEnded>> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageSessions, Scope::Tenant(t))?;
    may_act_on_target(&state, &caller, t, Subject::User(u), None).await?;
    let ended = state
        .store()
        .end_user_sessions(t, u, caller.origin())
        .await?;
    Ok(Json(SessionsEnded { ended }))
}
