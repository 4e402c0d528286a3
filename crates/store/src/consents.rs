//! Remembered consent: which scopes a user has approved for a client.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::{ClientId, TenantId, UserId, now};
use serde_json::json;

use crate::rows::DbTime;
use crate::{Store, StoreError, on_pool, on_tx};

impl Store {
    /// The scopes `user` has approved for `client` (space-separated), if any.
    pub async fn consented_scopes(
        &self,
        user: UserId,
        client: ClientId,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2"
        )
        .bind(user.0)
        .bind(client.0)
        .fetch_optional(pool)
        .await)?)
    }

    /// Remembers that `user` approved `scopes` (space-separated, already merged with what was
    /// approved before) for `client`.
    pub async fn remember_consent(
        &self,
        tenant: TenantId,
        user: UserId,
        client: ClientId,
        scopes: &str,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        on_tx!(tx, |c| sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = $3, granted_at = $4"
        )
        .bind(user.0)
        .bind(client.0)
        .bind(scopes)
        .bind(DbTime(at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::CONSENT_GRANTED,
            Some(tenant),
            Some(Target::new("client", client)),
            json!({ "user_id": user, "scopes": scopes }),
            at,
        ))
        .await?;
        tx.commit().await
    }
}
