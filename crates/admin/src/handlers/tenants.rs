//! Tenants: listed, created, changed and deleted by platform administrators; a tenant's own
//! administrators change its display settings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use opentrusty_core::TenantId;
use opentrusty_core::rbac::{Permission, Scope};
use opentrusty_core::tenant::{self, TenantName, TenantPatch, TenantStatus};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::ApiError;
use crate::views::*;

use super::{ApiResult, Errors, page, tenant_id};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = TenantList), Errors))]
pub async fn list_tenants(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<TenantList>> {
    caller.require(Permission::PlatformManageTenants, Scope::Platform)?;
    let q: PageQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    let after = Cursor::after(q.cursor.as_deref())?.map(TenantId);
    let rows = state.store().list_tenants(after, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |t| Cursor::After(t.id.0), TenantView::from);
    Ok(Json(TenantList { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), Errors))]
pub async fn create_tenant(
    State(state): State<AdminState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    caller.require(Permission::PlatformManageTenants, Scope::Platform)?;
    let req: CreateTenant = input::json(&headers, &body)?;
    let name = TenantName::parse(&req.name)?;
    let display = tenant::display_name(req.display_name.as_deref())?;
    let t = state
        .store()
        .create_tenant(&name, display.as_deref(), caller.origin())
        .await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = TenantView), Errors))]
pub async fn get_tenant(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let t = tenant_id(&t)?;
    caller.require(Permission::TenantView, Scope::Tenant(t))?;
    let tenant = state
        .store()
        .get_tenant(t)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(tenant.into()))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = Uuid, Path)), request_body = UpdateTenant,
    responses((status = 200, body = TenantView), Errors))]
pub async fn update_tenant(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<TenantView>> {
    let t = tenant_id(&t)?;
    let req: UpdateTenant = input::json(&headers, &body)?;
    let patch = TenantPatch {
        name: req.name.as_deref().map(TenantName::parse).transpose()?,
        display_name: req
            .display_name
            .map(|v| tenant::display_name(v.as_deref()))
            .transpose()?,
        logo_url: req
            .logo_url
            .map(|v| tenant::logo_url(v.as_deref()))
            .transpose()?,
        accent_color: req
            .accent_color
            .map(|v| tenant::accent_color(v.as_deref()))
            .transpose()?,
        status: req.status.map(|s| match s {
            TenantStatusName::Active => TenantStatus::Active,
            TenantStatusName::Suspended => TenantStatus::Suspended,
        }),
    };
    if patch.is_platform_change() {
        caller.require(Permission::PlatformManageTenants, Scope::Platform)?;
    } else {
        caller.require(Permission::TenantUpdateSettings, Scope::Tenant(t))?;
    }
    let updated = state
        .store()
        .update_tenant(t, &patch, caller.origin())
        .await?;
    Ok(Json(updated.into()))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted; its sessions and tokens ended"), Errors))]
pub async fn delete_tenant(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::PlatformManageTenants, Scope::Platform)?;
    let t = tenant_id(&t)?;
    state.store().delete_tenant(t, caller.origin()).await?;
    Ok(StatusCode::NO_CONTENT)
}
