//! A tenant's users: provisioning with an enrollment link, changes, deletion, reset links and
//! unlocking.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use opentrusty_core::UserId;
use opentrusty_core::rbac::{Permission, Role, Scope, may_grant};
use opentrusty_core::user::{NewUser, UserPatch};
use opentrusty_store::{EnrollmentPurpose, Subject, UserFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::{ApiError, HierarchyRule};
use crate::views::*;

use super::{ApiResult, Errors, enrollment_link, may_act_on_target, page, tenant_id, user_ids};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(password_reset))
        .routes(routes!(unlock_user))
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
