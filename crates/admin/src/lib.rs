//! The admin plane's HTTP surface: the management REST API under `/api/v1` used by the console and
//! by automation. It never handles passwords and never signs tokens.

use axum::Router;
use opentrusty_core::secret::MasterKey;
use opentrusty_store::Store;

/// The name this plane reports in probes and logs.
pub const SERVICE: &str = "opentrusty-admin";

/// Everything the admin plane's handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    /// The installation's master key, from which keys for data at rest are derived.
    pub master_key: MasterKey,
}

/// The admin plane's routes (probes are added by the listener that serves them).
pub fn router(state: AdminState) -> Router {
    Router::new().with_state(state)
}
