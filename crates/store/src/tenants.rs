//! Tenant lifecycle: create, read, list, rename, suspend/activate, and soft delete, which ends
//! the tenant's sessions, clients, codes, tokens and open enrollment links in one transaction.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action, changes};
use opentrusty_core::tenant::{Tenant, TenantName, TenantPatch, TenantStatus};
use opentrusty_core::{DomainError, TenantId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, on_pool, on_tx};

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    name: String,
    display_name: Option<String>,
    logo_url: Option<String>,
    accent_color: Option<String>,
    status: String,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TenantRow {
    fn into_tenant(self) -> Tenant {
        Tenant {
            id: TenantId(self.id),
            name: self.name,
            display_name: self.display_name,
            logo_url: self.logo_url,
            accent_color: self.accent_color,
            // The CHECK constraint admits only the three known values.
            status: TenantStatus::parse(&self.status).unwrap_or(TenantStatus::Suspended),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

macro_rules! tenant_columns {
    () => {
        "id, name, display_name, logo_url, accent_color, status, created_at, updated_at"
    };
}

const NAME_TAKEN: &str = "a tenant with this name";

/// The fields of a tenant an audit record compares.
fn audit_view(t: &Tenant) -> serde_json::Value {
    json!({
        "name": t.name,
        "display_name": t.display_name,
        "logo_url": t.logo_url,
        "accent_color": t.accent_color,
        "status": t.status.as_str(),
    })
}

impl Store {
    pub async fn create_tenant(
        &self,
        name: &TenantName,
        display_name: Option<&str>,
        origin: &Origin,
    ) -> Result<Tenant, StoreError> {
        let at = now();
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.name.clone(),
            display_name: display_name.map(str::to_owned),
            logo_url: None,
            accent_color: None,
            status: TenantStatus::Active,
            created_at: at,
            updated_at: at,
        };
        let mut tx = self.begin().await?;
        on_tx!(tx, |c| sqlx::query(
            "INSERT INTO tenants (id, name, name_key, display_name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'active', $5, $5)"
        )
        .bind(tenant.id.0)
        .bind(&tenant.name)
        .bind(&name.key)
        .bind(&tenant.display_name)
        .bind(DbTime(at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| StoreError::unique_as(e, NAME_TAKEN))?;
        tx.audit(AuditEvent::new(
            origin,
            action::TENANT_CREATED,
            Some(tenant.id),
            Some(Target::new("tenant", tenant.id)),
            json!({ "name": tenant.name }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// A tenant that is not deleted.
    pub async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(TenantRow::into_tenant))
    }

    /// Tenants that are not deleted, oldest first, after `after` (exclusive).
    pub async fn list_tenants(
        &self,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let after = after.map(|t| t.0).unwrap_or(Uuid::nil());
        let rows: Vec<TenantRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(TenantRow::into_tenant).collect())
    }

    /// Applies `patch` to a live tenant in one transaction, auditing the fields that changed
    /// (before and after). Suspending or reactivating is recorded as its own action too.
    pub async fn update_tenant(
        &self,
        id: TenantId,
        patch: &TenantPatch,
        origin: &Origin,
    ) -> Result<Tenant, StoreError> {
        if patch.status == Some(TenantStatus::Deleted) {
            return Err(DomainError::new("status", "use DELETE to delete a tenant").into());
        }
        let at = now();
        let mut tx = self.begin().await?;
        let before: Option<TenantRow> = on_tx!(tx, |c| sqlx::query_as(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .fetch_optional(&mut *c)
        .await)?;
        let before = before.ok_or(StoreError::NotFound)?.into_tenant();
        let mut after = before.clone();
        let mut name_key = before.name.to_lowercase();
        if let Some(n) = &patch.name {
            after.name = n.name.clone();
            name_key = n.key.clone();
        }
        if let Some(v) = &patch.display_name {
            after.display_name = v.clone();
        }
        if let Some(v) = &patch.logo_url {
            after.logo_url = v.clone();
        }
        if let Some(v) = &patch.accent_color {
            after.accent_color = v.clone();
        }
        if let Some(s) = patch.status {
            after.status = s;
        }
        let changed = changes(&audit_view(&before), &audit_view(&after));
        if changed.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(before);
        }
        let row: TenantRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "UPDATE tenants SET name = $2, name_key = $3, display_name = $4, logo_url = $5, \
             accent_color = $6, status = $7, updated_at = $8 WHERE id = $1 RETURNING ",
            tenant_columns!()
        ))
        .bind(id.0)
        .bind(&after.name)
        .bind(&name_key)
        .bind(&after.display_name)
        .bind(&after.logo_url)
        .bind(&after.accent_color)
        .bind(after.status.as_str())
        .bind(DbTime(at))
        .fetch_one(&mut *c)
        .await)
        .map_err(|e| StoreError::unique_as(e, NAME_TAKEN))?;
        let event = match (before.status, after.status) {
            (TenantStatus::Active, TenantStatus::Suspended) => action::TENANT_SUSPENDED,
            (TenantStatus::Suspended, TenantStatus::Active) => action::TENANT_ACTIVATED,
            _ => action::TENANT_UPDATED,
        };
        tx.audit(AuditEvent::new(
            origin,
            event,
            Some(id),
            Some(Target::new("tenant", id)),
            json!({ "changes": changed }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(row.into_tenant())
    }

    /// Soft-deletes a tenant and, in the same transaction, ends everything that grants access to
    /// it: sessions, authorization codes and open enrollment links are deleted; clients are
    /// disabled and marked deleted; token families and access tokens are revoked. Users and the
    /// audit trail stay.
    pub async fn delete_tenant(&self, id: TenantId, origin: &Origin) -> Result<(), StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        let deleted = on_tx!(tx, |c| sqlx::query(
            "UPDATE tenants SET status = 'deleted', deleted_at = $2, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL"
        )
        .bind(id.0)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        let counts = tx
            .cascade(
                id.0,
                at,
                &[
            (
                "sessions",
                "DELETE FROM sessions WHERE tenant_id = $1",
                false,
            ),
            (
                "clients",
                "UPDATE oauth_clients SET active = FALSE, deleted_at = $2, updated_at = $2 \
                 WHERE tenant_id = $1 AND deleted_at IS NULL",
                true,
            ),
            (
                "token_families",
                "UPDATE token_families SET revoked_at = $2, revoked_reason = 'tenant_deleted' \
                 WHERE tenant_id = $1 AND revoked_at IS NULL",
                true,
            ),
            (
                "access_tokens",
                "UPDATE access_tokens SET revoked_at = $2 \
                 WHERE tenant_id = $1 AND revoked_at IS NULL",
                true,
            ),
            (
                "authorization_codes",
                "DELETE FROM authorization_codes WHERE tenant_id = $1",
                false,
            ),
            (
                "enrollment_links",
                "DELETE FROM enrollment_links WHERE tenant_id = $1 AND used_at IS NULL",
                false,
            ),
        ],
            )
            .await?;
        tx.audit(AuditEvent::new(
            origin,
            action::TENANT_DELETED,
            Some(id),
            Some(Target::new("tenant", id)),
            json!({ "ended": counts }),
            at.0,
        ))
        .await?;
        tx.commit().await
    }
}
