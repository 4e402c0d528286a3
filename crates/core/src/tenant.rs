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

#[cfg(test)]
mod tests {
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
