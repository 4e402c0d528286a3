//! Role assignments and the grants they expand to. The authorization decision itself is pure
//! (`opentrusty_core::rbac::allows`); this module loads what it decides on.

use opentrusty_core::audit::{Actor, AuditEvent, Origin, Target, action};
use opentrusty_core::ids::AssignmentId;
use opentrusty_core::rbac::{Grant, Permission, Role, Scope, ScopeKind, check_assignment};
use opentrusty_core::{ClientId, TenantId, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, TxInner, on_pool, on_tx};

/// Who holds a role: a user, or a client acting as a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    User(UserId),
    Client(ClientId),
}

impl Subject {
    fn key(&self) -> String {
        match self {
            Subject::User(u) => format!("user:{u}"),
            Subject::Client(c) => format!("client:{c}"),
        }
    }

    fn ids(&self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Subject::User(u) => (Some(u.0), None),
            Subject::Client(c) => (None, Some(c.0)),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    role_name: String,
    scope_kind: String,
    scope_tenant_id: Option<Uuid>,
    scope_client_id: Option<Uuid>,
}

/// A subject's assignments ($1 the user, $2 the client; the other is NULL).
const ASSIGNMENTS_OF: &str = "SELECT role_name, scope_kind, scope_tenant_id, scope_client_id \
     FROM role_assignments WHERE user_id = $1 OR client_id = $2 ORDER BY id";

/// Assignments from their rows, skipping roles and scopes this build does not know.
fn assignments_from_rows(rows: Vec<AssignmentRow>) -> Vec<(Role, Scope)> {
    rows.iter()
        .filter_map(|r| {
            let scope = scope_from_columns(&r.scope_kind, r.scope_tenant_id, r.scope_client_id)?;
            Some((Role::parse(&r.role_name)?, scope))
        })
        .collect()
}

/// Reassembles a scope from its stored columns.
fn scope_from_columns(kind: &str, tenant: Option<Uuid>, client: Option<Uuid>) -> Option<Scope> {
    match (ScopeKind::parse(kind)?, tenant, client) {
        (ScopeKind::Platform, _, _) => Some(Scope::Platform),
        (ScopeKind::Tenant, Some(t), _) => Some(Scope::Tenant(TenantId(t))),
        (ScopeKind::Client, Some(t), Some(c)) => Some(Scope::Client {
            tenant: TenantId(t),
            client: ClientId(c),
        }),
        _ => None,
    }
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    permission_name: String,
    scope_kind: String,
    scope_tenant_id: Option<Uuid>,
    scope_client_id: Option<Uuid>,
}

/// A grant read beside another row through `LEFT JOIN role_assignments ra LEFT JOIN
/// role_permissions rp` (`callers.rs`): NULL when the subject holds no role, or the role no
/// permission.
#[derive(sqlx::FromRow)]
pub(crate) struct JoinedGrant {
    grant_permission: Option<String>,
    grant_scope_kind: Option<String>,
    grant_scope_tenant_id: Option<Uuid>,
    grant_scope_client_id: Option<Uuid>,
}

impl JoinedGrant {
    pub(crate) fn into_grant(self) -> Option<Grant> {
        grant_from_columns(
            &self.grant_permission?,
            &self.grant_scope_kind?,
            self.grant_scope_tenant_id,
            self.grant_scope_client_id,
        )
    }
}

/// A grant from its stored columns; `None` for a permission or scope this build does not know.
fn grant_from_columns(
    permission: &str,
    scope_kind: &str,
    tenant: Option<Uuid>,
    client: Option<Uuid>,
) -> Option<Grant> {
    Some(Grant {
        permission: Permission::parse(permission)?,
        scope: scope_from_columns(scope_kind, tenant, client)?,
    })
}

fn scope_parts(scope: &Scope) -> (Option<Uuid>, Option<Uuid>) {
    match scope {
        Scope::Platform => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::Client { tenant, client } => (Some(tenant.0), Some(client.0)),
    }
}

/// Why removing a tenant's last owner is refused.
pub(crate) const LAST_OWNER: &str =
    "a tenant keeps at least one owner: make another user tenant_owner first";

/// Arbitrary constant naming the console-account lock among PostgreSQL advisory locks (the
/// email's hash is the second key).
const PG_CONSOLE_EMAIL_LOCK: i32 = 0x4f54_4345; // "OTCE"

impl Tx {
    /// Whether `user` holds `tenant_owner` in `tenant` and no other live, active user does.
    /// On PostgreSQL the tenant's row stays locked until the transaction ends, so two owners
    /// removing each other at once cannot both pass (SQLite's write lock already serialises).
    pub(crate) async fn is_last_owner(
        &mut self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<bool, StoreError> {
        if let TxInner::Postgres(t) = &mut self.inner {
            sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant.0)
                .execute(&mut **t)
                .await?;
        }
        let owners: Vec<Uuid> = on_tx!(self, |c| sqlx::query_scalar(
            "SELECT ra.user_id FROM role_assignments ra JOIN users u ON u.id = ra.user_id \
             WHERE ra.role_name = 'tenant_owner' AND ra.scope_kind = 'tenant' \
               AND ra.scope_tenant_id = $1 AND u.deleted_at IS NULL AND u.status = 'active'"
        )
        .bind(tenant.0)
        .fetch_all(&mut *c)
        .await)?;
        Ok(owners.contains(&user.0) && owners.iter().all(|o| *o == user.0))
    }

