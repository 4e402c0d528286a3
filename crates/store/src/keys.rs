//! Signing keys shared by every auth process: `next` (published, not signing), `active`
//! (signing; at most one per algorithm), `retired` (published until its tokens have expired).
//! Key material arrives already encrypted; this module never sees a private key in clear.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::{Timestamp, now};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, TxInner, on_pool, on_tx};

/// Arbitrary constant naming the key-management lock among PostgreSQL advisory locks.
const PG_KEYS_LOCK: i64 = 0x4f54_4b45_5953_4c4b; // "OTKEYSLK"

/// A key to store: public JWK in clear, private half sealed by the caller.
#[derive(Debug, Clone)]
pub struct NewSigningKey {
    pub kid: String,
    pub alg: String,
    pub public_jwk: Value,
    pub private_key_ciphertext: Vec<u8>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub public_jwk: Value,
    pub private_key_ciphertext: Vec<u8>,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
    pub publish_until: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    alg: String,
    status: String,
    public_jwk: Json<Value>,
    private_key_ciphertext: Vec<u8>,
    created_at: DbTime,
    activated_at: Option<DbTime>,
    retired_at: Option<DbTime>,
    publish_until: Option<DbTime>,
}

impl KeyRow {
    fn into_key(self) -> StoredKey {
        StoredKey {
            kid: self.kid,
            alg: self.alg,
            status: self.status,
            public_jwk: self.public_jwk.0,
            private_key_ciphertext: self.private_key_ciphertext,
            created_at: self.created_at.0,
            activated_at: self.activated_at.map(|t| t.0),
            retired_at: self.retired_at.map(|t| t.0),
            publish_until: self.publish_until.map(|t| t.0),
        }
    }
}

macro_rules! key_columns {
    () => {
        "kid, alg, status, public_jwk, private_key_ciphertext, created_at, activated_at, \
         retired_at, publish_until"
    };
}

impl Tx {
    /// Serialises key management across processes for the rest of this transaction.
    async fn lock_keys(&mut self) -> Result<(), StoreError> {
        if let TxInner::Postgres(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_KEYS_LOCK)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    async fn insert_key(
        &mut self,
        key: &NewSigningKey,
        status: &str,
        at: DbTime,
    ) -> Result<(), StoreError> {
        let activated = (status == "active").then_some(at);
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO signing_keys (kid, alg, status, public_jwk, private_key_ciphertext, \
             created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(status)
        .bind(Json(&key.public_jwk))
        .bind(&key.private_key_ciphertext)
        .bind(at)
        .bind(activated)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| StoreError::unique_as(e, "a signing key with this id"))?;
        Ok(())
    }

    /// Retires the active key of `alg` (published until `until`) and activates its oldest next
    /// key: returns `(retired, activated)`, either `None` when there was no such key.
    async fn promote(
        &mut self,
        alg: &str,
        at: DbTime,
        until: DbTime,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let retired: Option<String> = on_tx!(self, |c| sqlx::query_scalar(
            "UPDATE signing_keys SET status = 'retired', retired_at = $2, publish_until = $3 \
             WHERE alg = $1 AND status = 'active' RETURNING kid"
        )
        .bind(alg)
        .bind(at)
        .bind(until)
        .fetch_optional(&mut *c)
        .await)?;
        let activated: Option<String> = on_tx!(self, |c| sqlx::query_scalar(
            "UPDATE signing_keys SET status = 'active', activated_at = $2 \
             WHERE kid = (SELECT kid FROM signing_keys WHERE alg = $1 AND status = 'next' \
                          ORDER BY created_at LIMIT 1) RETURNING kid"
        )
        .bind(alg)
        .bind(at)
        .fetch_optional(&mut *c)
        .await)?;
        Ok((retired, activated))
    }

    async fn active_kid(&mut self, alg: &str) -> Result<Option<String>, StoreError> {
        Ok(on_tx!(self, |c| sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE alg = $1 AND status = 'active'"
        )
        .bind(alg)
        .fetch_optional(&mut *c)
        .await)?)
    }
}

