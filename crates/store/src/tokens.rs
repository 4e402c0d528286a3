//! Grants and tokens: authorization codes, refresh-token families, refresh tokens and access
//! tokens. Only digests of bearer values are stored. Issuing writes its audit row in the same
//! transaction, so no token exists that the trail does not know about.

use std::sync::LazyLock;

use opentrusty_core::audit::{Actor, AuditEvent, Origin, Target, action};
use opentrusty_core::ids::{AuditEventId, TokenFamilyId};
use opentrusty_core::pkce::PkceMethod;
use opentrusty_core::{ClientId, SessionId, TenantId, Timestamp, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::postgres::batch::{ClientTokenWrite, TokenWrite};
use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, on_tx};

/// An authorization code to store, bound to everything the token request must match.
#[derive(Debug, Clone)]
pub struct NewAuthorizationCode {
    pub code_digest: [u8; 32],
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<PkceMethod>,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    /// Whether the authorization request carried `redirect_uri` (then the token request must
    /// repeat it, RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
}

/// A new refresh-token family: the grant every rotated refresh token of it descends from.
#[derive(Debug, Clone)]
pub struct NewTokenFamily {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub scope: String,
    pub auth_time: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// Digest of the family's first refresh token; `None` when the grant has no refresh token.
    pub refresh_digest: Option<[u8; 32]>,
    /// Offline access was granted: the family outlives the browser session `session_id`.
    /// Otherwise it belongs to that session and ends with it.
    pub offline: bool,
}

/// An access token to record (JWT or opaque; opaque ones carry their digest).
#[derive(Debug, Clone)]
pub struct NewAccessToken {
    pub jti: Uuid,
    pub token_digest: Option<[u8; 32]>,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub user_id: Option<UserId>,
    pub scope: String,
    pub expires_at: Timestamp,
}

/// The outcome of [`Store::issue_client_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The token and its audit row are recorded.
    Issued,
    /// The client changed (or was disabled, deleted, or its tenant suspended) after the
    /// revision the token was decided on: nothing was written.
    Stale,
}

/// SQL condition: the client `$client` of tenant `$tenant` is at revision `$revision`, active,
/// not deleted, and its tenant active (the arguments name columns or placeholders).
macro_rules! client_at_revision {
    ($client:literal, $tenant:literal, $revision:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM oauth_clients c JOIN tenants t ON t.id = c.tenant_id \
             WHERE c.id = ",
            $client,
            " AND c.tenant_id = ",
            $tenant,
            " AND c.revision = ",
            $revision,
            " AND c.active AND c.deleted_at IS NULL AND t.status = 'active')"
        )
    };
}
pub(crate) use client_at_revision;

