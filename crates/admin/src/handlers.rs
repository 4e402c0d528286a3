//! Request handlers of the admin API. Each one authenticates (the [`Caller`] extractor), makes
//! exactly one permission check through [`Caller::require`] and, when it acts on a user or a
//! client, exactly one role-hierarchy check through [`may_act_on_target`], calls the store once
//! or twice and renders a view. Writes carry the caller's origin so their audit rows name them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use opentrusty_core::client::{ClientSettings, NewClient, client_secret_digest};
use opentrusty_core::rbac::{self, Permission, Role, Scope, may_grant};
use opentrusty_core::secret::{fill_random, random_token, token_digest};
use opentrusty_core::tenant::{self, TenantName, TenantPatch, TenantStatus};
use opentrusty_core::user::{NewUser, UserPatch};
use opentrusty_core::{ClientId, TenantId, UserId, now};
use opentrusty_store::{AuditQuery, EnrollmentPurpose, NewEnrollmentLink, Subject, UserFilter};

use crate::AdminState;
use crate::caller::{Caller, Credential};
use crate::input::{self, Cursor};
use crate::problem::{ApiError, HierarchyRule, Problem};
use crate::views::*;

type ApiResult<T> = Result<T, ApiError>;

/// Error responses any admin operation may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Malformed request (JSON syntax, `X-Tenant-ID` header).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid session cookie or bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// The caller lacks the permission or a CSRF or origin rule failed (`forbidden`), or the role
    /// hierarchy refuses (`role-hierarchy`, naming the `role`): the user or client acted on holds
    /// a role the caller may not grant, or the request grants or revokes one.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource, or one in a tenant the caller cannot see.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The change conflicts with what exists.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// A field is invalid; `field` names it.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The database is unreachable; retry after `Retry-After` seconds.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// Keeps the first `limit` of `rows` (fetched with one extra) and the cursor of the next page.
fn page<T, V>(
    mut rows: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> Cursor,
    view: impl FnMut(T) -> V,
) -> (Vec<V>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| position(r).encode())
    } else {
        None
    };
    (rows.into_iter().map(view).collect(), next)
}

fn tenant_id(raw: &str) -> ApiResult<TenantId> {
    Ok(TenantId(input::id(raw)?))
}

/// A new enrollment link: its URL (carrying the token) and what the store keeps.
fn enrollment_link(state: &AdminState, purpose: EnrollmentPurpose) -> (String, NewEnrollmentLink) {
    let token = random_token();
    let link = NewEnrollmentLink {
        token_digest: token_digest(&token),
        purpose,
        expires_at: now() + time::Duration::seconds(state.settings().enrollment_ttl_secs),
    };
    (
        format!("{}/enroll?token={token}", state.settings().auth_base_url),
        link,
    )
}

// ---------------------------------------------------------------- me

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "session",
    responses((status = 200, body = MeView), Errors))]
pub async fn me(State(state): State<AdminState>, caller: Caller) -> ApiResult<Json<MeView>> {
    caller.require(Permission::ControlPlaneLogin, caller.home())?;
    let store = state.store();
    let tenant = match caller.tenant {
        Some(t) => store.get_tenant(t).await?.map(TenantView::from),
        None => None,
    };
    let client = match (caller.client, caller.tenant) {
        (Some(c), Some(t)) => store.get_client(t, c).await?.map(ClientView::from),
        _ => None,
    };
    let mut permissions: Vec<String> = caller
        .grants()
        .iter()
        .map(|g| g.permission.as_str().to_owned())
        .collect();
    permissions.sort();
    permissions.dedup();
    let csrf_token = match &caller.credential {
        Credential::Session { digest } => Some(opentrusty_core::secret::session_csrf_token(
            state.master_key(),
            digest,
        )),
        Credential::Bearer => None,
    };
    Ok(Json(MeView {
        kind: if caller.user.is_some() {
            "user"
        } else {
            "client"
        }
        .to_owned(),
        roles: store
            .assignments_of(caller.subject)
            .await?
            .into_iter()
            .map(AssignmentView::from)
            .collect(),
        user: caller.user.clone().map(UserView::from),
        client,
        tenant,
        permissions,
        csrf_token,
    }))
}

// ---------------------------------------------------------------- tenants

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

// ---------------------------------------------------------------- users

