//! The audit trail of a tenant and of the platform, newest first, filtered and paged.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use opentrusty_core::TenantId;
use opentrusty_core::rbac::{Permission, Scope};
use opentrusty_store::AuditQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::ApiError;
use crate::views::*;

use super::{ApiResult, Errors, in_tenant, page, tenant_id};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(tenant_audit))
        .routes(routes!(platform_audit))
}

fn timestamp(
    field: &'static str,
    raw: Option<&str>,
) -> ApiResult<Option<opentrusty_core::Timestamp>> {
    raw.map(|v| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::validation(field, "must be an RFC 3339 instant"))
    })
    .transpose()
}

async fn audit_page(
    state: &AdminState,
    tenant: Option<TenantId>,
    raw: Option<&str>,
) -> ApiResult<AuditList> {
    let q: AuditQueryParams = input::query(raw)?;
    let limit = input::limit(q.limit.as_deref())?;
    let before = match q.cursor.as_deref().map(Cursor::decode).transpose()? {
        None => None,
        Some(Cursor::Before(micros, id)) => {
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .map_err(|_| ApiError::validation("cursor", "is not a cursor this API returned"))?;
            Some((at, opentrusty_core::ids::AuditEventId(id)))
        }
        Some(Cursor::After(_) | Cursor::Skip(_)) => {
            return Err(ApiError::validation("cursor", "belongs to another list"));
        }
    };
    let actor = q
        .actor
        .as_deref()
        .map(|a| {
            uuid::Uuid::parse_str(a).map_err(|_| ApiError::validation("actor", "must be an id"))
        })
        .transpose()?;
    let query = AuditQuery {
        tenant,
        action: q.action.filter(|a| !a.is_empty()),
        actor,
        target: q.target.filter(|t| !t.is_empty()),
        since: timestamp("since", q.since.as_deref())?,
        until: timestamp("until", q.until.as_deref())?,
        before,
        limit: limit + 1,
    };
    let rows = state.store().list_audit(&query).await?;
    let (items, next_cursor) = page(
        rows,
        limit,
        |e| {
            let micros = (e.occurred_at.unix_timestamp_nanos() / 1000) as i64;
            Cursor::Before(micros, e.id.0)
        },
        AuditEventView::from,
    );
    Ok(AuditList { items, next_cursor })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/audit", tag = "audit",
    params(("tenant_id" = Uuid, Path), AuditQueryParams),
    responses((status = 200, body = AuditList), Errors))]
pub async fn tenant_audit(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<AuditList>> {
    let t = tenant_id(&t)?;
    in_tenant(&state, &caller, Permission::TenantViewAudit, t).await?;
    Ok(Json(audit_page(&state, Some(t), q.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQueryParams),
    responses((status = 200, body = AuditList), Errors))]
pub async fn platform_audit(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<AuditList>> {
    caller.require(Permission::PlatformViewAudit, Scope::Platform)?;
    Ok(Json(audit_page(&state, None, q.as_deref()).await?))
}
