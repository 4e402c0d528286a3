//! Users and their password credentials. Every read that concerns a tenant's users takes the
//! tenant id and filters on it, so one tenant's rows never answer another tenant's query.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action, changes};
use opentrusty_core::user::{NewUser, User, UserPatch, UserStatus};
use opentrusty_core::{TenantId, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::ClientAccess;
use crate::clients::{ClientAccessRow, client_access_select};
use crate::grants::{JoinedUser, joined_user_columns};
use crate::rbac::{LAST_OWNER, Subject};
use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, on_pool, on_tx};

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub(crate) id: Uuid,
    pub(crate) tenant_id: Option<Uuid>,
    pub(crate) email: String,
    pub(crate) email_verified: bool,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
    pub(crate) status: String,
    pub(crate) locked_until: Option<DbTime>,
    pub(crate) created_at: DbTime,
    pub(crate) updated_at: DbTime,
}

impl UserRow {
    pub(crate) fn into_user(self) -> User {
        User {
            id: UserId(self.id),
            tenant_id: self.tenant_id.map(TenantId),
            email: self.email,
            email_verified: self.email_verified,
            given_name: self.given_name,
            family_name: self.family_name,
            status: UserStatus::parse(&self.status).unwrap_or(UserStatus::Disabled),
            locked_until: self.locked_until.map(|t| t.0),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

macro_rules! user_columns {
    () => {
        "id, tenant_id, email, email_verified, given_name, family_name, status, locked_until, \
         created_at, updated_at"
    };
}

const EMAIL_TAKEN: &str = "a user with this email";

/// Which of a tenant's users to list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Emails starting with this (compared with the normalised, lowercase email).
    pub email_prefix: Option<String>,
    pub status: Option<UserStatus>,
}

impl Tx {
    /// Inserts a user (and its credential when a hash is given) without auditing; callers audit
    /// the operation they are part of.
    pub(crate) async fn insert_user(
        &mut self,
        new: &NewUser,
        password_hash: Option<&str>,
    ) -> Result<User, StoreError> {
        let at = now();
        let user = User {
            id: UserId::new(),
            tenant_id: new.tenant_id,
            email: new.email.as_str().to_owned(),
            email_verified: false,
            given_name: new.given_name.clone(),
            family_name: new.family_name.clone(),
            status: UserStatus::Active,
            locked_until: None,
            created_at: at,
            updated_at: at,
        };
        if let Some(tenant) = new.tenant_id {
            let live: Option<i32> = on_tx!(self, |c| sqlx::query_scalar(
                "SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL"
            )
            .bind(tenant.0)
            .fetch_optional(&mut *c)
            .await)?;
            if live.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO users (id, tenant_id, email, email_normalized, email_verified, \
             given_name, family_name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, FALSE, $5, $6, 'active', $7, $7)"
        )
        .bind(user.id.0)
        .bind(user.tenant_id.map(|t| t.0))
        .bind(&user.email)
        .bind(new.email.normalized())
        .bind(&user.given_name)
        .bind(&user.family_name)
        .bind(DbTime(at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| StoreError::unique_as(e, EMAIL_TAKEN))?;
        if let Some(hash) = password_hash {
            self.upsert_credential(user.id, hash).await?;
        }
        Ok(user)
    }

    pub(crate) async fn upsert_credential(
        &mut self,
        user: UserId,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO credentials (user_id, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) \
             ON CONFLICT (user_id) DO UPDATE SET password_hash = $2, updated_at = $3"
        )
        .bind(user.0)
        .bind(password_hash)
        .bind(DbTime(now()))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl Store {
    /// Creates a user in a live tenant (or a platform operator when `tenant_id` is `None`),
    /// with an initial password hash when one is given.
    pub async fn create_user(
        &self,
        new: &NewUser,
        password_hash: Option<&str>,
        origin: &Origin,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin().await?;
        let user = tx.insert_user(new, password_hash).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_CREATED,
            user.tenant_id,
            Some(Target::new("user", user.id)),
            json!({ "with_password": password_hash.is_some() }),
            user.created_at,
        ))
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// A live user of `tenant`.
    pub async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .bind(tenant.0)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(UserRow::into_user))
    }

    /// What a password sign-in needs in one round trip: the live user of `tenant` (or, when
    /// `None`, the platform operator) with this normalised email, and their password hash.
    #[cfg(feature = "test-support")]
    pub async fn find_user_for_sign_in(
        &self,
        tenant: Option<TenantId>,
        email_normalized: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: Option<String>,
        }
        macro_rules! sign_in_select {
            ($tenant:literal) => {
                concat!(
                    "SELECT u.id, u.tenant_id, u.email, u.email_verified, u.given_name, \
                     u.family_name, u.status, u.locked_until, u.created_at, u.updated_at, \
                     c.password_hash FROM users u LEFT JOIN credentials c ON c.user_id = u.id \
                     WHERE ",
                    $tenant,
                    " AND u.email_normalized = $1 AND u.deleted_at IS NULL"
                )
            };
        }
        let row: Option<Row> = match tenant {
            Some(t) => on_pool!(self, |pool| sqlx::query_as(sign_in_select!(
                "u.tenant_id = $2"
            ))
            .bind(email_normalized)
            .bind(t.0)
            .fetch_optional(pool)
            .await)?,
            None => on_pool!(self, |pool| sqlx::query_as(sign_in_select!(
                "u.tenant_id IS NULL"
            ))
            .bind(email_normalized)
            .fetch_optional(pool)
            .await)?,
        };
        Ok(row.map(|r| (r.user.into_user(), r.password_hash)))
    }

