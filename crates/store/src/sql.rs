//! Statements whose parameters are numbered by the code, not by hand: a statement names its
//! parameters (`:name`, used as often as needed) and lists the names once, in the order its
//! values are bound; [`numbered`] writes each `:name` as `$n`, `n` its place in that list.
//! `::type` casts and quoted text are left alone.

use std::fmt;

/// Why a statement's parameters could not be numbered: a programming error, which the
/// statements' unit test reports before any statement reaches a database.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NumberingError {
    /// The text names a parameter the list lacks.
    Unlisted(String),
    /// The list names a parameter the text never uses (its value would be bound to nothing).
    Unused(String),
}

impl fmt::Display for NumberingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberingError::Unlisted(n) => write!(f, "parameter :{n} is not in the list"),
            NumberingError::Unused(n) => write!(f, "parameter :{n} is listed but not used"),
        }
    }
}

/// `template` with every `:name` written `$n`, `n` the place (from 1) of `name` in `names`.
pub(crate) fn numbered(names: &[&str], template: &str) -> Result<String, NumberingError> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut used = vec![false; names.len()];
    let mut quoted = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b':' if !quoted && bytes.get(i + 1) == Some(&b':') => i += 1,
            b':' if !quoted
                && bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_lowercase()
                        || bytes[end].is_ascii_digit()
                        || bytes[end] == b'_')
                {
                    end += 1;
                }
                let name = &template[start..end];
                let place = names
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| NumberingError::Unlisted(name.to_owned()))?;
                used[place] = true;
                out.push_str(&template[copied..i]);
                out.push_str(&format!("${}", place + 1));
                copied = end;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&template[copied..]);
    if let Some(place) = used.iter().position(|u| !u) {
        return Err(NumberingError::Unused(names[place].to_owned()));
    }
    Ok(out)
}

/// A statement numbered once, for a `LazyLock`: one that cannot be numbered becomes its error's
/// text, which any database refuses (and the statements' unit test reports first).
pub(crate) fn statement(names: &[&str], template: &str) -> String {
    numbered(names, template).unwrap_or_else(|e| format!("-- unnumbered statement: {e}"))
}

/// `names` as owned strings, to join with names made at run time (`audit_parameters`).
pub(crate) fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// [`statement`] for a list of parameter names built at run time.
pub(crate) fn statement_of(names: &[String], template: &str) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    statement(&names, template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_by_their_place_in_the_list() {
        let sql = numbered(
            &["a", "b_2"],
            "SELECT :b_2::int8[], x::text, ':a' FROM t WHERE y = :a AND z = :a",
        );
        assert_eq!(
            sql.unwrap(),
            "SELECT $2::int8[], x::text, ':a' FROM t WHERE y = $1 AND z = $1"
        );
    }

    #[test]
    fn an_unlisted_or_unused_parameter_is_an_error() {
        assert_eq!(
            numbered(&["a"], "SELECT :a, :b"),
            Err(NumberingError::Unlisted("b".into()))
        );
        assert_eq!(
            numbered(&["a", "b"], "SELECT :a"),
            Err(NumberingError::Unused("b".into()))
        );
        assert!(statement(&[], "SELECT :a").starts_with("-- unnumbered"));
    }

    /// Every statement the store numbers this way numbers all its parameters, from `$1` to its
    /// last without a gap, and leaves no name behind.
    #[test]
    fn every_named_statement_is_numbered() {
        use crate::postgres::{batch, grant_writes};
        for (name, sql, parameters) in [
            ("sign-in", crate::sessions::SIGN_IN.as_str(), 21),
            (
                "sign-in with a code",
                crate::sessions::SIGN_IN_WITH_CODE.as_str(),
                47,
            ),
            ("code", crate::tokens::INSERT_CODE.as_str(), 14),
            ("code and audit row", crate::tokens::ISSUE_CODE.as_str(), 26),
            (
                "client token row",
                crate::tokens::CLIENT_TOKEN_ROW.as_str(),
                16,
            ),
            ("token writes", batch::TOKEN_WRITES.as_str(), 20),
            (
                "client token writes",
                batch::CLIENT_TOKEN_WRITES.as_str(),
                20,
            ),
            ("redemptions", grant_writes::REDEMPTIONS.as_str(), 31),
            ("rotations", grant_writes::ROTATIONS.as_str(), 22),
        ] {
            assert!(!sql.starts_with("--"), "{name}: {sql}");
            assert!(
                !sql.contains(" :") && !sql.contains("(:"),
                "{name} left a name: {sql}"
            );
            for n in 1..=parameters {
                assert!(sql.contains(&format!("${n}")), "{name} lacks ${n}");
            }
            assert!(!sql.contains(&format!("${}", parameters + 1)), "{name}");
        }
    }
}
