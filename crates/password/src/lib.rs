//! Password hashing and verification with Argon2id, linked by the auth plane only (the admin
//! plane never sees a password). Hashes are PHC strings, so a hash made with older parameters
//! still verifies and is reported for upgrade on the next successful sign-in.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use opentrusty_core::DomainError;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommended Argon2id floor: 19 MiB, two passes, one lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right. `needs_rehash` is true when the stored hash was made with other
    /// parameters or another algorithm and should be replaced by [`PasswordHasher::hash`].
    Match { needs_rehash: bool },
    /// The password is wrong, or the stored string is not a hash we can read.
    Mismatch,
}

/// Hashes and verifies passwords with fixed Argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    argon: Argon2<'static>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

impl PasswordHasher {
    pub fn new(params: HashParams) -> Result<Self, DomainError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| DomainError::new("argon2", format!("invalid parameters: {e}")))?;
        Ok(Self {
            params,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes with a fresh random salt into a PHC string.
    #[allow(
        clippy::expect_used,
        reason = "a 16-byte salt and parameters checked by `new` cannot fail"
    )]
    pub fn hash(&self, password: &str) -> String {
        let mut salt_bytes = [0u8; 16];
        opentrusty_core::secret::fill_random(&mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .expect("hashing with validated parameters cannot fail")
            .to_string()
    }

    /// Verifies `password` against a PHC string made by this or an earlier configuration.
    pub fn verify(&self, password: &str, phc: &str) -> Verification {
        self.verify_in(password, phc, &mut WorkingMemory::default())
    }

    /// As [`PasswordHasher::verify`], computing in `memory` (grown to the hash's memory cost
    /// when smaller) so a caller that verifies often need not allocate it every time.
    pub fn verify_in(&self, password: &str, phc: &str, memory: &mut WorkingMemory) -> Verification {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return Verification::Mismatch;
        };
        if !recompute_matches(password.as_bytes(), &parsed, memory) {
            return Verification::Mismatch;
        }
        Verification::Match {
            needs_rehash: !self.is_current(&parsed),
        }
    }

    fn is_current(&self, parsed: &PasswordHash<'_>) -> bool {
        if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
            return false;
        }
        let Ok(p) = Params::try_from(parsed) else {
            return false;
        };
        p.m_cost() == self.params.memory_kib
            && p.t_cost() == self.params.iterations
            && p.p_cost() == self.params.parallelism
    }
}

/// Argon2's working memory (its memory cost in 1 KiB blocks), reusable from one verification to
/// the next: allocating and faulting in megabytes per sign-in costs time, and freed blocks of
/// that size scatter over the allocator's per-thread arenas.
#[derive(Default)]
pub struct WorkingMemory(Vec<Block>);

impl WorkingMemory {
    /// Bytes held.
    pub fn size(&self) -> usize {
        self.0.len() * Block::SIZE
    }
}

/// Recomputes the hash of `password` with the algorithm, version, parameters and salt recorded
/// in `stored` (not the current ones) and compares it in constant time.
fn recompute_matches(
    password: &[u8],
    stored: &PasswordHash<'_>,
    memory: &mut WorkingMemory,
) -> bool {
    let Some(expected) = &stored.hash else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(stored.algorithm),
        Params::try_from(stored),
    ) else {
        return false;
    };
    let Ok(version) = stored.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let mut salt = [0u8; 64];
    let Some(salt) = stored.salt.and_then(|s| s.decode_b64(&mut salt).ok()) else {
        return false;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    if memory.0.len() < blocks {
        memory.0.resize(blocks, Block::new());
    }
    let computed =
        argon.hash_password_into_with_memory(password, salt, out, &mut memory.0[..blocks]);
    computed.is_ok() && opentrusty_core::secret::constant_time_eq(out, expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn default_parameters_are_owasp() {
        let p = HashParams::default();
        assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19456, 2, 1));
        let hasher = PasswordHasher::new(p).unwrap();
        let phc = hasher.hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    }

    #[test]
    fn verifies_right_and_rejects_wrong() {
        let h = fast();
        let phc = h.hash("correct horse battery");
        assert_eq!(
            h.verify("correct horse battery", &phc),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify("correct horse batterY", &phc),
            Verification::Mismatch
        );
        assert_eq!(h.verify("x", "not a phc string"), Verification::Mismatch);
        assert_ne!(phc, h.hash("correct horse battery"), "salts differ");
    }

    #[test]
    fn old_parameters_still_verify_and_ask_for_upgrade() {
        let old = fast();
        let phc = old.hash("correct horse battery");
        let current = PasswordHasher::new(HashParams {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(
            current.verify("correct horse battery", &phc),
            Verification::Match { needs_rehash: true }
        );
        assert_eq!(
            current.verify("wrong password!", &phc),
            Verification::Mismatch
        );
    }

    #[test]
    fn rejects_invalid_parameters() {
        let err = PasswordHasher::new(HashParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        })
        .unwrap_err();
        assert_eq!(err.field, "argon2");
    }
}
