//! The authentication plane's HTTP surface: everything end users and relying parties talk to
//! (OpenID Connect protocol endpoints, sign-in, consent and sign-out pages, the console's
//! control-plane login). It is the only plane that verifies credentials and signs tokens.
//! Handlers are thin: parse, call the store and the protocol crate, render.

mod authorize;
mod control_plane;
mod http;
pub mod keys;
mod logout;
mod pages;
mod resources;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use opentrusty_core::password::PasswordHasher;
use opentrusty_core::secret::MasterKey;
use opentrusty_store::Store;

pub use keys::KeyRing;

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
    /// Origins of the admin console, which calls the control-plane sign-in and sign-out from
    /// its own origin (CORS with credentials).
    pub console_origins: Vec<String>,
}

struct Inner {
    store: Store,
    master_key: MasterKey,
    settings: AuthSettings,
    keys: KeyRing,
    hasher: PasswordHasher,
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
        Self(Arc::new(Inner {
            issuer_origin,
            store,
            master_key,
            settings,
            keys,
            hasher,
            dummy_hash,
        }))
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

/// The auth plane's routes (probes are added by the listener that serves them).
pub fn router(state: AuthState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(resources::discovery),
        )
        .route("/jwks.json", get(resources::jwks))
        .route("/.well-known/jwks.json", get(resources::jwks))
        .route(
            "/oauth2/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route(
            "/login",
            get(authorize::login_page).post(authorize::login_submit),
        )
        .route(
            "/consent",
            get(authorize::consent_page).post(authorize::consent_submit),
        )
        .route("/oauth2/token", post(token::token))
        .route(
            "/oauth2/userinfo",
            get(resources::userinfo_get).post(resources::userinfo_post),
        )
        .route("/oauth2/revoke", post(resources::revoke))
        .route("/oauth2/introspect", post(resources::introspect))
        .route(
            "/logout",
            get(logout::logout_page).post(logout::logout_submit),
        )
        .route("/oauth2/logout", get(logout::rp_logout))
        .merge(
            Router::new()
                .route("/api/v1/auth/login", post(control_plane::login))
                .route("/api/v1/auth/logout", post(control_plane::logout))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    control_plane::console_edge,
                )),
        )
        .with_state(state)
}
