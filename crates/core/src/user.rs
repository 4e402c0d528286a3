//! Users. A user belongs to exactly one tenant and is unique in it by normalised email; platform
//! operators are users with no tenant. The same email in two tenants is two unrelated people.

use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::{DomainError, TenantId, Timestamp, UserId};

/// Longest given or family name accepted.
pub const MAX_PERSON_NAME_CHARS: usize = 100;

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    /// `None` for platform operators.
    pub tenant_id: Option<TenantId>,
    pub email: String,
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub status: UserStatus,
    /// Set while sign-in is locked after repeated failures.
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// A validated request to create a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub tenant_id: Option<TenantId>,
    pub email: Email,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

impl NewUser {
    /// Validates the parts of a new user. `tenant_id` is `None` only for platform operators.
    pub fn new(
        tenant_id: Option<TenantId>,
        email: &str,
        given_name: Option<&str>,
        family_name: Option<&str>,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            tenant_id,
            email: Email::parse(email)?,
            given_name: person_name("given_name", given_name)?,
            family_name: person_name("family_name", family_name)?,
        })
    }
}

/// A change to a user; `None` leaves a field as it is, `Some(None)` clears a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub status: Option<UserStatus>,
}

impl UserPatch {
    /// Validates the parts of a change.
    pub fn new(
        given_name: Option<Option<&str>>,
        family_name: Option<Option<&str>>,
        status: Option<UserStatus>,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            given_name: given_name
                .map(|n| person_name("given_name", n))
                .transpose()?,
            family_name: family_name
                .map(|n| person_name("family_name", n))
                .transpose()?,
            status,
        })
    }
}

fn person_name(field: &'static str, input: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(name) = input.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_PERSON_NAME_CHARS {
        return Err(DomainError::new(
            field,
            format!("must be at most {MAX_PERSON_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_user_normalises_and_validates() {
        let t = TenantId::new();
        let u = NewUser::new(Some(t), " Ada@Example.com", Some(" Ada "), Some("")).unwrap();
        assert_eq!(u.email.normalized(), "ada@example.com");
        assert_eq!(u.given_name.as_deref(), Some("Ada"));
        assert_eq!(u.family_name, None);
        assert_eq!(
            NewUser::new(Some(t), "nope", None, None).unwrap_err().field,
            "email"
        );
        let long = "x".repeat(101);
        assert_eq!(
            NewUser::new(Some(t), "a@b.co", None, Some(&long))
                .unwrap_err()
                .field,
            "family_name"
        );
    }
}
