//! Enrollment links: single-use, expiring links with which a user sets a password (a new
//! account, or a reset). Only their SHA-256 is stored; issuing a link voids the user's earlier
//! unused ones, so only the newest works, and a role gained voids them all (`assign_role`), so a
//! link never opens an account with more roles than it was issued against.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::rbac::{Role, Scope};
use opentrusty_core::user::{NewUser, User};
use opentrusty_core::{TenantId, Timestamp, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rbac::Subject;
use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, TxInner, on_tx};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentPurpose {
    /// A new account sets its first password.
    Enroll,
    /// An existing account replaces its password.
    Reset,
}

impl EnrollmentPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentPurpose::Enroll => "enroll",
            EnrollmentPurpose::Reset => "reset",
        }
    }
}

/// A link to store: the digest of its token and when it stops working.
#[derive(Debug, Clone)]
pub struct NewEnrollmentLink {
    pub token_digest: [u8; 32],
    pub purpose: EnrollmentPurpose,
    pub expires_at: Timestamp,
}

/// Arbitrary constant naming the lock on a user's links among PostgreSQL advisory locks (the
/// user's id is the second key).
const PG_USER_LINKS_LOCK: i32 = 0x4f54_554c; // "OTUL"

/// Why a link is refused when the user's roles grew after the caller's authorization was
/// decided.
const ROLES_CHANGED: &str =
    "the user's roles changed while the link was being issued; look at the user and ask again";

