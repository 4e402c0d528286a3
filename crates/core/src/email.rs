//! Email addresses as login identifiers: normalisation (so `Ada@Example.com ` and
//! `ada@example.com` are one account) and a deliberately modest shape check.

use crate::DomainError;

/// Longest address SMTP can carry (RFC 5321 §4.5.3.1.3).
const MAX_EMAIL_LEN: usize = 254;

/// An email address as the user typed it, plus its normalised form used for uniqueness and
/// lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    normalized: String,
}

impl Email {
    /// Validates and normalises an address: surrounding whitespace is dropped and the whole
    /// address is lower-cased (providers treat the local part case-insensitively in practice, and
    /// two accounts differing only by case are a support and phishing hazard).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let display = input.trim();
        if display.is_empty() {
            return Err(DomainError::new("email", "is required"));
        }
        if display.len() > MAX_EMAIL_LEN {
            return Err(DomainError::new(
                "email",
                format!("must be at most {MAX_EMAIL_LEN} characters"),
            ));
        }
        if display.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::new("email", "must not contain spaces"));
        }
        let Some((local, domain)) = display.rsplit_once('@') else {
            return Err(DomainError::new("email", "must look like name@example.com"));
        };
        if local.is_empty()
            || domain.is_empty()
            || local.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(DomainError::new("email", "must look like name@example.com"));
        }
        Ok(Self {
            display: display.to_owned(),
            normalized: display.to_lowercase(),
        })
    }

    /// The address as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The lookup key: unique per tenant.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let e = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(e.normalized(), "ada.lovelace@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@@example.com",
            "a da@example.com",
            "ada@.example.com",
            "ada@example..com",
            "ada@example.com.",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
