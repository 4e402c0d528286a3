//! PKCE code challenge methods by name (RFC 7636 §4.3). Only S256 exists here: `plain` would let
//! an intercepted code be redeemed, so it is an unknown value like any other.

/// How a code challenge was derived from its verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    /// BASE64URL(SHA-256(verifier)).
    S256,
}

impl PkceMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PkceMethod::S256 => "S256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s == "S256").then_some(PkceMethod::S256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s256_is_a_method() {
        assert_eq!(PkceMethod::parse("S256"), Some(PkceMethod::S256));
        for other in ["plain", "s256", "S512", ""] {
            assert_eq!(PkceMethod::parse(other), None, "{other}");
        }
    }
}
