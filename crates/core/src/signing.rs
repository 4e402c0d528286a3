//! The JWS algorithms this provider signs with, by name: what a client registers for its ID
//! tokens and what a signing key is for. Signing and verifying live in `opentrusty-oidc`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A JWS algorithm this provider signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    RS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Case-sensitive, as JWS `alg` values are (RFC 7515 §4.1.1).
    pub fn parse(s: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == s)
    }

    /// `s` as an algorithm, or the error for `field` naming the ones there are.
    pub fn parse_field(s: &str, field: &'static str) -> Result<Algorithm, DomainError> {
        Algorithm::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Algorithm::ALL.map(Algorithm::as_str).to_vec();
            DomainError::new(field, format!("use one of {}", known.join(", ")))
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact_and_unknown_ones_are_refused() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
        }
        assert_eq!(Algorithm::parse("rs256"), None);
        assert_eq!(Algorithm::parse("none"), None);
        let e = Algorithm::parse_field("HS256", "alg").unwrap_err();
        assert_eq!(e.field, "alg");
        assert!(e.message.contains("RS256, ES256, EdDSA"), "{}", e.message);
    }
}
