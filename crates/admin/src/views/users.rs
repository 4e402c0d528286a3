//! Users as the API shows them, the requests that create and change them, and list queries.

use opentrusty_core::rbac::Role;
use opentrusty_core::user::User;
use opentrusty_core::{Timestamp, now};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::roles::AssignmentView;
use crate::input::double_option;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub email: String,
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub status: UserStatusName,
    /// Whether sign-in is locked after repeated failures right now.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UserStatusName {
    Active,
    Disabled,
}

impl From<UserStatusName> for opentrusty_core::user::UserStatus {
    fn from(s: UserStatusName) -> Self {
        match s {
            UserStatusName::Active => Self::Active,
            UserStatusName::Disabled => Self::Disabled,
        }
    }
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            tenant_id: u.tenant_id.map(|t| t.0),
            email: u.email,
            email_verified: u.email_verified,
            given_name: u.given_name,
            family_name: u.family_name,
            status: match u.status {
                opentrusty_core::user::UserStatus::Active => UserStatusName::Active,
                opentrusty_core::user::UserStatus::Disabled => UserStatusName::Disabled,
            },
            locked: u.locked_until.is_some_and(|t| t > now()),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A user with the roles they hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    pub roles: Vec<AssignmentView>,
}

/// The roles a tenant's users and service accounts may be given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum TenantRoleName {
    #[serde(rename = "tenant_owner")]
    Owner,
    #[serde(rename = "tenant_admin")]
    Admin,
    #[serde(rename = "tenant_member")]
    Member,
    /// For a service-account client that is an API: it may introspect the tenant's tokens.
    #[serde(rename = "tenant_resource_server")]
    ResourceServer,
}

impl From<TenantRoleName> for Role {
    fn from(r: TenantRoleName) -> Self {
        match r {
            TenantRoleName::Owner => Role::TenantOwner,
            TenantRoleName::Admin => Role::TenantAdmin,
            TenantRoleName::Member => Role::TenantMember,
            TenantRoleName::ResourceServer => Role::TenantResourceServer,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// An email address, at most 254 characters.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"
    )]
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// A tenant role to grant at once.
    pub role: Option<TenantRoleName>,
}

/// Absent fields stay as they are; `null` clears a name. Disabling ends the user's sessions and
/// revokes their tokens.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub family_name: Option<Option<String>>,
    pub status: Option<UserStatusName>,
}

/// A new user and the link with which they set their password.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    /// Single-use link to the auth plane where the user sets a password.
    pub enrollment_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrollment_expires_at: Timestamp,
}

/// A password-reset link; earlier unused links of the user stop working.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentLinkView {
    pub enrollment_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrollment_expires_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only users whose email starts with this (case-insensitive).
    pub email_prefix: Option<String>,
    pub status: Option<UserStatusName>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}