/// Checks `permission` in tenant `t` and that the tenant is live (a platform operator asking
/// for a deleted or unknown tenant gets 404, not an empty list).
async fn in_tenant(
    state: &AdminState,
    caller: &Caller,
    permission: Permission,
    t: TenantId,
) -> ApiResult<()> {
    caller.require(permission, Scope::Tenant(t))?;
    if state.store().get_tenant(t).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

fn user_ids(t: &str, u: &str) -> ApiResult<(TenantId, UserId)> {
    Ok((tenant_id(t)?, UserId(input::id(u)?)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path), UserListQuery),
    responses((status = 200, body = UserList), Errors))]
pub async fn list_users(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<UserList>> {
    let t = tenant_id(&t)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    let q: UserListQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    let after = Cursor::after(q.cursor.as_deref())?.map(UserId);
    if q.email_prefix.as_ref().is_some_and(|p| p.len() > 320) {
        return Err(ApiError::validation("email_prefix", "is too long"));
    }
    let filter = UserFilter {
        email_prefix: q.email_prefix.filter(|p| !p.is_empty()),
        status: q.status.map(Into::into),
    };
    let rows = state
        .store()
        .list_users(t, &filter, after, limit + 1)
        .await?;
    // A page with users proves the tenant live; only an empty one needs the look-up.
    if rows.is_empty() && state.store().get_tenant(t).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let (items, next_cursor) = page(rows, limit, |u| Cursor::After(u.id.0), UserView::from);
    Ok(Json(UserList { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path)), request_body = CreateUser,
    responses((status = 201, body = CreatedUser), Errors))]
pub async fn create_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let t = tenant_id(&t)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    let req: CreateUser = input::json(&headers, &body)?;
    let new = NewUser::new(
        Some(t),
        &req.email,
        req.given_name.as_deref(),
        req.family_name.as_deref(),
    )?;
    let role = req.role.map(Role::from);
    if let Some(role) = role
        && !may_grant(caller.grants(), role, &Scope::Tenant(t))
    {
        return Err(ApiError::RoleHierarchy {
            rule: HierarchyRule::Grant,
            role,
        });
    }
    let (url, link) = enrollment_link(&state, EnrollmentPurpose::Enroll);
    let user = state
        .store()
        .provision_user(&new, role, &link, caller.origin())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user.into(),
            enrollment_url: url,
            enrollment_expires_at: link.expires_at,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = UserDetail), Errors))]
pub async fn get_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<UserDetail>> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    let user = state
        .store()
        .get_user(t, u)
        .await?
        .ok_or(ApiError::NotFound)?;
    let roles = state.store().assignments_of(Subject::User(u)).await?;
    Ok(Json(UserDetail {
        user: user.into(),
        roles: roles.into_iter().map(AssignmentView::from).collect(),
    }))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserView), Errors))]
pub async fn update_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<UserView>> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    may_act_on_target(&state, &caller, t, Subject::User(u), None).await?;
    let req: UpdateUser = input::json(&headers, &body)?;
    let patch = UserPatch::new(
        req.given_name.as_ref().map(|v| v.as_deref()),
        req.family_name.as_ref().map(|v| v.as_deref()),
        req.status.map(Into::into),
    )?;
    let user = state
        .store()
        .update_user(t, u, &patch, caller.origin())
        .await?;
    Ok(Json(user.into()))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted; sessions and tokens ended"), Errors))]
pub async fn delete_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    may_act_on_target(&state, &caller, t, Subject::User(u), None).await?;
    state.store().delete_user(t, u, caller.origin()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/password-reset",
    tag = "users", params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 201, body = EnrollmentLinkView), Errors))]
