//! A tenant's OAuth clients: registration, changes, deletion and secret rotation.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use opentrusty_core::ClientId;
use opentrusty_core::client::{ClientSettings, NewClient, client_secret_digest};
use opentrusty_core::rbac::{Permission, Scope};
use opentrusty_core::secret::{fill_random, random_token};
use opentrusty_store::Subject;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::ApiError;
use crate::views::*;

use super::{
    ApiResult, Errors, client_ids, client_scope, in_tenant, may_act_on_target, page, tenant_id,
};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(list_clients, create_client))
        .routes(routes!(get_client, update_client, delete_client))
        .routes(routes!(rotate_client_secret))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/clients", tag = "clients",
    params(("tenant_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = ClientList), Errors))]
pub async fn list_clients(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<ClientList>> {
    let t = tenant_id(&t)?;
    in_tenant(&state, &caller, Permission::TenantManageClients, t).await?;
    let q: PageQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    let after = Cursor::after(q.cursor.as_deref())?.map(ClientId);
    let rows = state.store().list_clients(t, after, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |c| Cursor::After(c.id.0), ClientView::from);
    Ok(Json(ClientList { items, next_cursor }))
}

/// A new public client identifier: 128 random bits, URL-safe.
fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/clients", tag = "clients",
    params(("tenant_id" = Uuid, Path)), request_body = CreateClient,
    responses((status = 201, body = CreatedClient), Errors))]
pub async fn create_client(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    let t = tenant_id(&t)?;
    caller.require(Permission::TenantManageClients, Scope::Tenant(t))?;
    let req: CreateClient = input::json(&headers, &body)?;
    let method = req
        .token_endpoint_auth_method
        .unwrap_or(AuthMethodName::ClientSecretBasic)
        .into();
    let mut s = ClientSettings::defaults(&req.client_name);
    req.into_changes().apply(&mut s)?;
    let settings = s.validate(method)?;
    let secret = (!method.is_public()).then(random_token);
    let new = NewClient::with_settings(
        t,
        &new_client_id(),
        method,
        secret.as_deref().map(client_secret_digest),
        settings,
    );
    let client = state.store().create_client(&new, caller.origin()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedClient {
            client: client.into(),
            client_secret: secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients",
    params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path)),
    responses((status = 200, body = ClientDetail), Errors))]
pub async fn get_client(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c)): Path<(String, String)>,
) -> ApiResult<Json<ClientDetail>> {
    let (t, c) = client_ids(&t, &c)?;
    caller.require(Permission::TenantManageClients, client_scope(t, c))?;
    let client = state
        .store()
        .get_client(t, c)
        .await?
        .ok_or(ApiError::NotFound)?;
    let roles = state.store().assignments_of(Subject::Client(c)).await?;
    Ok(Json(ClientDetail {
        client: client.into(),
        roles: roles.into_iter().map(AssignmentView::from).collect(),
    }))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients",
    params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path)), request_body = UpdateClient,
    responses((status = 200, body = ClientView), Errors))]
pub async fn update_client(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ClientView>> {
    let (t, c) = client_ids(&t, &c)?;
    caller.require(Permission::TenantManageClients, client_scope(t, c))?;
    may_act_on_target(&state, &caller, t, Subject::Client(c), None).await?;
    let req: UpdateClient = input::json(&headers, &body)?;
    let client = state
        .store()
        .update_client(
            t,
            c,
            |current| {
                let mut s = current.settings();
                req.apply(&mut s)?;
                s.validate(current.token_endpoint_auth_method)
            },
            caller.origin(),
        )
        .await?;
    Ok(Json(client.into()))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients",
    params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted; its tokens revoked"), Errors))]
pub async fn delete_client(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, c) = client_ids(&t, &c)?;
    caller.require(Permission::TenantManageClients, client_scope(t, c))?;
    may_act_on_target(&state, &caller, t, Subject::Client(c), None).await?;
    state.store().delete_client(t, c, caller.origin()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}/secret",
    tag = "clients", params(("tenant_id" = Uuid, Path), ("client_id" = Uuid, Path)),
    responses((status = 200, body = RotatedSecret), Errors))]
pub async fn rotate_client_secret(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, c)): Path<(String, String)>,
) -> ApiResult<Json<RotatedSecret>> {
    let (t, c) = client_ids(&t, &c)?;
    caller.require(Permission::TenantManageClients, client_scope(t, c))?;
    may_act_on_target(&state, &caller, t, Subject::Client(c), None).await?;
    let secret = random_token();
    let client = state
        .store()
        .rotate_client_secret(t, c, &client_secret_digest(&secret), caller.origin())
        .await?;
    Ok(Json(RotatedSecret {
        client: client.into(),
        client_secret: secret,
    }))
}
