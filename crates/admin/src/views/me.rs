//! The caller, as `GET /auth/me` shows them.

use serde::Serialize;
use utoipa::ToSchema;

use super::clients::ClientView;
use super::roles::AssignmentView;
use super::tenants::TenantView;
use super::users::UserView;

/// The caller: a console user or a service-account client, where it lives and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `user` or `client`.
    pub kind: String,
    pub user: Option<UserView>,
    pub client: Option<ClientView>,
    /// The caller's tenant; absent for platform operators.
    pub tenant: Option<TenantView>,
    pub roles: Vec<AssignmentView>,
    /// Permission names the caller holds anywhere.
    pub permissions: Vec<String>,
    /// For cookie sessions: the value to send as `X-CSRF-Token` on changes.
    pub csrf_token: Option<String>,
}