    /// A sign-in form's reads in one round trip: the live client with public id `client_id`
    /// (as [`Store::find_client_for_request`] reads it) and, when `email_normalized` is given,
    /// the live user of the client's tenant with that email and their password hash (as
    /// `Store::find_user_for_sign_in` reads them).
    pub async fn find_client_with_sign_in(
        &self,
        client_id: &str,
        email_normalized: Option<&str>,
    ) -> Result<Option<(ClientAccess, Option<(User, Option<String>)>)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            client: ClientAccessRow,
            #[sqlx(flatten)]
            user: JoinedUser,
            password_hash: Option<String>,
        }
        let row: Option<Row> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT c.*, ",
            joined_user_columns!(),
            ", cr.password_hash FROM (",
            client_access_select!(),
            ") c LEFT JOIN users u ON u.tenant_id = c.tenant_id AND u.email_normalized = $2 \
             AND u.deleted_at IS NULL LEFT JOIN credentials cr ON cr.user_id = u.id"
        ))
        .bind(client_id)
        .bind(email_normalized)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|r| {
            let user = r.user.into_user().map(|u| (u, r.password_hash));
            (r.client.into_access(), user)
        }))
    }

    /// Live accounts with this email that hold `control_plane:login` anywhere, in live tenants
    /// (or none, for platform operators). The role rules keep this to one account per email.
    pub async fn control_plane_accounts(
        &self,
        email_normalized: &str,
    ) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email_normalized = $1 AND deleted_at IS NULL \
               AND (tenant_id IS NULL OR tenant_id IN \
                    (SELECT id FROM tenants WHERE status = 'active')) \
               AND id IN (SELECT ra.user_id FROM role_assignments ra \
                          JOIN role_permissions rp ON rp.role_name = ra.role_name \
                          WHERE rp.permission_name = 'control_plane:login' \
                            AND ra.user_id IS NOT NULL) \
             ORDER BY id"
        ))
        .bind(email_normalized)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(UserRow::into_user).collect())
    }

    /// A live user by id, whatever the tenant (for sessions, which carry the user id).
    pub async fn get_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(UserRow::into_user))
    }

    /// Live users of `tenant` matching `filter`, in id order, after `after` (exclusive). Empty
    /// when the tenant is deleted or does not exist, so a page that is not empty also proves
    /// the tenant live without a second look-up.
    pub async fn list_users(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let after = after.map(|u| u.0).unwrap_or(Uuid::nil());
        let prefix = filter.email_prefix.as_deref().map(str::to_lowercase);
        let rows: Vec<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 AND deleted_at IS NULL AND id > $2 \
               AND EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL) \
               AND ($4 IS NULL OR substr(email_normalized, 1, length($4)) = $4) \
               AND ($5 IS NULL OR status = $5) \
             ORDER BY id LIMIT $3"
        ))
        .bind(tenant.0)
        .bind(after)
        .bind(i64::from(limit))
        .bind(&prefix)
        .bind(filter.status.map(UserStatus::as_str))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(UserRow::into_user).collect())
    }

    /// The stored PHC string of a user's password, if the user has one.
    pub async fn password_hash(&self, user: UserId) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT password_hash FROM credentials WHERE user_id = $1"
        )
        .bind(user.0)
        .fetch_optional(pool)
        .await)?)
    }

    /// Replaces a user's password hash (set, reset, or upgrade of parameters).
    pub async fn set_password_hash(
        &self,
        user: UserId,
        password_hash: &str,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let tenant = tx.subject_tenant(Subject::User(user)).await?;
        tx.upsert_credential(user, password_hash).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_PASSWORD_SET,
            tenant,
            Some(Target::new("user", user)),
            json!({}),
            now(),
        ))
        .await?;
        tx.commit().await
    }
}