impl Tx {
    pub(crate) async fn insert_family(
        &mut self,
        f: &NewTokenFamily,
    ) -> Result<TokenFamilyId, StoreError> {
        let at = now();
        let id = TokenFamilyId::new();
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO token_families (id, tenant_id, client_id, user_id, session_id, \
             scope, auth_time, created_at, expires_at, offline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(id.0)
        .bind(f.tenant_id.0)
        .bind(f.client_id.0)
        .bind(f.user_id.map(|u| u.0))
        .bind(f.session_id.map(|s| s.0))
        .bind(&f.scope)
        .bind(f.auth_time.map(DbTime))
        .bind(DbTime(at))
        .bind(DbTime(f.expires_at))
        .bind(f.offline)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if let Some(digest) = &f.refresh_digest {
            self.insert_refresh_token(id, digest, f.expires_at).await?;
        }
        Ok(id)
    }

    pub(crate) async fn insert_refresh_token(
        &mut self,
        family: TokenFamilyId,
        digest: &[u8; 32],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)"
        )
        .bind(&digest[..])
        .bind(family.0)
        .bind(DbTime(now()))
        .bind(DbTime(expires_at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub(crate) async fn insert_access_token(
        &mut self,
        access: &NewAccessToken,
        family: Option<TokenFamilyId>,
    ) -> Result<(), StoreError> {
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, user_id, \
             family_id, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(access.jti)
        .bind(access.token_digest.as_ref().map(|d| &d[..]))
        .bind(access.tenant_id.0)
        .bind(access.client_id.0)
        .bind(access.user_id.map(|u| u.0))
        .bind(family.map(|f| f.0))
        .bind(&access.scope)
        .bind(DbTime(now()))
        .bind(DbTime(access.expires_at))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub(crate) async fn audit_issue(
        &mut self,
        access: &NewAccessToken,
        refresh: Option<bool>,
        what: &str,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        self.audit(issue_event(access, refresh, what, origin)).await
    }
}

/// PostgreSQL query under construction (the single-statement writes).
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The audit row of an issued access token.
pub(crate) fn issue_event(
    access: &NewAccessToken,
    refresh: Option<bool>,
    what: &str,
    origin: &Origin,
) -> AuditEvent {
    AuditEvent::new(
        origin,
        what,
        Some(access.tenant_id),
        Some(Target::new("client", access.client_id)),
        json!({
            "jti": access.jti,
            "scope": access.scope,
            "user_id": access.user_id,
            "refresh": refresh.unwrap_or(false),
        }),
        now(),
    )
}

/// The audit row that records a client-credentials token by itself: its id is the token's jti,
/// its actor the client, and the statement that appends it adds the token's digest and expiry,
/// so the row stands for the token in `access_token_records` (docs/storage.md).
pub(crate) fn client_token_event(access: &NewAccessToken, origin: &Origin) -> AuditEvent {
    let mut event = issue_event(access, None, action::TOKEN_ISSUED, origin);
    event.id = AuditEventId(access.jti);
    event.actor = Actor::Client(access.client_id);
    event
}

/// The parameters [`bind_code!`] binds, in its order, as [`code_values!`] names them.
pub(crate) const CODE_PARAMETERS: [&str; 14] = [
    "code_hash",
    "code_tenant",
    "code_client",
    "code_user",
    "code_session",
    "code_redirect_uri",
    "code_scope",
    "code_nonce",
    "code_challenge",
    "code_challenge_method",
    "code_auth_time",
    "code_created_at",
    "code_expires",
    "code_redirect_uri_given",
];

/// [`insert_code!`]'s values as [`CODE_PARAMETERS`].
macro_rules! code_values {
    () => {
        ":code_hash, :code_tenant, :code_client, :code_user, :code_session, \
         :code_redirect_uri, :code_scope, :code_nonce, :code_challenge, \
         :code_challenge_method, :code_auth_time, :code_created_at, :code_expires, \
         :code_redirect_uri_given"
    };
}
pub(crate) use code_values;

/// A code alone ([`Tx::insert_code`], which audits it itself).
pub(crate) static INSERT_CODE: LazyLock<String> =
    LazyLock::new(|| crate::sql::statement(&CODE_PARAMETERS, insert_code!(code_values!())));

/// A code and its audit row (`issued_…`) in one statement, on PostgreSQL.
pub(crate) static ISSUE_CODE: LazyLock<String> = LazyLock::new(|| {
    let names = [
        crate::sql::owned(&CODE_PARAMETERS),
        crate::audit::audit_parameters("issued"),
    ]
    .concat();
    let template = format!(
        concat!(
            "WITH code AS (",
            insert_code!(code_values!()),
            ") INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") VALUES {}"
        ),
        crate::audit::audit_values("issued")
    );
    crate::sql::statement_of(&names, &template)
});

/// A client token's audit row on SQLite, written only while its client is at the revision the
/// token was decided on (`client_at_revision!`).
pub(crate) static CLIENT_TOKEN_ROW: LazyLock<String> = LazyLock::new(|| {
    let names = [
        crate::audit::audit_parameters("event"),
        crate::sql::owned(&["token_hash", "token_expires", "client", "revision"]),
    ]
    .concat();
    let template = format!(
        concat!(
            "INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ", token_hash, token_expires_at) SELECT {}, :token_hash, :token_expires WHERE ",
            client_at_revision!(":client", ":event_tenant_id", ":revision")
        ),
        crate::audit::audit_value_list("event")
    );
    crate::sql::statement_of(&names, &template)
});

/// The insert of an authorization code with its fourteen values in the order of
/// [`bind_code!`] (`$values` names their placeholders, so a statement can place it anywhere).
macro_rules! insert_code {
    ($values:expr) => {
        concat!(
            "INSERT INTO authorization_codes (code_hash, tenant_id, client_id, user_id, \
             session_id, redirect_uri, scope, nonce, code_challenge, code_challenge_method, \
             auth_time, created_at, expires_at, redirect_uri_given) VALUES (",
            $values,
            ")"
        )
    };
}
pub(crate) use insert_code;

/// Binds a code issued at `at` as the fourteen values of [`insert_code!`], after the
/// parameters already bound to the query (either backend).
macro_rules! bind_code {
    ($q:expr, $code:expr, $at:expr) => {
        $q.bind(&$code.code_digest[..])
            .bind($code.tenant_id.0)
            .bind($code.client_id.0)
            .bind($code.user_id.0)
            .bind($code.session_id.map(|s| s.0))
            .bind(&$code.redirect_uri)
            .bind(&$code.scope)
            .bind(&$code.nonce)
            .bind(&$code.code_challenge)
            .bind($code.code_challenge_method.map($crate::rows::ByName))
            .bind(DbTime($code.auth_time))
            .bind(DbTime($at))
            .bind(DbTime($code.expires_at))
            .bind($code.redirect_uri_given)
    };
}
pub(crate) use bind_code;

/// The audit row of an issued authorization code.
pub(crate) fn code_event(
    code: &NewAuthorizationCode,
    origin: &Origin,
    at: Timestamp,
) -> AuditEvent {
    AuditEvent::new(
        origin,
        action::AUTHORIZATION_CODE_ISSUED,
        Some(code.tenant_id),
        Some(Target::new("client", code.client_id)),
        json!({ "user_id": code.user_id, "scope": code.scope }),
        at,
    )
}

impl Tx {
    /// Stores `code` with its audit row.
    pub(crate) async fn insert_code(
        &mut self,
        code: &NewAuthorizationCode,
        origin: &Origin,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        on_tx!(self, |c| bind_code!(
            sqlx::query(INSERT_CODE.as_str()),
            code,
            at
        )
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        self.audit(code_event(code, origin, at)).await
    }
}

impl Store {
    pub async fn issue_authorization_code(
        &self,
        code: &NewAuthorizationCode,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let at = now();
        if let crate::Db::Postgres(pool) = &self.db {
            // The code and its audit row in one statement, one round trip.
            let event = code_event(code, origin, at);
            let q = bind_code!(sqlx::query(ISSUE_CODE.as_str()), code, at);
            crate::audit::bind_event(q, &event).execute(pool).await?;
            return Ok(());
        }
        let mut tx = self.begin().await?;
        tx.insert_code(code, origin, at).await?;
        tx.commit().await
    }

