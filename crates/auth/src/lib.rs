//! The authentication plane's HTTP surface: everything end users and relying parties talk to
//! (OpenID Connect protocol endpoints, login, consent and logout pages). It is the only plane that
//! verifies credentials and signs tokens.

use axum::Router;
use opentrusty_core::secret::MasterKey;
use opentrusty_store::Store;

/// The name this plane reports in probes and logs.
pub const SERVICE: &str = "opentrusty-auth";

/// Everything the auth plane's handlers share.
#[derive(Clone)]
pub struct AuthState {
    pub store: Store,
    /// The installation's master key, from which keys for data at rest are derived.
    pub master_key: MasterKey,
}

/// The auth plane's routes (probes are added by the listener that serves them).
pub fn router(state: AuthState) -> Router {
    Router::new().with_state(state)
}
