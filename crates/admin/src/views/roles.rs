//! Role assignments as the API shows them and the request that grants one.

use opentrusty_core::rbac::{Role, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::users::TenantRoleName;

/// A role held at a scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignmentView {
    pub role: String,
    /// `platform`, `tenant` or `client`.
    pub scope: String,
    pub tenant_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
}

impl From<(Role, Scope)> for AssignmentView {
    fn from((role, scope): (Role, Scope)) -> Self {
        let (tenant_id, client_id) = match scope {
            Scope::Platform => (None, None),
            Scope::Tenant(t) => (Some(t.0), None),
            Scope::Client { tenant, client } => (Some(tenant.0), Some(client.0)),
        };
        Self {
            role: role.as_str().to_owned(),
            scope: scope.kind().as_str().to_owned(),
            tenant_id,
            client_id,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    pub role: TenantRoleName,
}
