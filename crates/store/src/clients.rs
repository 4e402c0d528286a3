//! OAuth client registrations. Reads that concern a tenant filter on it; the lookup by public
//! `client_id` (the auth plane's entry point) returns the client's tenant with it.

use opentrusty_core::DomainError;
use opentrusty_core::audit::{AuditEvent, Origin, Target, action, changes};
use opentrusty_core::client::{
    AccessTokenFormat, ClientSettings, GrantType, NewClient, OAuthClient, TokenEndpointAuthMethod,
};
use opentrusty_core::signing::Algorithm;
use opentrusty_core::{ClientId, TenantId, now};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use crate::rows::{ByName, DbTime};
use crate::{Store, StoreError, Tx, TxInner, on_pool, on_tx};

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: Uuid,
    client_id: String,
    tenant_id: Uuid,
    name: String,
    token_endpoint_auth_method: ByName<TokenEndpointAuthMethod>,
    redirect_uris: Json<Vec<String>>,
    post_logout_redirect_uris: Json<Vec<String>>,
    web_origins: Json<Vec<String>>,
    grant_types: Json<Vec<GrantType>>,
    allowed_scopes: Json<Vec<String>>,
    first_party: bool,
    access_token_format: ByName<AccessTokenFormat>,
    id_token_signed_response_alg: ByName<Algorithm>,
    require_pkce: bool,
    access_token_ttl_secs: i32,
    refresh_token_ttl_secs: i32,
    id_token_ttl_secs: i32,
    active: bool,
    created_at: DbTime,
}

/// A client as the protocol endpoints need it.
#[derive(Debug, Clone)]
pub struct ClientAccess {
    pub client: OAuthClient,
    /// Digest of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// Client active and tenant active.
    pub usable: bool,
    /// Bumped by every change to the client row; what [`Store::issue_client_token`] confirms.
    pub revision: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClientAccessRow {
    secret_hash: Option<String>,
    usable: bool,
    revision: i64,
    #[sqlx(flatten)]
    client: ClientRow,
}

impl ClientAccessRow {
    pub(crate) fn into_access(self) -> ClientAccess {
        ClientAccess {
            secret_hash: self.secret_hash,
            usable: self.usable,
            revision: self.revision,
            client: self.client.into_client(),
        }
    }
}

impl ClientRow {
    fn into_client(self) -> OAuthClient {
        OAuthClient {
            id: ClientId(self.id),
            client_id: self.client_id,
            tenant_id: TenantId(self.tenant_id),
            name: self.name,
            token_endpoint_auth_method: self.token_endpoint_auth_method.0,
            redirect_uris: self.redirect_uris.0,
            post_logout_redirect_uris: self.post_logout_redirect_uris.0,
            web_origins: self.web_origins.0,
            grant_types: self.grant_types.0,
            allowed_scopes: self.allowed_scopes.0,
            first_party: self.first_party,
            access_token_format: self.access_token_format.0,
            id_token_signed_response_alg: self.id_token_signed_response_alg.0,
            require_pkce: self.require_pkce,
            access_token_ttl_secs: self.access_token_ttl_secs.into(),
            refresh_token_ttl_secs: self.refresh_token_ttl_secs.into(),
            id_token_ttl_secs: self.id_token_ttl_secs.into(),
            active: self.active,
            created_at: self.created_at.0,
        }
    }
}

macro_rules! client_columns {
    () => {
        "id, client_id, tenant_id, name, token_endpoint_auth_method, redirect_uris, \
         post_logout_redirect_uris, web_origins, grant_types, allowed_scopes, first_party, access_token_format, \
         id_token_signed_response_alg, require_pkce, access_token_ttl_secs, refresh_token_ttl_secs, \
         id_token_ttl_secs, active, created_at"
    };
}
pub(crate) use client_columns;

/// Clients as [`ClientAccessRow`] reads them; the caller adds the `WHERE`.
macro_rules! client_access_from {
    () => {
        concat!(
            "SELECT secret_hash, COALESCE(active AND (SELECT tenants.status = 'active' \
             FROM tenants WHERE tenants.id = oauth_clients.tenant_id), FALSE) AS usable, revision, ",
            $crate::clients::client_columns!(),
            " FROM oauth_clients"
        )
    };
}
pub(crate) use client_access_from;

/// The live client with public id `$1` as [`ClientAccessRow`] reads it: the protocol
/// endpoints' look-up, alone or as the first part of a token request's one round trip.
macro_rules! client_access_select {
    () => {
        concat!(
            $crate::clients::client_access_from!(),
            " WHERE client_id = $1 AND deleted_at IS NULL"
        )
    };
}
pub(crate) use client_access_select;

/// Lifetimes are stored as 32-bit seconds (68 years is plenty); anything else is refused.
fn ttl(secs: i64) -> Result<i32, StoreError> {
    i32::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| DomainError::new("lifetime", "must be between 1 second and 68 years").into())
}

