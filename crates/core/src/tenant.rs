//! Tenants: the isolation boundary. Every user (except platform operators), client, session and
//! token belongs to exactly one tenant. There is no default tenant.

use serde::{Deserialize, Serialize};

use crate::{DomainError, TenantId, Timestamp};

/// Longest tenant name accepted.
pub const MAX_NAME_CHARS: usize = 100;

/// Lifecycle state of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Users may sign in and clients may obtain tokens.
    Active,
    /// Nobody in the tenant may sign in or obtain tokens; data is kept.
    Suspended,
    /// Soft-deleted: hidden from every listing, its sessions, clients and tokens ended.
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            "deleted" => Some(TenantStatus::Deleted),
            _ => None,
        }
    }
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub display_name: Option<String>,
    /// Shown on the tenant's sign-in pages: an https image URL.
    pub logo_url: Option<String>,
    /// Accent colour of the tenant's pages, `#rrggbb`.
    pub accent_color: Option<String>,
    pub status: TenantStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// A validated tenant name and its uniqueness key (names are unique case-insensitively among
/// tenants that are not deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName {
    pub name: String,
    pub key: String,
}

impl TenantName {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(DomainError::new("name", "is required"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(DomainError::new(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(DomainError::new(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key: name.to_lowercase(),
        })
    }
}

/// A change to a tenant; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPatch {
    pub name: Option<TenantName>,
    pub display_name: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
    pub accent_color: Option<Option<String>>,
    /// Active or suspended; deletion has its own operation.
    pub status: Option<TenantStatus>,
}

impl TenantPatch {
    /// Whether the patch touches what only platform operators decide (name, status), as opposed
    /// to the tenant's own display settings.
    pub fn is_platform_change(&self) -> bool {
        self.name.is_some() || self.status.is_some()
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters; blank clears it.
pub fn display_name(input: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(v) = input.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > MAX_NAME_CHARS || v.chars().any(char::is_control) {
        return Err(DomainError::new(
            "display_name",
            format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    Ok(Some(v.to_owned()))
}

/// A logo URL: absolute `https` (or `http` on a loopback host, for development), at most 2000
/// characters; blank clears it.
pub fn logo_url(input: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(v) = input.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = v.len() <= 2000
        && url::Url::parse(v).is_ok_and(|u| {
            u.username().is_empty()
                && u.password().is_none()
                && match u.scheme() {
                    "https" => u.host().is_some(),
                    "http" => crate::uri::is_loopback(&u),
                    _ => false,
                }
        });
    if !ok {
        return Err(DomainError::new(
            "logo_url",
            "must be an absolute https URL of at most 2000 characters",
        ));
    }
    Ok(Some(v.to_owned()))
}

/// An accent colour: `#rrggbb` (stored lowercase); blank clears it.
pub fn accent_color(input: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(v) = input.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let hex = v.strip_prefix('#').unwrap_or("");
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::new("accent_color", "must look like #1a2b3c"));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_settings_are_validated() {
        assert_eq!(
            display_name(Some("  Acme ")).unwrap().as_deref(),
            Some("Acme")
        );
        assert_eq!(display_name(Some(" ")).unwrap(), None);
        assert!(display_name(Some(&"x".repeat(101))).is_err());
        assert!(
            logo_url(Some("https://cdn.example/logo.png"))
                .unwrap()
                .is_some()
        );
        assert!(logo_url(Some("http://cdn.example/logo.png")).is_err());
        assert!(logo_url(Some("javascript:alert(1)")).is_err());
        assert_eq!(
            accent_color(Some("#A1B2C3")).unwrap().as_deref(),
            Some("#a1b2c3")
        );
        assert!(accent_color(Some("red")).is_err());
        assert!(accent_color(Some("#12345g")).is_err());
    }

    use super::*;

    #[test]
    fn names_are_trimmed_and_keyed_case_insensitively() {
        let n = TenantName::parse("  Acme Corp ").unwrap();
        assert_eq!(n.name, "Acme Corp");
        assert_eq!(n.key, "acme corp");
        assert_eq!(TenantName::parse("ACME CORP").unwrap().key, n.key);
    }

    #[test]
    fn rejects_empty_long_and_control_names() {
        assert_eq!(TenantName::parse("  ").unwrap_err().field, "name");
        assert!(TenantName::parse(&"a".repeat(101)).is_err());
        assert!(TenantName::parse(&"a".repeat(100)).is_ok());
        assert!(TenantName::parse("a\nb").is_err());
    }

    #[test]
    fn status_round_trips() {
        for s in [
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Deleted,
        ] {
            assert_eq!(TenantStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TenantStatus::parse("gone"), None);
    }
}
