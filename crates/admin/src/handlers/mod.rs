//! Request handlers of the admin API. Each one authenticates (the [`Caller`] extractor), makes
//! exactly one permission check through [`Caller::require`] and, when it acts on a user or a
//! client, exactly one role-hierarchy check through [`may_act_on_target`], calls the store once
//! or twice and renders a view. Writes carry the caller's origin so their audit rows name them.

mod audit;
mod clients;
mod keys;
mod me;
mod roles;
mod sessions;
mod tenants;
mod users;

use opentrusty_core::rbac::{self, Permission, Role, Scope, may_grant};
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::{ClientId, TenantId, UserId, now};
use opentrusty_store::{EnrollmentPurpose, NewEnrollmentLink, Subject};
use utoipa_axum::router::OpenApiRouter;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::{ApiError, HierarchyRule, Problem};

pub(crate) type ApiResult<T> = Result<T, ApiError>;

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
pub(super) fn page<T, V>(
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

pub(super) fn tenant_id(raw: &str) -> ApiResult<TenantId> {
    Ok(TenantId(input::id(raw)?))
}

/// A new enrollment link: its URL (carrying the token) and what the store keeps.
pub(super) fn enrollment_link(
    state: &AdminState,
    purpose: EnrollmentPurpose,
) -> (String, NewEnrollmentLink) {
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

/// Checks `permission` in tenant `t` and that the tenant is live (a platform operator asking
/// for a deleted or unknown tenant gets 404, not an empty list).
pub(super) async fn in_tenant(
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

pub(super) fn user_ids(t: &str, u: &str) -> ApiResult<(TenantId, UserId)> {
    Ok((tenant_id(t)?, UserId(input::id(u)?)))
}

/// The one role-hierarchy check of an action on a user or a client of tenant `t`, made after
/// the route's permission check. The subject is looked up in `t` first, so one of another
/// tenant (or a platform operator, who has none) answers 404 exactly like an id that exists
/// nowhere, before anything about its roles is read. The caller must then be able to grant
/// every role the subject holds (`rbac::may_act_on`) and, when the action grants or revokes
/// `changing`, that role too (`rbac::may_grant`). Returns the roles the decision was made on.
pub(super) async fn may_act_on_target(
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

pub(super) fn client_ids(t: &str, c: &str) -> ApiResult<(TenantId, ClientId)> {
    Ok((tenant_id(t)?, ClientId(input::id(c)?)))
}

pub(super) fn client_scope(t: TenantId, c: ClientId) -> Scope {
    Scope::Client {
        tenant: t,
        client: c,
    }
}

/// Every route of the admin API: each handler's `#[utoipa::path]` is the one place its method and
/// path are written; each resource module lists its handlers once, a `routes!` line per path.
pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .merge(me::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(roles::routes())
        .merge(clients::routes())
        .merge(sessions::routes())
        .merge(audit::routes())
        .merge(keys::routes())
}