impl Store {
    /// Every key, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys ORDER BY created_at DESC, kid"
        ))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(KeyRow::into_key).collect())
    }

    /// Keys a verifier must know at `at`: next, active, and retired ones still within their
    /// publication window.
    pub async fn published_signing_keys(
        &self,
        at: Timestamp,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys WHERE status IN ('next', 'active') \
               OR (status = 'retired' AND publish_until > $1) ORDER BY created_at, kid"
        ))
        .bind(DbTime(at))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(KeyRow::into_key).collect())
    }

    /// Whether an active key exists for `alg`.
    pub async fn has_active_signing_key(&self, alg: &str) -> Result<bool, StoreError> {
        let found: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE alg = $1 AND status = 'active'"
        )
        .bind(alg)
        .fetch_optional(pool)
        .await)?;
        Ok(found.is_some())
    }

    /// Installs `active` and `next` for their algorithm unless an active key already exists
    /// (another process may have won the race); returns whether these keys were installed.
    pub async fn install_first_signing_keys(
        &self,
        active: &NewSigningKey,
        next: &NewSigningKey,
        origin: &Origin,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        tx.lock_keys().await?;
        if tx.active_kid(&active.alg).await?.is_some() {
            return Ok(false);
        }
        tx.insert_key(active, "active", DbTime(at)).await?;
        tx.insert_key(next, "next", DbTime(at)).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::SIGNING_KEY_CREATED,
            None,
            Some(Target::new("signing_key", &active.kid)),
            json!({ "alg": active.alg, "next": next.kid }),
            at,
        ))
        .await?;
        tx.announce_key_change().await?;
        tx.commit().await?;
        self.count_key_change();
        Ok(true)
    }

    /// Rotates the keys of one algorithm: the next key becomes active (or, when there is none,
    /// `new_next` itself does), the active key is retired and stays published until
    /// `publish_retired_until`, and `new_next` is stored as the next key.
    pub async fn rotate_signing_keys(
        &self,
        new_next: &NewSigningKey,
        publish_retired_until: Timestamp,
        origin: &Origin,
    ) -> Result<String, StoreError> {
        let at = DbTime(now());
        let alg = new_next.alg.as_str();
        let mut tx = self.begin().await?;
        tx.lock_keys().await?;
        let (old, promoted) = tx.promote(alg, at, DbTime(publish_retired_until)).await?;
        let active = match promoted {
            Some(kid) => {
                tx.insert_key(new_next, "next", at).await?;
                kid
            }
            None => {
                tx.insert_key(new_next, "active", at).await?;
                new_next.kid.clone()
            }
        };
        tx.audit(AuditEvent::new(
            origin,
            action::SIGNING_KEY_ROTATED,
            None,
            Some(Target::new("signing_key", &active)),
            json!({ "alg": alg, "retired": old, "active": active, "next": new_next.kid }),
            at.0,
        ))
        .await?;
        tx.announce_key_change().await?;
        tx.commit().await?;
        self.count_key_change();
        Ok(active)
    }

    /// Stores `next` as the next key of its algorithm when that algorithm has an active key and
    /// no next one (after a rotation promoted it); returns whether it was stored. Auth processes
    /// call this so that a rotation always has a key published ahead of use.
    pub async fn install_next_signing_key(
        &self,
        next: &NewSigningKey,
        origin: &Origin,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        tx.lock_keys().await?;
        let has_next: Option<String> = on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE alg = $1 AND status = 'next'"
        )
        .bind(&next.alg)
        .fetch_optional(&mut *c)
        .await)?;
        if has_next.is_some() || tx.active_kid(&next.alg).await?.is_none() {
            return Ok(false);
        }
        tx.insert_key(next, "next", DbTime(at)).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::SIGNING_KEY_CREATED,
            None,
            Some(Target::new("signing_key", &next.kid)),
            json!({ "alg": next.alg, "status": "next" }),
            at,
        ))
        .await?;
        tx.announce_key_change().await?;
        tx.commit().await?;
        self.count_key_change();
        Ok(true)
    }

    /// Rotates without generating key material: for `alg` (or every algorithm with an active
    /// key), the published next key becomes active and the active one is retired, published
    /// until `publish_retired_until`. Refused when an algorithm has no next key yet; auth
    /// processes prepare one within seconds of a rotation. Returns `(alg, retired, active)`.
    pub async fn promote_next_signing_keys(
        &self,
        alg: Option<&str>,
        publish_retired_until: Timestamp,
        origin: &Origin,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        tx.lock_keys().await?;
        let algs: Vec<String> = match alg {
            Some(a) => vec![a.to_owned()],
            None => on_tx!(tx, |c| sqlx::query_scalar(
                "SELECT alg FROM signing_keys WHERE status = 'active' ORDER BY alg"
            )
            .fetch_all(&mut *c)
            .await)?,
        };
        if algs.is_empty() {
            return Err(StoreError::Refused(
                "there is no active signing key to rotate yet".to_owned(),
            ));
        }
        let mut rotated = Vec::new();
        for alg in algs {
            let (Some(old), Some(next)) =
                tx.promote(&alg, at, DbTime(publish_retired_until)).await?
            else {
                // Nothing changes: the transaction rolls back.
                return Err(StoreError::Refused(format!(
                    "the next {alg} key is not ready yet (or there is no active one); an auth \
                     process prepares it within seconds of the last rotation, retry shortly"
                )));
            };
            tx.audit(AuditEvent::new(
                origin,
                action::SIGNING_KEY_ROTATED,
                None,
                Some(Target::new("signing_key", &next)),
                json!({ "alg": alg, "retired": old, "active": next }),
                at.0,
            ))
            .await?;
            rotated.push((alg, old, next));
        }
        tx.announce_key_change().await?;
        tx.commit().await?;
        self.count_key_change();
        Ok(rotated)
    }

    /// The longest access- or ID-token lifetime any live client has, in seconds: how long a
    /// retired key must stay published.
    pub async fn longest_token_lifetime_secs(&self) -> Result<i64, StoreError> {
        let longest: Option<i32> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT MAX(CASE WHEN access_token_ttl_secs > id_token_ttl_secs \
                    THEN access_token_ttl_secs ELSE id_token_ttl_secs END) \
             FROM oauth_clients WHERE deleted_at IS NULL"
        )
        .fetch_one(pool)
        .await)?;
        Ok(longest.map_or(0, i64::from))
    }
}