impl Tx {
    /// Ends everything that lets `user` in: sessions are deleted, token families and access
    /// tokens revoked, open enrollment links deleted. Returns the counts for the audit record.
    pub(crate) async fn end_user_access(
        &mut self,
        user: UserId,
        reason: &str,
        at: DbTime,
    ) -> Result<serde_json::Value, StoreError> {
        let sessions = on_tx!(self, |c| sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1"
        )
        .bind(user.0)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let families = on_tx!(self, |c| sqlx::query(
            "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
             WHERE user_id = $1 AND revoked_at IS NULL"
        )
        .bind(user.0)
        .bind(at)
        .bind(reason)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        // By index, not by reading the table: a user's tokens of a family through the family,
        // the others through the partial index of migration 3.
        let mut access_tokens = 0;
        for statement in [
            "UPDATE access_tokens SET revoked_at = $2 \
             WHERE family_id IN (SELECT id FROM token_families WHERE user_id = $1) \
               AND user_id = $1 AND revoked_at IS NULL",
            "UPDATE access_tokens SET revoked_at = $2 \
             WHERE user_id = $1 AND family_id IS NULL AND revoked_at IS NULL",
        ] {
            access_tokens += on_tx!(self, |c| sqlx::query(statement)
                .bind(user.0)
                .bind(at)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        let links = self.void_enrollment_links(user).await?;
        let mut counts = serde_json::Map::new();
        counts.insert("sessions".into(), sessions.into());
        counts.insert("token_families".into(), families.into());
        counts.insert("access_tokens".into(), access_tokens.into());
        counts.insert("enrollment_links".into(), links.into());
        Ok(serde_json::Value::Object(counts))
    }

    /// The live user `id` of `tenant`, read inside the transaction; `NotFound` otherwise.
    pub(crate) async fn tenant_user(
        &mut self,
        tenant: TenantId,
        id: UserId,
    ) -> Result<User, StoreError> {
        let row: Option<UserRow> = on_tx!(self, |c| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .bind(tenant.0)
        .fetch_optional(&mut *c)
        .await)?;
        row.map(UserRow::into_user).ok_or(StoreError::NotFound)
    }
}

/// The fields of a user an audit record compares.
fn audit_view(u: &User) -> serde_json::Value {
    json!({
        "given_name": u.given_name,
        "family_name": u.family_name,
        "status": u.status.as_str(),
    })
}

impl Store {
    /// Applies `patch` to a live user of `tenant`, auditing the fields that changed. Disabling
    /// a user ends their sessions and revokes their tokens in the same transaction; the last
    /// owner of a tenant cannot be disabled.
    pub async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        patch: &UserPatch,
        origin: &Origin,
    ) -> Result<User, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let before = tx.tenant_user(tenant, id).await?;
        let mut after = before.clone();
        if let Some(v) = &patch.given_name {
            after.given_name = v.clone();
        }
        if let Some(v) = &patch.family_name {
            after.family_name = v.clone();
        }
        if let Some(s) = patch.status {
            after.status = s;
        }
        let changed = changes(&audit_view(&before), &audit_view(&after));
        if changed.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(before);
        }
        let disabling = before.status == UserStatus::Active && after.status == UserStatus::Disabled;
        if disabling && tx.is_last_owner(tenant, id).await? {
            return Err(StoreError::Refused(LAST_OWNER.to_owned()));
        }
        let row: UserRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "UPDATE users SET given_name = $2, family_name = $3, status = $4, updated_at = $5 \
             WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(&after.given_name)
        .bind(&after.family_name)
        .bind(after.status.as_str())
        .bind(DbTime(at))
        .fetch_one(&mut *c)
        .await)?;
        let ended = if disabling {
            Some(tx.end_user_access(id, "user_disabled", DbTime(at)).await?)
        } else {
            None
        };
        tx.audit(AuditEvent::new(
            origin,
            action::USER_UPDATED,
            Some(tenant),
            Some(Target::new("user", id)),
            json!({ "changes": changed, "ended": ended }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(row.into_user())
    }

    /// Soft-deletes a live user of `tenant`: the account can no longer sign in, its sessions,
    /// tokens, links, credential, consents and role assignments go in the same transaction, and
    /// its email becomes free again in the tenant. The audit trail keeps its id. The last owner
    /// of a tenant cannot be deleted.
    pub async fn delete_user(
        &self,
        tenant: TenantId,
        id: UserId,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        tx.tenant_user(tenant, id).await?;
        if tx.is_last_owner(tenant, id).await? {
            return Err(StoreError::Refused(LAST_OWNER.to_owned()));
        }
        let ended = tx.end_user_access(id, "user_deleted", at).await?;
        for sql in [
            "DELETE FROM credentials WHERE user_id = $1",
            "DELETE FROM consents WHERE user_id = $1",
            "DELETE FROM role_assignments WHERE user_id = $1",
        ] {
            on_tx!(tx, |c| sqlx::query(sql)
                .bind(id.0)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        on_tx!(tx, |c| sqlx::query(
            "UPDATE users SET status = 'disabled', deleted_at = $2, updated_at = $2 WHERE id = $1"
        )
        .bind(id.0)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_DELETED,
            Some(tenant),
            Some(Target::new("user", id)),
            json!({ "ended": ended }),
            at.0,
        ))
        .await?;
        tx.commit().await
    }

    /// Clears a sign-in lockout of a live user of `tenant` (failure counter and lock).
    pub async fn unlock_user(
        &self,
        tenant: TenantId,
        id: UserId,
        origin: &Origin,
    ) -> Result<User, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let before = tx.tenant_user(tenant, id).await?;
        let row: UserRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "UPDATE users SET failed_login_count = 0, failed_login_since = NULL, \
             locked_until = NULL, updated_at = $2 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(DbTime(at))
        .fetch_one(&mut *c)
        .await)?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_UNLOCKED,
            Some(tenant),
            Some(Target::new("user", id)),
            json!({ "was_locked": before.locked_until.is_some_and(|t| t > at) }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(row.into_user())
    }
}

impl Store {
    /// Replaces a user's password from one of their sessions: every other session ends and
    /// every token family is revoked but those that belong to `keep` without offline access
    /// (that browser's applications, which end with it anyway), in the same transaction.
    pub async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: opentrusty_core::SessionId,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        let tenant = tx.subject_tenant(Subject::User(user)).await?;
        tx.upsert_credential(user, password_hash).await?;
        let sessions = on_tx!(tx, |c| sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND id <> $2"
        )
        .bind(user.0)
        .bind(keep.0)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let families = on_tx!(tx, |c| sqlx::query(
            "UPDATE token_families SET revoked_at = $3, revoked_reason = 'password_changed' \
             WHERE user_id = $1 AND revoked_at IS NULL \
               AND (session_id IS NULL OR session_id <> $2 OR offline)"
        )
        .bind(user.0)
        .bind(keep.0)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_PASSWORD_SET,
            tenant,
            Some(Target::new("user", user)),
            json!({ "purpose": "change", "ended": { "sessions": sessions, "token_families": families } }),
            at.0,
        ))
        .await?;
        tx.commit().await
    }
}
