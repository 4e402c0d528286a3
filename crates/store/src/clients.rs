//! OAuth client registrations. Reads that concern a tenant filter on it; the lookup by public
//! `client_id` (the auth plane's entry point) returns the client's tenant with it.

use opentrusty_core::DomainError;
use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::client::{AccessTokenFormat, NewClient, OAuthClient, TokenEndpointAuthMethod};
use opentrusty_core::{ClientId, TenantId, now};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, on_pool, on_tx};

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: Uuid,
    client_id: String,
    tenant_id: Uuid,
    name: String,
    token_endpoint_auth_method: String,
    redirect_uris: Json<Vec<String>>,
    post_logout_redirect_uris: Json<Vec<String>>,
    grant_types: Json<Vec<String>>,
    allowed_scopes: Json<Vec<String>>,
    first_party: bool,
    access_token_format: String,
    id_token_signed_response_alg: String,
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
}

#[derive(sqlx::FromRow)]
struct ClientAccessRow {
    secret_hash: Option<String>,
    usable: bool,
    #[sqlx(flatten)]
    client: ClientRow,
}

impl ClientRow {
    fn into_client(self) -> OAuthClient {
        OAuthClient {
            id: ClientId(self.id),
            client_id: self.client_id,
            tenant_id: TenantId(self.tenant_id),
            name: self.name,
            token_endpoint_auth_method: TokenEndpointAuthMethod::parse(
                &self.token_endpoint_auth_method,
            )
            .unwrap_or(TokenEndpointAuthMethod::ClientSecretBasic),
            redirect_uris: self.redirect_uris.0,
            post_logout_redirect_uris: self.post_logout_redirect_uris.0,
            grant_types: self.grant_types.0,
            allowed_scopes: self.allowed_scopes.0,
            first_party: self.first_party,
            access_token_format: AccessTokenFormat::parse(&self.access_token_format)
                .unwrap_or(AccessTokenFormat::Jwt),
            id_token_signed_response_alg: self.id_token_signed_response_alg,
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
         post_logout_redirect_uris, grant_types, allowed_scopes, first_party, access_token_format, \
         id_token_signed_response_alg, require_pkce, access_token_ttl_secs, refresh_token_ttl_secs, \
         id_token_ttl_secs, active, created_at"
    };
}

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
        let row: ClientRow = on_tx!(tx, |c| sqlx::query_as(concat!(
            "INSERT INTO oauth_clients (id, client_id, tenant_id, name, secret_hash, \
             token_endpoint_auth_method, redirect_uris, post_logout_redirect_uris, grant_types, \
             allowed_scopes, first_party, access_token_format, id_token_signed_response_alg, \
             require_pkce, access_token_ttl_secs, refresh_token_ttl_secs, id_token_ttl_secs, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $18) RETURNING ",
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
        .bind(&new.id_token_signed_response_alg)
        .bind(new.require_pkce)
        .bind(ttl(new.access_token_ttl_secs)?)
        .bind(ttl(new.refresh_token_ttl_secs)?)
        .bind(ttl(new.id_token_ttl_secs)?)
        .bind(DbTime(at))
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

    /// A live client by public `client_id` with what authenticating it needs, in one round
    /// trip: its secret digest (`None` for public clients) and whether it may be used now
    /// (client active and its tenant active).
    pub async fn find_client_for_request(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientAccess>, StoreError> {
        let row: Option<ClientAccessRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT secret_hash, COALESCE(active AND (SELECT tenants.status = 'active' \
             FROM tenants WHERE tenants.id = oauth_clients.tenant_id), FALSE) AS usable, ",
            client_columns!(),
            " FROM oauth_clients WHERE client_id = $1 AND deleted_at IS NULL"
        ))
        .bind(client_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|r| ClientAccess {
            secret_hash: r.secret_hash,
            usable: r.usable,
            client: r.client.into_client(),
        }))
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
