//! Tenant roles of users and service-account clients, granted and revoked under the role
//! hierarchy.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use opentrusty_core::TenantId;
use opentrusty_core::rbac::{Permission, Role, Scope};
use opentrusty_store::Subject;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self};
use crate::problem::ApiError;
use crate::views::*;

use super::{ApiResult, Errors, client_ids, may_act_on_target, user_ids};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(grant_user_role))
        .routes(routes!(revoke_user_role))
        .routes(routes!(grant_client_role))
        .routes(routes!(revoke_client_role))
}

/// Grants or revokes a tenant role of a subject living in tenant `t`, provided the caller may
/// act on the subject and holds every permission of the role there.
async fn change_role(
    state: &AdminState,
    caller: &Caller,
    t: TenantId,
    subject: Subject,
    role: Role,
    grant: bool,
) -> ApiResult<()> {
    caller.require(Permission::TenantManageRoles, Scope::Tenant(t))?;
    let scope = Scope::Tenant(t);
    may_act_on_target(state, caller, t, subject, Some(role)).await?;
    let store = state.store();
    if grant {
        store
            .assign_role(subject, role, scope, caller.origin())
            .await?;
    } else {
        store
            .revoke_role(subject, role, scope, caller.origin())
            .await?;
    }
    Ok(())
}

fn role_name(raw: &str) -> ApiResult<Role> {
    match Role::parse(raw) {
        Some(
            r @ (Role::TenantOwner
            | Role::TenantAdmin
            | Role::TenantMember
            | Role::TenantResourceServer),
        ) => Ok(r),
        _ => Err(ApiError::NotFound),
    }
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/roles", tag = "roles",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = GrantRole,
    responses((status = 204, description = "Granted"), Errors))]
pub async fn grant_user_role(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (t, u) = user_ids(&t, &u)?;
    let req: GrantRole = input::json(&headers, &body)?;
    change_role(&state, &caller, t, Subject::User(u), req.role.into(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/roles/{role}",
    tag = "roles",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path), ("role" = TenantRoleName, Path)),
    responses((status = 204, description = "Revoked"), Errors))]
pub async fn revoke_user_role(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = user_ids(&t, &u)?;
    let role = role_name(&role)?;
    change_role(&state, &caller, t, Subject::User(u), role, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles",
    tag = "roles", params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path)),
    request_body = GrantRole, responses((status = 204, description = "Granted"), Errors))]
pub async fn grant_client_role(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (t, c) = client_ids(&t, &c)?;
    let req: GrantRole = input::json(&headers, &body)?;
    change_role(
        &state,
        &caller,
        t,
        Subject::Client(c),
        req.role.into(),
        true,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles/{role}",
    tag = "roles",
    params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path), ("role" = TenantRoleName, Path)),
    responses((status = 204, description = "Revoked"), Errors))]
pub async fn revoke_client_role(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (t, c) = client_ids(&t, &c)?;
    let role = role_name(&role)?;
    change_role(&state, &caller, t, Subject::Client(c), role, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
