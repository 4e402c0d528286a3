//! Who is calling: a console user with the auth plane's session cookie, or a service-account
//! client with a bearer token the auth plane issued. Both are checked against the database on
//! every request. [`Caller::require`] is the one authorization check every handler makes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::rbac::{Grant, Permission, Scope, allows};
use opentrusty_core::secret::{constant_time_eq, session_csrf_token, token_digest};
use opentrusty_core::user::{User, UserStatus};
use opentrusty_core::{ClientId, TenantId, now};
use opentrusty_store::Subject;
use opentrusty_web::{SESSION_COOKIE, cookie};

use crate::AdminState;
use crate::problem::ApiError;

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The session cookie; the digest derives the session's CSRF token.
    Session { digest: [u8; 32] },
    /// A bearer access token of a service-account client.
    Bearer,
}

/// An authenticated caller and everything it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    /// The caller's own tenant (`None` for platform operators).
    pub tenant: Option<TenantId>,
    /// The signed-in user (session callers).
    pub user: Option<User>,
    /// The client acting as a service account (bearer callers).
    pub client: Option<ClientId>,
    pub credential: Credential,
    grants: Vec<Grant>,
    origin: Origin,
}

impl Caller {
    /// The one authorization check: `permission` at `at`. A caller who lacks it gets 403,
    /// except when `at` lies in a tenant the caller cannot see at all: then 404, so nobody
    /// learns that another tenant's resources exist.
    pub fn require(&self, permission: Permission, at: Scope) -> Result<(), ApiError> {
        if allows(&self.grants, permission, &at) {
            return Ok(());
        }
        let tenant = match at {
            Scope::Platform => None,
            Scope::Tenant(t) | Scope::Client { tenant: t, .. } => Some(t),
        };
        match tenant {
            Some(t) if !self.sees_tenant(t) => Err(ApiError::NotFound),
            _ => Err(ApiError::Forbidden(
                "you lack the permission this request needs",
            )),
        }
    }

    /// Whether the caller may know that tenant `t` exists: its own tenant, or one where it
    /// holds any grant.
    fn sees_tenant(&self, t: TenantId) -> bool {
        self.tenant == Some(t)
            || self
                .grants
                .iter()
                .any(|g| g.scope.covers(&Scope::Tenant(t)))
    }

    /// The scope the caller lives in: its tenant, or the platform for operators.
    pub fn home(&self) -> Scope {
        match self.tenant {
            Some(t) => Scope::Tenant(t),
            None => Scope::Platform,
        }
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Who made the change, for the audit trail.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

fn unauthenticated(detail: &'static str, bearer: bool) -> ApiError {
    ApiError::Unauthenticated { detail, bearer }
}

/// The bearer token of an `Authorization` header; `Err` when the header is not a bearer one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || unauthenticated("the Authorization header must be `Bearer <token>`", true);
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 4096 {
        return Err(malformed());
    }
    Ok(Some(token))
}

fn request_origin(parts: &Parts, actor: Actor) -> Origin {
    let text = |h: header::HeaderName, max: usize| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(max).collect::<String>())
    };
    Origin {
        actor: Some(actor),
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: text(header::USER_AGENT, 512),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned),
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        if parts.headers.contains_key("x-tenant-id") {
            return Err(ApiError::BadRequest(
                "the tenant comes from your session or token; do not send X-Tenant-ID".to_owned(),
            ));
        }
        let store = state.store();
        if let Some(token) = bearer(&parts.headers)? {
            let caller = store
                .find_token_caller(&token_digest(token), now())
                .await?
                .filter(|c| c.token.active && c.token.user_id.is_none())
                .ok_or_else(|| unauthenticated("the access token is not valid here", true))?;
            let client = caller.token.client_id;
            return Ok(Caller {
                subject: Subject::Client(client),
                tenant: Some(caller.token.tenant_id),
                user: None,
                client: Some(client),
                credential: Credential::Bearer,
                grants: caller.grants,
                origin: request_origin(parts, Actor::Client(client)),
            });
        }
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(unauthenticated("sign in first", false));
        };
        let digest = token_digest(&value);
        let ended = || unauthenticated("the session has ended; sign in again", false);
        let caller = store
            .find_session_caller(&digest, now(), state.settings().session_idle_secs)
            .await?
            .ok_or_else(ended)?;
        let user = caller
            .user
            .filter(|u| u.status == UserStatus::Active)
            .ok_or_else(ended)?;
        if !caller.tenant_active {
            return Err(unauthenticated("your tenant is not active", false));
        }
        check_browser_rules(parts, state, &digest)?;
        Ok(Caller {
            subject: Subject::User(user.id),
            tenant: user.tenant_id,
            origin: request_origin(parts, Actor::User(user.id)),
            user: Some(user),
            client: None,
            credential: Credential::Session { digest },
            grants: caller.grants,
        })
    }
}

/// CSRF rules for cookie-authenticated requests: a cross-site `Origin` is refused on every
/// request, and every state-changing request carries the session's `X-CSRF-Token`.
fn check_browser_rules(
    parts: &Parts,
    state: &AdminState,
    digest: &[u8; 32],
) -> Result<(), ApiError> {
    if let Some(origin) = parts.headers.get(header::ORIGIN)
        && !origin
            .to_str()
            .is_ok_and(|o| state.settings().console_origins.iter().any(|c| c == o))
    {
        return Err(ApiError::Forbidden(
            "requests with a session cookie are accepted only from the console's origins",
        ));
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let expected = session_csrf_token(state.master_key(), digest);
        let presented = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Forbidden(
                "a missing or wrong X-CSRF-Token header: send the token the sign-in returned",
            ));
        }
    }
    Ok(())
}
