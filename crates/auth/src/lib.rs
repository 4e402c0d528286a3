//! The authentication plane's HTTP surface: everything end users and relying parties talk to
//! (OpenID Connect protocol endpoints, sign-in, consent and sign-out pages, the console's
//! control-plane login). It is the only plane that verifies credentials and signs tokens.
//! Handlers decode, call one flow, render; `error.rs` holds the two error types answers come from.

mod authorize;
mod browser_session;
mod consent;
mod control_plane;
mod cors;
mod csrf;
mod discovery;
mod error;
mod hashing;
mod http;
mod introspection;
pub mod keys;
mod limits;
mod login;
mod logout;
mod pages;
mod passwords;
mod presented_token;
mod revocation;
mod sign_in;
mod token;
mod userinfo;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post};
use opentrusty_core::secret::MasterKey;
use opentrusty_password::PasswordHasher;
use opentrusty_store::Store;

pub use keys::KeyRing;
pub use limits::{DEFAULT_IPV6_PREFIX, Rate, RateLimits};

/// The name this plane reports in probes and logs.
pub const SERVICE: &str = "opentrusty-auth";

/// Operator settings of the auth plane.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// Whether cookies get the `Secure` attribute (false only for a plain-http loopback issuer).
    pub cookie_secure: bool,
    /// `Domain` attribute of the session cookie, so the admin plane receives it.
    pub cookie_domain: Option<String>,
    pub session_idle_secs: i64,
    pub session_lifetime_secs: i64,
    pub code_ttl_secs: i64,
    pub refresh_grace_secs: i64,
    /// The algorithm JWT access tokens are signed with (ID tokens follow each client's
    /// `id_token_signed_response_alg`).
    pub access_token_alg: opentrusty_oidc::jose::Algorithm,
    /// Origins of the admin console, which calls the control-plane sign-in and sign-out from
    /// its own origin (CORS with credentials).
    pub console_origins: Vec<String>,
    /// Failed passwords that lock an account, and for how long.
    pub lockout: opentrusty_core::lockout::LockoutPolicy,
    /// Argon2 computations at once, and sign-ins that may wait for one.
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// Requests per client address on the endpoints worth guessing at.
    pub rate_limits: limits::RateLimits,
}

struct Inner {
    store: Store,
    master_key: MasterKey,
    settings: AuthSettings,
    keys: KeyRing,
    hasher: PasswordHasher,
    hash_pool: hashing::HashPool,
    limiter: limits::Limiter,
    issuer_origin: String,
    /// A hash that no password matches, verified when the email is unknown so that unknown and
    /// known emails cost the same time.
    dummy_hash: String,
}

/// Everything the auth plane's handlers share; cheap to clone.
#[derive(Clone)]
pub struct AuthState(Arc<Inner>);

