//! Tenants as the API shows them and the requests that create and change them.

use opentrusty_core::Timestamp;
use opentrusty_core::tenant::Tenant;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::input::double_option;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
    pub status: TenantStatusName,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Lifecycle state of a tenant (`deleted` tenants are never returned).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatusName {
    Active,
    Suspended,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            display_name: t.display_name,
            logo_url: t.logo_url,
            accent_color: t.accent_color,
            status: match t.status {
                opentrusty_core::tenant::TenantStatus::Active => TenantStatusName::Active,
                _ => TenantStatusName::Suspended,
            },
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique among live tenants, compared case-insensitively; 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub display_name: Option<String>,
}

/// Absent fields stay as they are; `null` clears an optional one. `name` and `status` need
/// `platform:manage_tenants`; the display settings need `tenant:update_settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub display_name: Option<Option<String>>,
    /// An https image URL shown on the tenant's sign-in pages.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub logo_url: Option<Option<String>>,
    /// `#rrggbb`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub accent_color: Option<Option<String>>,
    pub status: Option<TenantStatusName>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub items: Vec<TenantView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