impl Store {
    /// Registers a client in a live tenant.
    pub async fn create_client(
        &self,
        new: &NewClient,
        origin: &Origin,
    ) -> Result<OAuthClient, StoreError> {
        let at = now();
        let id = ClientId::new();
        let mut tx = self.begin().await?;
        let live: Option<i32> = on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL"
        )
        .bind(new.tenant_id.0)
        .fetch_optional(&mut *c)
        .await)?;
        if live.is_none() {
            return Err(StoreError::NotFound);
        }
        let ttls = (
            ttl(new.access_token_ttl_secs)?,
            ttl(new.refresh_token_ttl_secs)?,
            ttl(new.id_token_ttl_secs)?,
        );
        let row: ClientRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "INSERT INTO oauth_clients (id, client_id, tenant_id, name, secret_hash, \
             token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, grant_types, \
             allowed_scopes, first_party, access_token_format, id_token_signed_response_alg, \
             require_pkce, access_token_ttl_secs, refresh_token_ttl_secs, id_token_ttl_secs, \
             created_at, updated_at, web_origins) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $18, $19) RETURNING ",
            client_columns!()
        ))
        .bind(id.0)
        .bind(&new.client_id)
        .bind(new.tenant_id.0)
        .bind(&new.name)
        .bind(&new.secret_hash)
        .bind(new.token_endpoint_auth_method.as_str())
        .bind(Json(&new.redirect_uris))
        .bind(Json(&new.post_logout_redirect_uris))
        .bind(Json(&new.grant_types))
        .bind(Json(&new.allowed_scopes))
        .bind(new.first_party)
        .bind(new.access_token_format.as_str())
        .bind(ByName(new.id_token_signed_response_alg))
        .bind(new.require_pkce)
        .bind(ttls.0)
        .bind(ttls.1)
        .bind(ttls.2)
        .bind(DbTime(at))
        .bind(Json(&new.web_origins))
        .fetch_one(&mut *c)
        .await)
        .map_err(|e| StoreError::unique_as(e, "a client with this client_id"))?;
        tx.audit(AuditEvent::new(
            origin,
            action::CLIENT_CREATED,
            Some(new.tenant_id),
            Some(Target::new("client", id)),
            json!({
                "client_id": new.client_id,
                "name": new.name,
                "token_endpoint_auth_method": new.token_endpoint_auth_method.as_str(),
            }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(row.into_client())
    }

    /// A live client of `tenant`.
    pub async fn get_client(
        &self,
        tenant: TenantId,
        id: ClientId,
    ) -> Result<Option<OAuthClient>, StoreError> {
        let row: Option<ClientRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth_clients WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id.0)
        .bind(tenant.0)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(ClientRow::into_client))
    }

    /// A live client by its public `client_id`, whatever its tenant.
    pub async fn find_client(&self, client_id: &str) -> Result<Option<OAuthClient>, StoreError> {
        let row: Option<ClientRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth_clients WHERE client_id = $1 AND deleted_at IS NULL"
        ))
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(ClientRow::into_client))
    }

    /// Whether any live, active public client registers `origin` as a web origin: what a CORS
    /// preflight to the token, revocation or UserInfo endpoint is answered by.
    pub async fn web_origin_registered(&self, origin: &str) -> Result<bool, StoreError> {
        let found: bool = crate::within_deadline(self.statement_deadline, async {
            match &self.db {
                crate::Db::Postgres(pool) => {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM oauth_clients \
                         WHERE web_origins <> '[]'::jsonb AND web_origins @> jsonb_build_array($1::text) \
                           AND deleted_at IS NULL AND active AND token_endpoint_auth_method = 'none')",
                    )
                    .bind(origin)
                    .fetch_one(pool)
                    .await
                }
                crate::Db::Sqlite(pool) => {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM oauth_clients c, json_each(c.web_origins) o \
                         WHERE c.web_origins <> '[]' AND o.value = $1 \
                           AND c.deleted_at IS NULL AND c.active \
                           AND c.token_endpoint_auth_method = 'none')",
                    )
                    .bind(origin)
                    .fetch_one(pool)
                    .await
                }
            }
        })
        .await?;
        Ok(found)
    }

    /// The web origins of client `id` while it is a live, active public client (none
    /// otherwise): the origins whose requests on its behalf get CORS.
    pub async fn client_web_origins(&self, id: ClientId) -> Result<Vec<String>, StoreError> {
        let origins: Option<Json<Vec<String>>> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT web_origins FROM oauth_clients WHERE id = $1 AND deleted_at IS NULL \
             AND active AND token_endpoint_auth_method = 'none'"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(origins.map(|o| o.0).unwrap_or_default())
    }

    /// A live client by public `client_id` with what authenticating it needs, in one round
    /// trip: its secret digest (`None` for public clients) and whether it may be used now
    /// (client active and its tenant active).
    pub async fn find_client_for_request(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientAccess>, StoreError> {
        if let Some(reader) = &self.client_reader
            && let Some(found) = reader.find(client_id).await
        {
            return found;
        }
        let row: Option<ClientAccessRow> =
            on_pool!(self, |pool| sqlx::query_as(client_access_select!())
                .bind(client_id)
                .fetch_optional(pool)
                .await)?;
        Ok(row.map(ClientAccessRow::into_access))
    }

    /// Live clients of `tenant` in id order.
    pub async fn list_clients(
        &self,
        tenant: TenantId,
        after: Option<ClientId>,
        limit: u32,
    ) -> Result<Vec<OAuthClient>, StoreError> {
        let after = after.map(|c| c.0).unwrap_or(Uuid::nil());
        let rows: Vec<ClientRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth_clients WHERE tenant_id = $1 AND deleted_at IS NULL AND id > $2 \
             ORDER BY id LIMIT $3"
        ))
        .bind(tenant.0)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(ClientRow::into_client).collect())
    }
}