    /// Records an access token and, when `family` is given, the token family (with its first
    /// refresh token, when it has one), all in one transaction with the audit row.
    pub async fn issue_tokens(
        &self,
        access: &NewAccessToken,
        family: Option<&NewTokenFamily>,
        origin: &Origin,
    ) -> Result<Option<TokenFamilyId>, StoreError> {
        if family.is_none()
            && let crate::Db::Postgres(pool) = &self.db
        {
            let group = self.group_commits.as_ref().map(|g| &g.tokens);
            crate::postgres::batch::write(
                pool,
                self.statement_deadline,
                group,
                TokenWrite::new(access, origin),
            )
            .await?;
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        let family_id = match family {
            Some(f) => Some(tx.insert_family(f).await?),
            None => None,
        };
        tx.insert_access_token(access, family_id).await?;
        tx.audit_issue(
            access,
            family.map(|f| f.refresh_digest.is_some()),
            action::TOKEN_ISSUED,
            origin,
        )
        .await?;
        tx.commit().await?;
        Ok(family_id)
    }

    /// Records a client-credentials token decided on the client at `revision` (see
    /// [`ClientAccess::revision`](crate::ClientAccess)), by its audit row alone
    /// ([`client_token_event`]), only if the client is still at that revision, active and in
    /// an active tenant when the write commits; else nothing is written and the answer is
    /// [`Confirmation::Stale`]. The token must carry its digest: the row is found by it.
    pub async fn issue_client_token(
        &self,
        access: &NewAccessToken,
        revision: i64,
        origin: &Origin,
    ) -> Result<Confirmation, StoreError> {
        let Some(digest) = access.token_digest else {
            return Err(StoreError::Refused(
                "a client token is recorded by its digest".to_owned(),
            ));
        };
        let written = match &self.db {
            crate::Db::Postgres(pool) => {
                let group = self.group_commits.as_ref().map(|g| &g.client_tokens);
                let write = ClientTokenWrite::new(access, revision, origin);
                crate::postgres::batch::write(pool, self.statement_deadline, group, write).await?
            }
            crate::Db::Sqlite(pool) => {
                let event = client_token_event(access, origin);
                crate::audit::bind_audit!(sqlx::query(CLIENT_TOKEN_ROW.as_str()), &event)
                    .bind(&digest[..])
                    .bind(DbTime(access.expires_at))
                    .bind(access.client_id.0)
                    .bind(revision)
                    .execute(pool)
                    .await?
                    .rows_affected()
                    == 1
            }
        };
        Ok(if written {
            Confirmation::Issued
        } else {
            Confirmation::Stale
        })
    }

    /// Whether the access token `jti` is usable at `at`: recorded, unexpired, not revoked, its
    /// family (if any) not revoked, its client and tenant not deleted.
    #[cfg(feature = "test-support")]
    pub async fn access_token_active(&self, jti: Uuid, at: Timestamp) -> Result<bool, StoreError> {
        Ok(self
            .find_access_token(jti, at)
            .await?
            .is_some_and(|r| r.active))
    }

    /// Whether a refresh-token family is revoked; `None` if there is no such family.
    #[cfg(feature = "test-support")]
    pub async fn token_family_revoked(
        &self,
        id: TokenFamilyId,
    ) -> Result<Option<bool>, StoreError> {
        let revoked: Option<Option<DbTime>> = crate::on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT revoked_at FROM token_families WHERE id = $1"
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        Ok(revoked.map(|r| r.is_some()))
    }

    /// Whether an unredeemed, unexpired authorization code with this digest exists.
    #[cfg(feature = "test-support")]
    pub async fn authorization_code_pending(
        &self,
        code_digest: &[u8; 32],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let found: Option<i32> = crate::on_pool!(self, |pool| sqlx::query_scalar(concat!(
            "SELECT 1 FROM authorization_codes WHERE code_hash = $1 AND ",
            crate::grants::code_claimable!("authorization_codes", "$2")
        ))
        .bind(&code_digest[..])
        .bind(DbTime(at))
        .fetch_optional(pool)
        .await)?;
        Ok(found.is_some())
    }
}