pub async fn password_reset(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<EnrollmentLinkView>)> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    let held = may_act_on_target(&state, &caller, t, Subject::User(u), None).await?;
    let (url, link) = enrollment_link(&state, EnrollmentPurpose::Reset);
    state
        .store()
        .issue_enrollment_link(t, u, &held, &link, caller.origin())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentLinkView {
            enrollment_url: url,
            enrollment_expires_at: link.expires_at,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/users/{user_id}/unlock",
    tag = "users", params(("tenant_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = UserView), Errors))]
pub async fn unlock_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<UserView>> {
    let (t, u) = user_ids(&t, &u)?;
    caller.require(Permission::TenantManageUsers, Scope::Tenant(t))?;
    may_act_on_target(&state, &caller, t, Subject::User(u), None).await?;
    let user = state.store().unlock_user(t, u, caller.origin()).await?;
    Ok(Json(user.into()))
}

// ---------------------------------------------------------------- the role hierarchy

/// The one role-hierarchy check of an action on a user or a client of tenant `t`, made after
/// the route's permission check. The subject is looked up in `t` first, so one of another
/// tenant (or a platform operator, who has none) answers 404 exactly like an id that exists
/// nowhere, before anything about its roles is read. The caller must then be able to grant
/// every role the subject holds (`rbac::may_act_on`) and, when the action grants or revokes
/// `changing`, that role too (`rbac::may_grant`). Returns the roles the decision was made on.
async fn may_act_on_target(
    state: &AdminState,
    caller: &Caller,
    t: TenantId,
    subject: Subject,
    changing: Option<Role>,
) -> ApiResult<Vec<(Role, Scope)>> {
    let store = state.store();
    let found = match subject {
        Subject::User(u) => store.get_user(t, u).await?.is_some(),
        Subject::Client(c) => store.get_client(t, c).await?.is_some(),
    };
    if !found {
        return Err(ApiError::NotFound);
    }
    let held = store.assignments_of(subject).await?;
    rbac::may_act_on(caller.grants(), &held).map_err(|role| ApiError::RoleHierarchy {
        rule: HierarchyRule::Target,
        role,
    })?;
    if let Some(role) = changing
        && !may_grant(caller.grants(), role, &Scope::Tenant(t))
    {
        return Err(ApiError::RoleHierarchy {
            rule: HierarchyRule::Grant,
            role,
        });
    }
    Ok(held)
}

// ---------------------------------------------------------------- roles

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

// ---------------------------------------------------------------- clients

fn client_ids(t: &str, c: &str) -> ApiResult<(TenantId, ClientId)> {
    Ok((tenant_id(t)?, ClientId(input::id(c)?)))
}

fn client_scope(t: TenantId, c: ClientId) -> Scope {
    Scope::Client {
        tenant: t,
        client: c,
    }
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

// ---------------------------------------------------------------- sessions

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

// ---------------------------------------------------------------- audit

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

// ---------------------------------------------------------------- keys

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(PageQuery),
    responses((status = 200, body = KeyList), Errors))]
pub async fn list_keys(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<KeyList>> {
    caller.require(Permission::PlatformManageKeys, Scope::Platform)?;
    let q: PageQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    // Keys are few: page over the full, newest-first list by position.
    let skip = match q.cursor.as_deref() {
        None => 0,
        Some(c) => match Cursor::decode(c)? {
            Cursor::Skip(n) => n as usize,
            _ => return Err(ApiError::validation("cursor", "belongs to another list")),
        },
    };
    let keys = state.store().list_signing_keys().await?;
    let end = (skip + limit as usize).min(keys.len());
    let next_cursor = (end < keys.len()).then(|| Cursor::Skip(end as u32).encode());
    let items = keys
        .into_iter()
        .skip(skip)
        .take(limit as usize)
        .map(KeyView::from)
        .collect();
    Ok(Json(KeyList { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", request_body(content = Option<RotateKeys>),
    responses((status = 200, body = RotatedKeys), Errors))]
pub async fn rotate_keys(
    State(state): State<AdminState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RotatedKeys>> {
    caller.require(Permission::PlatformManageKeys, Scope::Platform)?;
    let req: RotateKeys = if body.is_empty() {
        RotateKeys::default()
    } else {
        input::json(&headers, &body)?
    };
    if let Some(alg) = &req.alg
        && opentrusty_core::signing::Algorithm::parse(alg).is_none()
    {
        return Err(ApiError::validation("alg", "use RS256, ES256 or EdDSA"));
    }
    let store = state.store();
    // A retired key stays published for as long as any token it signed may live.
    let keep = store.longest_token_lifetime_secs().await?.max(3600) + 300;
    let until = now() + time::Duration::seconds(keep);
    let rotated = store
        .promote_next_signing_keys(req.alg.as_deref(), until, caller.origin())
        .await?;
    Ok(Json(RotatedKeys {
        rotated: rotated
            .into_iter()
            .map(|(alg, retired_kid, active_kid)| RotatedKey {
                alg,
                retired_kid,
                active_kid,
            })
            .collect(),
    }))
}