/// The fields of a client an audit record compares.
fn audit_view(c: &OAuthClient) -> serde_json::Value {
    json!({
        "name": c.name,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "web_origins": c.web_origins,
        "grant_types": c.grant_types,
        "allowed_scopes": c.allowed_scopes,
        "first_party": c.first_party,
        "access_token_format": c.access_token_format.as_str(),
        "id_token_signed_response_alg": c.id_token_signed_response_alg.as_str(),
        "require_pkce": c.require_pkce,
        "access_token_ttl": c.access_token_ttl_secs,
        "refresh_token_ttl": c.refresh_token_ttl_secs,
        "id_token_ttl": c.id_token_ttl_secs,
    })
}

impl Tx {
    /// A live client of `tenant`, locked against concurrent changes until the transaction ends
    /// (SQLite's write transaction already excludes other writers).
    async fn lock_client(
        &mut self,
        tenant: TenantId,
        id: ClientId,
    ) -> Result<OAuthClient, StoreError> {
        let row: Option<ClientRow> =
            match &mut self.inner {
                TxInner::Postgres(t) => sqlx::query_as(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM oauth_clients WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL \
                 FOR UPDATE"
                ))
                .bind(id.0)
                .bind(tenant.0)
                .fetch_optional(&mut **t)
                .await?,
                TxInner::Sqlite(t) => sqlx::query_as(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM oauth_clients WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
                ))
                .bind(id.0)
                .bind(tenant.0)
                .fetch_optional(&mut **t)
                .await?,
            };
        row.map(ClientRow::into_client).ok_or(StoreError::NotFound)
    }
}

