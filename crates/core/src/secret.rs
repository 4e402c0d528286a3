//! Secrets: random tokens, their stored digests, constant-time comparison, and the installation's
//! master key. A bearer secret (session cookie, code, refresh token, link) is shown once and only
//! its SHA-256 is stored, so a database dump does not hand out live credentials.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::DomainError;

/// Fills `buf` from the operating system's CSPRNG.
#[allow(
    clippy::expect_used,
    reason = "without an OS random source no secret can be made safely"
)]
pub fn fill_random(buf: &mut [u8]) {
    // Without an OS random source no secret can be made safely; there is nothing to fall back to.
    getrandom::fill(buf).expect("the operating system random source is unavailable");
}

/// A fresh 256-bit secret, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The digest stored in place of a bearer secret.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Minimum length of the master key, in bytes.
pub const MASTER_KEY_MIN_BYTES: usize = 32;

/// The installation's master secret (`OPENTRUSTY_SECRET_KEY`), from which encryption keys for
/// data at rest are derived. Never printed: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(Vec<u8>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({} bytes)", self.0.len())
    }
}

impl MasterKey {
    /// Parses a key given as hex or as base64 (standard or URL-safe alphabet, padded or not).
    /// A string of an even number of hex digits is read as hex.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DomainError::new("secret_key", "is empty"));
        }
        let is_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if is_hex {
            hex::decode(text).map_err(|_| DomainError::new("secret_key", "is not valid hex"))?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(|| DomainError::new("secret_key", "is neither hex nor base64"))?
        };
        if bytes.len() < MASTER_KEY_MIN_BYTES {
            return Err(DomainError::new(
                "secret_key",
                format!(
                    "decodes to {} bytes; at least {MASTER_KEY_MIN_BYTES} are required \
                     (generate one with: openssl rand -base64 32)",
                    bytes.len()
                ),
            ));
        }
        Ok(Self(bytes))
    }

    /// A new random 256-bit key.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        fill_random(&mut bytes);
        Self(bytes)
    }

    /// The key in the base64 form `parse` accepts.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 of `data` under this key, separated by `purpose` so one derived value can
    /// never stand in for another. Both planes compute the same value from the same key.
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// The anti-CSRF token of a console session: what the admin plane expects in `X-CSRF-Token`
/// for cookie-authenticated writes. Derived from the session, so it needs no storage.
pub fn session_csrf_token(key: &MasterKey, session_digest: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(key.mac("opentrusty console csrf v1", session_digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_digest_stably() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert_eq!(token_digest(&a), token_digest(&a));
        assert_ne!(token_digest(&a), token_digest(&random_token()));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn master_key_accepts_hex_and_base64_of_32_bytes() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert_eq!(MasterKey::parse(hex_key).unwrap().as_bytes().len(), 32);
        let generated = MasterKey::generate();
        assert_eq!(MasterKey::parse(&generated.to_base64()).unwrap(), generated);
        let url = URL_SAFE_NO_PAD.encode([0xfbu8; 40]);
        assert_eq!(MasterKey::parse(&url).unwrap().as_bytes(), &[0xfbu8; 40]);
    }

    #[test]
    fn macs_depend_on_key_purpose_and_data() {
        let k = MasterKey::generate();
        let d = token_digest("session");
        assert_eq!(session_csrf_token(&k, &d), session_csrf_token(&k, &d));
        assert_ne!(
            session_csrf_token(&k, &d),
            session_csrf_token(&MasterKey::generate(), &d)
        );
        assert_ne!(
            session_csrf_token(&k, &d),
            session_csrf_token(&k, &token_digest("other"))
        );
        assert_ne!(k.mac("a", b"x"), k.mac("b", b"x"));
    }

    #[test]
    fn master_key_rejects_short_and_garbage() {
        assert!(MasterKey::parse("").is_err());
        assert!(
            MasterKey::parse("deadbeef")
                .unwrap_err()
                .message
                .contains("4 bytes")
        );
        assert!(MasterKey::parse(&STANDARD.encode([1u8; 31])).is_err());
        assert!(MasterKey::parse("this is not a key!!").is_err());
        assert_eq!(
            format!("{:?}", MasterKey::generate()),
            "MasterKey(32 bytes)"
        );
    }
}
