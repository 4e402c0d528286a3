//! The password policy (length bounds, not the account's email, not a common password) and
//! generated passwords. Hashing and verification live in `opentrusty-password`, which only the
//! auth plane links.

use crate::DomainError;

/// Shortest password the policy accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password the policy accepts (bounds hashing cost per request).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a new password against the policy: length bounds and not equal to the account's email.
pub fn check_policy(password: &str, email: &str) -> Result<(), DomainError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(DomainError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters long"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(DomainError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters long"),
        ));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(DomainError::new(
            "password",
            "must not be the same as the email address",
        ));
    }
    if is_common(password) {
        return Err(DomainError::new(
            "password",
            "is one of the most common passwords, which attackers try first; choose another",
        ));
    }
    Ok(())
}

/// A random password of `len` characters from an alphabet without look-alike characters
/// (no 0/O, 1/l/I), for passwords an operator has to read off a terminal.
pub fn generate_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % ALPHABET.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        crate::secret::fill_random(&mut buf);
        for b in buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_the_broken_rule() {
        assert!(
            check_policy("short", "a@example.com")
                .unwrap_err()
                .message
                .contains("at least 10")
        );
        assert!(
            check_policy(&"x".repeat(257), "a@example.com")
                .unwrap_err()
                .message
                .contains("at most 256")
        );
        assert!(
            check_policy("Ada@Example.com", "ada@example.com")
                .unwrap_err()
                .message
                .contains("email")
        );
        assert!(check_policy("a long enough passphrase", "a@example.com").is_ok());
    }

    #[test]
    fn generated_passwords_have_the_length_and_alphabet() {
        let a = generate_password(24);
        assert_eq!(a.chars().count(), 24);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c))
        );
        assert_ne!(a, generate_password(24));
    }
}

/// Whether `password` is on the shipped list of common passwords (data/README.md), compared
/// case-insensitively.
pub fn is_common(password: &str) -> bool {
    static LIST: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    let list = LIST.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .collect()
    });
    list.contains(password.trim().to_lowercase().as_str())
}

#[cfg(test)]
mod common_password_tests {
    use super::*;

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for p in ["1234567890", "qwertyuiop", "Password123", "QWERTYUIOP"] {
            let listed = is_common(p);
            if listed {
                assert_eq!(check_policy(p, "a@b.co").unwrap_err().field, "password");
            }
        }
        assert!(is_common("1234567890"));
        assert!(is_common("QwErTyUiOp"));
        assert!(!is_common("correct horse battery staple"));
        assert!(check_policy("correct horse battery staple", "a@b.co").is_ok());
    }
}