    /// Refuses a console role for `user` when another live account with the same email already
    /// holds one, so the control-plane login (email and password, no tenant) always resolves to
    /// one account. Concurrent grants for one email serialise on a lock.
    async fn check_console_email_unique(&mut self, user: UserId) -> Result<(), StoreError> {
        let email: Option<String> = on_tx!(self, |c| sqlx::query_scalar(
            "SELECT email_normalized FROM users WHERE id = $1"
        )
        .bind(user.0)
        .fetch_optional(&mut *c)
        .await)?;
        let email = email.ok_or(StoreError::NotFound)?;
        if let TxInner::Postgres(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(PG_CONSOLE_EMAIL_LOCK)
                .bind(&email)
                .execute(&mut **t)
                .await?;
        }
        let other: Option<Uuid> = on_tx!(self, |c| sqlx::query_scalar(
            "SELECT u.id FROM users u \
             JOIN role_assignments ra ON ra.user_id = u.id \
             JOIN role_permissions rp ON rp.role_name = ra.role_name \
             WHERE u.email_normalized = $1 AND u.id <> $2 AND u.deleted_at IS NULL \
               AND rp.permission_name = 'control_plane:login' \
               AND (u.tenant_id IS NULL OR u.tenant_id IN \
                    (SELECT id FROM tenants WHERE deleted_at IS NULL)) \
             LIMIT 1"
        )
        .bind(&email)
        .bind(user.0)
        .fetch_optional(&mut *c)
        .await)?;
        if other.is_some() {
            return Err(StoreError::Refused(
                "this email already has console access in another place; an email holds console \
                 roles in one place only"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The tenant a subject lives in (`None` for platform operators); `NotFound` if the subject
    /// does not exist or is deleted.
    pub(crate) async fn subject_tenant(
        &mut self,
        subject: Subject,
    ) -> Result<Option<TenantId>, StoreError> {
        let found: Option<Option<Uuid>> = match subject {
            Subject::User(u) => on_tx!(self, |c| sqlx::query_scalar(
                "SELECT tenant_id FROM users WHERE id = $1 AND deleted_at IS NULL"
            )
            .bind(u.0)
            .fetch_optional(&mut *c)
            .await)?,
            Subject::Client(cl) => on_tx!(self, |c| sqlx::query_scalar(
                "SELECT tenant_id FROM oauth_clients WHERE id = $1 AND deleted_at IS NULL"
            )
            .bind(cl.0)
            .fetch_optional(&mut *c)
            .await)?,
        };
        Ok(found.ok_or(StoreError::NotFound)?.map(TenantId))
    }

    /// The roles `subject` holds, read inside the transaction.
    pub(crate) async fn assignments(
        &mut self,
        subject: Subject,
    ) -> Result<Vec<(Role, Scope)>, StoreError> {
        let (user_id, client_id) = subject.ids();
        let rows: Vec<AssignmentRow> = on_tx!(self, |c| sqlx::query_as(ASSIGNMENTS_OF)
            .bind(user_id)
            .bind(client_id)
            .fetch_all(&mut *c)
            .await)?;
        Ok(assignments_from_rows(rows))
    }

    pub(crate) async fn insert_assignment(
        &mut self,
        subject: Subject,
        role: Role,
        scope: Scope,
        granted_by: Option<UserId>,
    ) -> Result<AssignmentId, StoreError> {
        let tenant = self.subject_tenant(subject).await?;
        check_assignment(tenant, role, &scope)?;
        if let Subject::User(u) = subject
            && role.permissions().contains(&Permission::ControlPlaneLogin)
        {
            self.check_console_email_unique(u).await?;
        }
        let id = AssignmentId::new();
        let (user_id, client_id) = subject.ids();
        let (scope_tenant, scope_client) = scope_parts(&scope);
        let key = format!("{}|{}|{}", subject.key(), role.as_str(), scope.key());
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO role_assignments (id, role_name, user_id, client_id, scope_kind, \
             scope_tenant_id, scope_client_id, unique_key, granted_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(id.0)
        .bind(role.as_str())
        .bind(user_id)
        .bind(client_id)
        .bind(scope.kind().as_str())
        .bind(scope_tenant)
        .bind(scope_client)
        .bind(&key)
        .bind(granted_by.map(|u| u.0))
        .bind(DbTime(now()))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| StoreError::unique_as(e, "this role assignment"))?;
        Ok(id)
    }
}

impl Store {
    /// Assigns `role` at `scope` to `subject`, within the subject's own tenant only. A user
    /// loses their unredeemed enrollment and reset links in the same transaction: they were
    /// issued by someone allowed to act on the user as they were, not as they are now. The
    /// audit row counts them (`voided_links`).
    pub async fn assign_role(
        &self,
        subject: Subject,
        role: Role,
        scope: Scope,
        origin: &Origin,
    ) -> Result<AssignmentId, StoreError> {
        let granted_by = match origin.actor {
            Some(Actor::User(u)) => Some(u),
            _ => None,
        };
        let mut tx = self.begin().await?;
        let id = tx
            .insert_assignment(subject, role, scope, granted_by)
            .await?;
        let mut metadata = json!({ "role": role.as_str(), "scope": scope.key() });
        let (subject_kind, subject_id) = match subject {
            Subject::User(u) => {
                tx.lock_user_links(u).await?;
                metadata["voided_links"] = tx.void_enrollment_links(u).await?.into();
                ("user", u.to_string())
            }
            Subject::Client(c) => ("client", c.to_string()),
        };
        tx.audit(AuditEvent::new(
            origin,
            action::ROLE_ASSIGNED,
            scope_parts(&scope).0.map(TenantId),
            Some(Target::new(subject_kind, subject_id)),
            metadata,
            now(),
        ))
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Removes `role` at `scope` from `subject`; `NotFound` when it was not assigned. The last
    /// owner of a tenant keeps their owner role.
    pub async fn revoke_role(
        &self,
        subject: Subject,
        role: Role,
        scope: Scope,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let (Subject::User(u), Role::TenantOwner, Scope::Tenant(t)) = (subject, role, scope)
            && tx.is_last_owner(t, u).await?
        {
            return Err(StoreError::Refused(LAST_OWNER.to_owned()));
        }
        let key = format!("{}|{}|{}", subject.key(), role.as_str(), scope.key());
        let removed = on_tx!(tx, |c| sqlx::query(
            "DELETE FROM role_assignments WHERE unique_key = $1"
        )
        .bind(&key)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if removed == 0 {
            return Err(StoreError::NotFound);
        }
        let (subject_kind, subject_id) = match subject {
            Subject::User(u) => ("user", u.to_string()),
            Subject::Client(c) => ("client", c.to_string()),
        };
        tx.audit(AuditEvent::new(
            origin,
            action::ROLE_REVOKED,
            scope_parts(&scope).0.map(TenantId),
            Some(Target::new(subject_kind, subject_id)),
            json!({ "role": role.as_str(), "scope": scope.key() }),
            now(),
        ))
        .await?;
        tx.commit().await
    }

    /// The roles a subject holds, with their scopes.
    pub async fn assignments_of(&self, subject: Subject) -> Result<Vec<(Role, Scope)>, StoreError> {
        let (user_id, client_id) = subject.ids();
        let rows: Vec<AssignmentRow> = on_pool!(self, |pool| sqlx::query_as(ASSIGNMENTS_OF)
            .bind(user_id)
            .bind(client_id)
            .fetch_all(pool)
            .await)?;
        Ok(assignments_from_rows(rows))
    }

    /// Every permission a subject holds, at the scope it holds it, as stored (role to
    /// permission mapping read from the database, not from code).
    pub async fn grants_of(&self, subject: Subject) -> Result<Vec<Grant>, StoreError> {
        let (user_id, client_id) = subject.ids();
        let rows: Vec<GrantRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT rp.permission_name, ra.scope_kind, ra.scope_tenant_id, ra.scope_client_id \
             FROM role_assignments ra JOIN role_permissions rp ON rp.role_name = ra.role_name \
             WHERE ra.user_id = $1 OR ra.client_id = $2"
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                grant_from_columns(
                    &r.permission_name,
                    &r.scope_kind,
                    r.scope_tenant_id,
                    r.scope_client_id,
                )
            })
            .collect())
    }

    /// The seeded role → permission table, as `(role, permission)` names, sorted.
    #[cfg(feature = "test-support")]
    pub async fn role_permission_table(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT role_name, permission_name FROM role_permissions \
             ORDER BY role_name, permission_name"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Every permission name in the database, sorted.
    #[cfg(feature = "test-support")]
    pub async fn permission_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT name FROM permissions ORDER BY name"
        )
        .fetch_all(pool)
        .await)?)
    }
}
