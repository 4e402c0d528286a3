//! The janitor's deletions: rows that can no longer grant or prove anything, removed in small
//! batches so no statement holds locks for long and no table grows without bound. Rotated
//! refresh tokens stay until their family expires: they are what reveals a replayed token.

use opentrusty_core::Timestamp;

use crate::rows::DbTime;
use crate::{Store, StoreError, on_pool};

/// How many rows of each kind one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub authorization_codes: u64,
    /// Access tokens, and the revocations of client-credentials tokens (recorded by their
    /// audit rows, which the janitor keeps).
    pub access_tokens: u64,
    pub token_families: u64,
    pub enrollment_links: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.authorization_codes
            + self.access_tokens
            + self.token_families
            + self.enrollment_links
    }
}

/// Each statement deletes one batch of expired rows: `$1` is now, `$2` the batch size.
const SWEEPS: [(&str, &str); 6] = [
    (
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2)",
        "sessions",
    ),
    (
        "DELETE FROM authorization_codes WHERE code_hash IN \
         (SELECT code_hash FROM authorization_codes WHERE expires_at <= $1 LIMIT $2)",
        "authorization_codes",
    ),
    (
        "DELETE FROM access_tokens WHERE jti IN \
         (SELECT jti FROM access_tokens WHERE expires_at <= $1 LIMIT $2)",
        "access_tokens",
    ),
    // A revoked client-credentials token is listed until it expires (`revoke_client_token`).
    (
        "DELETE FROM revoked_access_tokens WHERE jti IN \
         (SELECT jti FROM revoked_access_tokens WHERE expires_at <= $1 LIMIT $2)",
        "revoked_access_tokens",
    ),
    // A family outlives its refresh tokens; deleting it deletes them (and any access token
    // still tied to it) by cascade.
    (
        "DELETE FROM token_families WHERE id IN \
         (SELECT id FROM token_families WHERE expires_at <= $1 LIMIT $2)",
        "token_families",
    ),
    (
        "DELETE FROM enrollment_links WHERE id IN \
         (SELECT id FROM enrollment_links WHERE expires_at <= $1 LIMIT $2)",
        "enrollment_links",
    ),
];

impl Store {
    /// Deletes what expired before `at`, `batch` rows per statement, until nothing is left or
    /// `max_batches` batches ran for a kind (the next sweep continues).
    pub async fn sweep_expired(
        &self,
        at: Timestamp,
        batch: u32,
        max_batches: u32,
    ) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        for (sql, kind) in SWEEPS {
            let mut total = 0u64;
            for _ in 0..max_batches {
                let n = on_pool!(self, |pool| sqlx::query(sql)
                    .bind(DbTime(at))
                    .bind(i64::from(batch))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?;
                total += n;
                if n < u64::from(batch) {
                    break;
                }
            }
            match kind {
                "sessions" => swept.sessions = total,
                "authorization_codes" => swept.authorization_codes = total,
                "access_tokens" | "revoked_access_tokens" => swept.access_tokens += total,
                "token_families" => swept.token_families = total,
                _ => swept.enrollment_links = total,
            }
        }
        Ok(swept)
    }
}
