//! Creating the first platform administrator, exactly once, even when several processes try at
//! the same moment.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::email::Email;
use opentrusty_core::rbac::{Role, Scope};
use opentrusty_core::user::NewUser;
use opentrusty_core::{UserId, now};
use serde_json::json;

use crate::rbac::Subject;
use crate::{Store, StoreError, TxInner, on_pool, on_tx};

/// Arbitrary constant naming the bootstrap lock among PostgreSQL advisory locks.
const PG_BOOTSTRAP_LOCK: i64 = 0x4f54_424f_4f54_5354; // "OTBOOTST"

/// What [`Store::bootstrap_platform_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// A platform administrator was created with this id.
    Created(UserId),
    /// A platform administrator already existed; nothing changed.
    AlreadyPresent,
}

impl Store {
    /// Whether any user holds `platform_admin`.
    pub async fn platform_admin_exists(&self) -> Result<bool, StoreError> {
        let found: Option<i32> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT 1 FROM role_assignments WHERE role_name = 'platform_admin' LIMIT 1"
        )
        .fetch_optional(pool)
        .await)?;
        Ok(found.is_some())
    }

    /// Creates a platform operator with `email` and `password_hash` holding `platform_admin` at
    /// platform scope, with its audit event, unless a platform administrator already exists.
    /// Concurrent callers serialise (advisory lock on PostgreSQL, the write lock on SQLite), so
    /// exactly one administrator results.
    pub async fn bootstrap_platform_admin(
        &self,
        email: &Email,
        password_hash: &str,
        origin: &Origin,
    ) -> Result<BootstrapOutcome, StoreError> {
        let mut tx = self.begin().await?;
        if let TxInner::Postgres(t) = &mut tx.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_BOOTSTRAP_LOCK)
                .execute(&mut **t)
                .await?;
        }
        let exists: Option<i32> = on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT 1 FROM role_assignments WHERE role_name = 'platform_admin' LIMIT 1"
        )
        .fetch_optional(&mut *c)
        .await)?;
        if exists.is_some() {
            return Ok(BootstrapOutcome::AlreadyPresent);
        }
        let new = NewUser {
            tenant_id: None,
            email: email.clone(),
            given_name: None,
            family_name: None,
        };
        let user = tx.insert_user(&new, Some(password_hash)).await?;
        tx.insert_assignment(
            Subject::User(user.id),
            Role::PlatformAdmin,
            Scope::Platform,
            None,
        )
        .await?;
        tx.audit(AuditEvent::new(
            origin,
            action::PLATFORM_ADMIN_BOOTSTRAPPED,
            None,
            Some(Target::new("user", user.id)),
            json!({ "role": Role::PlatformAdmin.as_str() }),
            now(),
        ))
        .await?;
        tx.commit().await?;
        Ok(BootstrapOutcome::Created(user.id))
    }
}