impl AuthState {
    pub fn new(
        store: Store,
        master_key: MasterKey,
        settings: AuthSettings,
        hasher: PasswordHasher,
    ) -> Self {
        let keys = KeyRing::new(store.clone(), master_key.clone());
        let dummy_hash = hasher.hash(&opentrusty_core::secret::random_token());
        let issuer_origin = url::Url::parse(&settings.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let hash_pool = hashing::HashPool::new(settings.hash_workers, settings.hash_queue);
        Self(Arc::new(Inner {
            hash_pool,
            limiter: limits::Limiter::new(settings.rate_limits.ipv6_prefix),
            issuer_origin,
            store,
            master_key,
            settings,
            keys,
            hasher,
            dummy_hash,
        }))
    }

    /// A PHC hash of `password` with the current parameters, computed on the bounded pool.
    async fn hash_password(&self, password: &str) -> Result<String, hashing::Saturated> {
        let inner = self.0.clone();
        let password = password.to_owned();
        self.0
            .hash_pool
            .run(move |_| inner.hasher.hash(&password))
            .await
    }

    pub fn keys(&self) -> &KeyRing {
        &self.0.keys
    }

    fn store(&self) -> &Store {
        &self.0.store
    }

    fn settings(&self) -> &AuthSettings {
        &self.0.settings
    }

    fn issuer(&self) -> &str {
        &self.0.settings.issuer
    }

    /// The issuer's origin (`scheme://host[:port]`), what browsers send in `Origin`.
    fn issuer_origin(&self) -> &str {
        &self.0.issuer_origin
    }
}

/// Every route of the auth plane: method, path and handler. The router and the route table
/// (recorded in the server's route snapshots) both come from here.
fn endpoints() -> Vec<(Method, &'static str, MethodRouter<AuthState>)> {
    use authorize as az;
    vec![
        (
            Method::GET,
            "/.well-known/openid-configuration",
            get(discovery::discovery),
        ),
        (Method::GET, "/jwks.json", get(discovery::jwks)),
        (Method::GET, "/.well-known/jwks.json", get(discovery::jwks)),
        (Method::GET, "/oauth2/authorize", get(az::authorize_get)),
        (Method::POST, "/oauth2/authorize", post(az::authorize_post)),
        (Method::GET, "/login", get(login::login_page)),
        (Method::POST, "/login", post(login::login_submit)),
        (Method::GET, "/consent", get(consent::consent_page)),
        (Method::POST, "/consent", post(consent::consent_submit)),
        (Method::POST, "/oauth2/token", post(token::token)),
        (Method::GET, "/oauth2/userinfo", get(userinfo::userinfo_get)),
        (
            Method::POST,
            "/oauth2/userinfo",
            post(userinfo::userinfo_post),
        ),
        (Method::POST, "/oauth2/revoke", post(revocation::revoke)),
        (
            Method::POST,
            "/oauth2/introspect",
            post(introspection::introspect),
        ),
        (Method::GET, "/logout", get(logout::logout_page)),
        (Method::POST, "/logout", post(logout::logout_submit)),
        (Method::GET, "/oauth2/logout", get(logout::rp_logout)),
        (Method::GET, "/enroll", get(passwords::enroll_page)),
        (Method::POST, "/enroll", post(passwords::enroll_submit)),
        (Method::GET, "/password", get(passwords::change_page)),
        (Method::POST, "/password", post(passwords::change_submit)),
        (Method::POST, CONSOLE_LOGIN, post(control_plane::login)),
        (Method::POST, CONSOLE_LOGOUT, post(control_plane::logout)),
    ]
}

const CONSOLE_LOGIN: &str = "/api/v1/auth/login";
/// Endpoints that browser-based public clients call from their own origin (CORS).
const BROWSER_CLIENT_PATHS: [&str; 3] = ["/oauth2/token", "/oauth2/revoke", "/oauth2/userinfo"];
const CONSOLE_LOGOUT: &str = "/api/v1/auth/logout";

/// The auth plane's route table: `(method, path)` of every route it serves.
pub fn route_table() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The auth plane's routes (probes are added by the listener that serves them). The console's
/// sign-in and sign-out get their own origin rules and CORS.
pub fn router(state: AuthState) -> Router {
    let mut protocol = Router::new();
    let mut console = Router::new();
    let mut browser = Router::new();
    for (_, path, handler) in endpoints() {
        if path == CONSOLE_LOGIN || path == CONSOLE_LOGOUT {
            console = console.route(path, handler);
        } else if BROWSER_CLIENT_PATHS.contains(&path) {
            browser = browser.route(path, handler);
        } else {
            protocol = protocol.route(path, handler);
        }
    }
    protocol
        .merge(console.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            control_plane::console_edge,
        )))
        .merge(browser.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::browser_edge,
        )))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), hsts))
        .with_state(state)
}

/// With an https issuer, browsers are told to use https only for a year
/// (`Strict-Transport-Security`); on a plain-http development issuer nothing is added.
async fn hsts(
    axum::extract::State(state): axum::extract::State<AuthState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut r = next.run(req).await;
    if state.settings().cookie_secure {
        r.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}
