//! Users and their password credentials. Every read that concerns a tenant's users takes the
//! tenant id and filters on it, so one tenant's rows never answer another tenant's query.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::user::{NewUser, User, UserStatus};
use opentrusty_core::{TenantId, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, on_pool, on_tx};

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    tenant_id: Option<Uuid>,
    email: String,
    email_verified: bool,
    given_name: Option<String>,
    family_name: Option<String>,
    status: String,
    created_at: DbTime,
    updated_at: DbTime,
}

impl UserRow {
    fn into_user(self) -> User {
        User {
            id: UserId(self.id),
            tenant_id: self.tenant_id.map(TenantId),
            email: self.email,
            email_verified: self.email_verified,
            given_name: self.given_name,
            family_name: self.family_name,
            status: UserStatus::parse(&self.status).unwrap_or(UserStatus::Disabled),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

macro_rules! user_columns {
    () => {
        "id, tenant_id, email, email_verified, given_name, family_name, status, created_at, \
         updated_at"
    };
}

const EMAIL_TAKEN: &str = "a user with this email";

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

    /// A live user of `tenant` by normalised email.
    pub async fn find_user_by_email(
        &self,
        tenant: TenantId,
        email_normalized: &str,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 AND email_normalized = $2 AND deleted_at IS NULL"
        ))
        .bind(tenant.0)
        .bind(email_normalized)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(UserRow::into_user))
    }

    /// A live platform operator (a user with no tenant) by normalised email.
    pub async fn find_platform_user_by_email(
        &self,
        email_normalized: &str,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id IS NULL AND email_normalized = $1 AND deleted_at IS NULL"
        ))
        .bind(email_normalized)
        .fetch_optional(pool)
        .await
        })?;
        Ok(row.map(UserRow::into_user))
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

    /// Live users of `tenant` in id order, after `after` (exclusive).
    pub async fn list_users(
        &self,
        tenant: TenantId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let after = after.map(|u| u.0).unwrap_or(Uuid::nil());
        let rows: Vec<UserRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 AND deleted_at IS NULL AND id > $2 \
             ORDER BY id LIMIT $3"
        ))
        .bind(tenant.0)
        .bind(after)
        .bind(i64::from(limit))
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
        let tenant: Option<Option<Uuid>> = on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT tenant_id FROM users WHERE id = $1 AND deleted_at IS NULL"
        )
        .bind(user.0)
        .fetch_optional(&mut *c)
        .await)?;
        let tenant = tenant.ok_or(StoreError::NotFound)?;
        tx.upsert_credential(user, password_hash).await?;
        tx.audit(AuditEvent::new(
            origin,
            action::USER_PASSWORD_SET,
            tenant.map(TenantId),
            Some(Target::new("user", user)),
            json!({}),
            now(),
        ))
        .await?;
        tx.commit().await
    }
}
