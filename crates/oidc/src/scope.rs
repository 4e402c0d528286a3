//! Scope strings (RFC 6749 §3.3): space-separated, order-insensitive sets of tokens.

use std::collections::BTreeSet;

/// A set of scope tokens, kept sorted so its string form is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a scope parameter; `None` if a token has characters RFC 6749 forbids.
    pub fn parse(s: &str) -> Option<Scopes> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return None;
            }
            set.insert(token.to_owned());
        }
        Some(Scopes(set))
    }

    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Scopes {
        Scopes(items.iter().map(|s| s.as_ref().to_owned()).collect())
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.union(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn without(&self, tokens: &[&str]) -> Scopes {
        Scopes(
            self.0
                .iter()
                .filter(|t| !tokens.contains(&t.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonically_and_compares_as_sets() {
        let a = Scopes::parse("profile  openid email").unwrap();
        assert_eq!(a.to_string(), "email openid profile");
        assert!(Scopes::parse("openid").unwrap().is_subset(&a));
        assert!(!a.is_subset(&Scopes::parse("openid").unwrap()));
        assert!(Scopes::parse("bad\"quote").is_none());
        assert!(Scopes::parse("back\\slash").is_none());
        assert!(Scopes::parse("").unwrap().is_empty());
    }
}