impl Tx {
    /// Serialises the writes that decide whether a link may exist for `user`: issuing one and
    /// granting the user a role. SQLite's write lock already does.
    pub(crate) async fn lock_user_links(&mut self, user: UserId) -> Result<(), StoreError> {
        if let TxInner::Postgres(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(PG_USER_LINKS_LOCK)
                .bind(user.to_string())
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// Deletes the user's unredeemed links; returns how many.
    pub(crate) async fn void_enrollment_links(&mut self, user: UserId) -> Result<u64, StoreError> {
        Ok(on_tx!(self, |c| sqlx::query(
            "DELETE FROM enrollment_links WHERE user_id = $1 AND used_at IS NULL"
        )
        .bind(user.0)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?)
    }

    async fn insert_enrollment_link(
        &mut self,
        user: &User,
        link: &NewEnrollmentLink,
        created_by: Option<UserId>,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = now();
        let voided = self.void_enrollment_links(user.id).await?;
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO enrollment_links (id, token_hash, user_id, tenant_id, purpose, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(Uuid::now_v7())
        .bind(&link.token_digest[..])
        .bind(user.id.0)
        .bind(user.tenant_id.map(|t| t.0))
        .bind(link.purpose.as_str())
        .bind(created_by.map(|u| u.0))
        .bind(DbTime(at))
        .bind(DbTime(link.expires_at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        self.audit(AuditEvent::new(
            origin,
            action::ENROLLMENT_LINK_ISSUED,
            user.tenant_id,
            Some(Target::new("user", user.id)),
            json!({
                "purpose": link.purpose.as_str(),
                "expires_at": link.expires_at.unix_timestamp(),
                "voided_links": voided,
            }),
            at,
        ))
        .await
    }
}

fn actor_user(origin: &Origin) -> Option<UserId> {
    match origin.actor {
        Some(opentrusty_core::audit::Actor::User(u)) => Some(u),
        _ => None,
    }
}

impl Store {
    /// Creates a user of a live tenant without a password, optionally with a tenant role, and
    /// the enrollment link with which they set one: one transaction, one audit row per step.
    pub async fn provision_user(
        &self,
        new: &NewUser,
        role: Option<Role>,
        link: &NewEnrollmentLink,
        origin: &Origin,
    ) -> Result<User, StoreError> {
        let tenant = new
            .tenant_id
            .ok_or_else(|| opentrusty_core::DomainError::new("tenant", "is required"))?;
        let mut tx = self.begin().await?;
        let user = tx.insert_user(new, None).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_CREATED,
            Some(tenant),
            Some(Target::new("user", user.id)),
            json!({ "role": role.map(Role::as_str) }),
            user.created_at,
        ))
        .await?;
        if let Some(role) = role {
            let scope = Scope::Tenant(tenant);
            tx.insert_assignment(Subject::User(user.id), role, scope, actor_user(origin))
                .await?;
            tx.audit(AuditEvent::new(
                origin,
                action::ROLE_ASSIGNED,
                Some(tenant),
                Some(Target::new("user", user.id)),
                json!({ "role": role.as_str(), "scope": scope.key() }),
                now(),
            ))
            .await?;
        }
        tx.insert_enrollment_link(&user, link, actor_user(origin), origin)
            .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Issues a new link for a live user of `tenant`, voiding their earlier unused links.
    /// `approved` are the user's role assignments the caller's authorization was decided on:
    /// the link is refused if the user now holds any other, so a grant landing between that
    /// decision and this transaction cannot leave a link that opens the promoted account (the
    /// grant voids the links before it, this check refuses the ones after it).
    pub async fn issue_enrollment_link(
        &self,
        tenant: TenantId,
        user: UserId,
        approved: &[(Role, Scope)],
        link: &NewEnrollmentLink,
        origin: &Origin,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin().await?;
        let user = tx.tenant_user(tenant, user).await?;
        tx.lock_user_links(user.id).await?;
        let held = tx.assignments(Subject::User(user.id)).await?;
        if held.iter().any(|a| !approved.contains(a)) {
            return Err(StoreError::Refused(ROLES_CHANGED.to_owned()));
        }
        tx.insert_enrollment_link(&user, link, actor_user(origin), origin)
            .await?;
        tx.commit().await?;
        Ok(user)
    }
}

/// A link that can still be redeemed, and the account it sets a password for.
#[derive(Debug, Clone)]
pub struct PendingEnrollment {
    pub user: User,
    pub purpose: EnrollmentPurpose,
    pub expires_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    user_id: Uuid,
    purpose: String,
    expires_at: DbTime,
}

fn purpose_of(s: &str) -> EnrollmentPurpose {
    if s == "reset" {
        EnrollmentPurpose::Reset
    } else {
        EnrollmentPurpose::Enroll
    }
}

impl Store {
    /// The unused, unexpired link whose token has `digest`, if its user is still live.
    pub async fn find_enrollment_link(
        &self,
        digest: &[u8; 32],
        at: Timestamp,
    ) -> Result<Option<PendingEnrollment>, StoreError> {
        let row: Option<LinkRow> = crate::on_pool!(self, |pool| sqlx::query_as(
            "SELECT user_id, purpose, expires_at FROM enrollment_links \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
        )
        .bind(&digest[..])
        .bind(DbTime(at))
        .fetch_optional(pool)
        .await)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let Some(user) = self.get_user_by_id(UserId(row.user_id)).await? else {
            return Ok(None);
        };
        Ok(Some(PendingEnrollment {
            user,
            purpose: purpose_of(&row.purpose),
            expires_at: row.expires_at.0,
        }))
    }

    /// Redeems the link whose token has `digest` (once: the first redemption wins) and sets the
    /// password whose hash is `password_hash`; every session and refresh-token family of the
    /// user ends in the same transaction. `None` when the link is unknown, used, expired, or its
    /// user no longer exists.
    pub async fn redeem_enrollment_link(
        &self,
        digest: &[u8; 32],
        password_hash: &str,
        origin: &Origin,
    ) -> Result<Option<User>, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let row: Option<(Uuid, String)> = on_tx!(tx, |c| sqlx::query_as(
            "UPDATE enrollment_links SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING user_id, purpose"
        )
        .bind(&digest[..])
        .bind(DbTime(at))
        .fetch_optional(&mut *c)
        .await)?;
        let Some((user_id, purpose)) = row else {
            return Ok(None);
        };
        let user_id = UserId(user_id);
        let tenant = match tx.subject_tenant(Subject::User(user_id)).await {
            Ok(t) => t,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        tx.upsert_credential(user_id, password_hash).await?;
        let ended = tx
            .end_user_access(user_id, "password_set", DbTime(at))
            .await?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_PASSWORD_SET,
            tenant,
            Some(Target::new("user", user_id)),
            json!({ "purpose": purpose_of(&purpose).as_str(), "ended": ended }),
            at,
        ))
        .await?;
        tx.commit().await?;
        self.get_user_by_id(user_id).await
    }
}