impl Store {
    /// Changes a live client of `tenant`: `change` receives the client as it is (read under a
    /// lock) and returns its new, validated settings. Audits the fields that changed.
    pub async fn update_client(
        &self,
        tenant: TenantId,
        id: ClientId,
        change: impl FnOnce(&OAuthClient) -> Result<ClientSettings, DomainError>,
        origin: &Origin,
    ) -> Result<OAuthClient, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let before = tx.lock_client(tenant, id).await?;
        let s = change(&before)?;
        let ttls = (
            ttl(s.access_token_ttl_secs)?,
            ttl(s.refresh_token_ttl_secs)?,
            ttl(s.id_token_ttl_secs)?,
        );
        let row: ClientRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "UPDATE oauth_clients SET name = $2, redirect_uris = $3, \
             post_logout_redirect_uris = $4, grant_types = $5, allowed_scopes = $6, \
             first_party = $7, access_token_format = $8, id_token_signed_response_alg = $9, \
             require_pkce = $10, access_token_ttl_secs = $11, refresh_token_ttl_secs = $12, \
             id_token_ttl_secs = $13, updated_at = $14, web_origins = $15 WHERE id = $1 RETURNING ",
            client_columns!()
        ))
        .bind(id.0)
        .bind(&s.name)
        .bind(Json(&s.redirect_uris))
        .bind(Json(&s.post_logout_redirect_uris))
        .bind(Json(&s.grant_types))
        .bind(Json(&s.allowed_scopes))
        .bind(s.first_party)
        .bind(s.access_token_format.as_str())
        .bind(ByName(s.id_token_signed_response_alg))
        .bind(s.require_pkce)
        .bind(ttls.0)
        .bind(ttls.1)
        .bind(ttls.2)
        .bind(DbTime(at))
        .bind(Json(&s.web_origins))
        .fetch_one(&mut *c)
        .await)?;
        let after = row.into_client();
        let changed = changes(&audit_view(&before), &audit_view(&after));
        if changed.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(before);
        }
        tx.audit(AuditEvent::new(
            origin,
            action::CLIENT_UPDATED,
            Some(tenant),
            Some(Target::new("client", id)),
            json!({ "changes": changed }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Replaces the secret of a live confidential client of `tenant` with one whose digest is
    /// `secret_hash`. Tokens already issued stay valid until they expire.
    pub async fn rotate_client_secret(
        &self,
        tenant: TenantId,
        id: ClientId,
        secret_hash: &str,
        origin: &Origin,
    ) -> Result<OAuthClient, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let client = tx.lock_client(tenant, id).await?;
        if client.token_endpoint_auth_method.is_public() {
            return Err(DomainError::new(
                "token_endpoint_auth_method",
                "a public client has no secret to rotate",
            )
            .into());
        }
        on_tx!(tx, |c| sqlx::query(
            "UPDATE oauth_clients SET secret_hash = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(id.0)
        .bind(secret_hash)
        .bind(DbTime(at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::CLIENT_SECRET_ROTATED,
            Some(tenant),
            Some(Target::new("client", id)),
            json!({ "client_id": client.client_id }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(client)
    }

    /// Soft-deletes a live client of `tenant` and, in the same transaction, revokes everything
    /// it was issued (token families, access tokens), deletes its pending codes, consents and
    /// the role assignments it held or that were scoped to it. Users are never touched.
    pub async fn delete_client(
        &self,
        tenant: TenantId,
        id: ClientId,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        let client = tx.lock_client(tenant, id).await?;
        on_tx!(tx, |c| {
            sqlx::query(
            "UPDATE oauth_clients SET active = FALSE, deleted_at = $2, updated_at = $2 WHERE id = $1"
        )
        .bind(id.0)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
        })?;
        let counts = tx
            .cascade(
                id.0,
                at,
                &[
            (
                "token_families",
                "UPDATE token_families SET revoked_at = $2, revoked_reason = 'client_deleted' \
                 WHERE client_id = $1 AND revoked_at IS NULL",
                true,
            ),
            (
                "access_tokens",
                "UPDATE access_tokens SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL",
                true,
            ),
            (
                "authorization_codes",
                "DELETE FROM authorization_codes WHERE client_id = $1",
                false,
            ),
            (
                "consents",
                "DELETE FROM consents WHERE client_id = $1",
                false,
            ),
            (
                "role_assignments",
                "DELETE FROM role_assignments WHERE client_id = $1 OR scope_client_id = $1",
                false,
            ),
        ],
            )
            .await?;
        tx.audit(AuditEvent::new(
            origin,
            action::CLIENT_DELETED,
            Some(tenant),
            Some(Target::new("client", id)),
            json!({ "client_id": client.client_id, "ended": counts }),
            at.0,
        ))
        .await?;
        tx.commit().await
    }
}
