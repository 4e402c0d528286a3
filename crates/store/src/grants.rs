//! Redeeming grants: authorization codes (single use, by one atomic statement; a replay revokes
//! what the code issued), refresh-token rotation with reuse detection, revocation, and the
//! lookups that introspection and userinfo need. Each decision that matters across processes is
//! a single conditional UPDATE, so two processes can never both win.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::ids::TokenFamilyId;
use opentrusty_core::pkce::PkceMethod;
use opentrusty_core::user::User;
use opentrusty_core::{ClientId, SessionId, TenantId, Timestamp, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::ClientAccess;
use crate::clients::{ClientAccessRow, client_access_select};
use crate::postgres::grant_writes::{RedeemWrite, RotateWrite};
use crate::postgres::settlement::{Replay, Spend};
use crate::rows::{ByName, DbTime};
use crate::tokens::{NewAccessToken, NewTokenFamily};
use crate::users::UserRow;
use crate::{Store, StoreError, Tx, on_pool, on_tx};

/// An authorization code as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri`: the token request must repeat it.
    pub redirect_uri_given: bool,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<PkceMethod>,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    /// Already redeemed once.
    pub used: bool,
    /// The user the code was issued to, unless deleted since.
    pub user: Option<User>,
}

/// The rule a code is redeemed by, on both databases and in the group commit: not claimed yet
/// and not expired at `$at` (`$code` names the `authorization_codes` row).
macro_rules! code_claimable {
    ($code:literal, $at:literal) => {
        concat!($code, ".used_at IS NULL AND ", $code, ".expires_at > ", $at)
    };
}
pub(crate) use code_claimable;

/// The rule a refresh token is spent by, on both databases and in the group commit: not
/// rotated yet, not expired at `$at`, and its family not revoked (`$token` names the
/// `refresh_tokens` row).
macro_rules! refresh_spendable {
    ($token:literal, $at:literal) => {
        concat!(
            $token,
            ".rotated_at IS NULL AND ",
            $token,
            ".expires_at > ",
            $at,
            " AND EXISTS (SELECT 1 FROM token_families f WHERE f.id = ",
            $token,
            ".family_id AND f.revoked_at IS NULL)"
        )
    };
}
pub(crate) use refresh_spendable;

/// The columns of an authorization code `a` under names of their own (they sit beside a
/// client's in a token request's look-up); read as [`JoinedCode`].
macro_rules! code_columns {
    () => {
        "a.tenant_id AS code_tenant_id, a.client_id AS code_client_id, \
         a.user_id AS code_user_id, a.session_id AS code_session_id, \
         a.redirect_uri AS code_redirect_uri, a.redirect_uri_given AS code_redirect_uri_given, \
         a.scope AS code_scope, a.nonce AS code_nonce, \
         a.code_challenge AS code_challenge, a.code_challenge_method AS code_challenge_method, \
         a.auth_time AS code_auth_time, a.expires_at AS code_expires_at, \
         a.used_at AS code_used_at"
    };
}

/// A code read through [`code_columns`]; every column is NULL when a `LEFT JOIN` found none.
#[derive(sqlx::FromRow)]
struct JoinedCode {
    code_tenant_id: Option<Uuid>,
    code_client_id: Option<Uuid>,
    code_user_id: Option<Uuid>,
    code_session_id: Option<Uuid>,
    code_redirect_uri: Option<String>,
    code_redirect_uri_given: Option<bool>,
    code_scope: Option<String>,
    code_nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<ByName<PkceMethod>>,
    code_auth_time: Option<DbTime>,
    code_expires_at: Option<DbTime>,
    code_used_at: Option<DbTime>,
    #[sqlx(flatten)]
    user: JoinedUser,
}

impl JoinedCode {
    fn into_grant(self) -> Option<CodeGrant> {
        Some(CodeGrant {
            tenant_id: TenantId(self.code_tenant_id?),
            client_id: ClientId(self.code_client_id?),
            user_id: UserId(self.code_user_id?),
            session_id: self.code_session_id.map(SessionId),
            redirect_uri: self.code_redirect_uri?,
            redirect_uri_given: self.code_redirect_uri_given?,
            scope: self.code_scope?,
            nonce: self.code_nonce,
            code_challenge: self.code_challenge,
            code_challenge_method: self.code_challenge_method.map(|m| m.0),
            auth_time: self.code_auth_time?.0,
            expires_at: self.code_expires_at?.0,
            used: self.code_used_at.is_some(),
            user: self.user.into_user(),
        })
    }
}

/// What redeeming a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// This call redeemed the code; the tokens are recorded in this family.
    Issued(TokenFamilyId),
    /// The code had been redeemed already: what it issued is now revoked.
    Replayed,
    /// No such code, or it expired.
    Invalid,
    /// The code's earlier redemption by this process was in doubt and is settled now: the
    /// code may be redeemed. Only [`Store::revoke_replayed_code`] answers it;
    /// [`Store::redeem_authorization_code`] redeems the code again instead.
    Restored,
}

/// A refresh token as stored, with its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    pub family_id: TokenFamilyId,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub scope: String,
    pub auth_time: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub rotated_at: Option<Timestamp>,
    pub family_revoked: bool,
    /// Offline access was granted: the family outlives its browser session.
    pub offline: bool,
    /// The family's browser session while it exists: (absolute end, last use).
    pub session: Option<(Timestamp, Timestamp)>,
    /// The family's user, unless deleted since.
    pub user: Option<User>,
}

impl RefreshGrant {
    /// Whether the family may still be used at `at`: offline, or its browser session is live
    /// (before its end and used within the last `idle_secs`).
    pub fn session_allows(&self, at: Timestamp, idle_secs: i64) -> bool {
        self.offline
            || self.session.is_some_and(|(expires_at, last_seen_at)| {
                expires_at > at && last_seen_at > at - time::Duration::seconds(idle_secs)
            })
    }
}

/// The columns of a refresh token `r`, its family `f` and the family's session `s` (joined with
/// `LEFT JOIN sessions s ON s.id = f.session_id`) under names of their own; read as [`JoinedRefresh`].
macro_rules! refresh_columns {
    () => {
        "r.family_id AS refresh_family_id, f.tenant_id AS refresh_tenant_id, \
         f.client_id AS refresh_client_id, f.user_id AS refresh_user_id, \
         f.session_id AS refresh_session_id, f.scope AS refresh_scope, \
         f.auth_time AS refresh_auth_time, r.expires_at AS refresh_expires_at, \
         r.rotated_at AS refresh_rotated_at, f.revoked_at AS refresh_family_revoked_at, \
         f.offline AS refresh_offline, s.expires_at AS refresh_session_expires_at, \
         s.last_seen_at AS refresh_session_last_seen_at"
    };
}

/// A refresh token read through [`refresh_columns`]; all NULL when a `LEFT JOIN` found none.
#[derive(sqlx::FromRow)]
struct JoinedRefresh {
    refresh_family_id: Option<Uuid>,
    refresh_tenant_id: Option<Uuid>,
    refresh_client_id: Option<Uuid>,
    refresh_user_id: Option<Uuid>,
    refresh_session_id: Option<Uuid>,
    refresh_scope: Option<String>,
    refresh_auth_time: Option<DbTime>,
    refresh_expires_at: Option<DbTime>,
    refresh_rotated_at: Option<DbTime>,
    refresh_family_revoked_at: Option<DbTime>,
    refresh_offline: Option<bool>,
    refresh_session_expires_at: Option<DbTime>,
    refresh_session_last_seen_at: Option<DbTime>,
    #[sqlx(flatten)]
    user: JoinedUser,
}

impl JoinedRefresh {
    fn into_grant(self) -> Option<RefreshGrant> {
        Some(RefreshGrant {
            family_id: TokenFamilyId(self.refresh_family_id?),
            tenant_id: TenantId(self.refresh_tenant_id?),
            client_id: ClientId(self.refresh_client_id?),
            user_id: self.refresh_user_id.map(UserId),
            session_id: self.refresh_session_id.map(SessionId),
            scope: self.refresh_scope?,
            auth_time: self.refresh_auth_time.map(|t| t.0),
            expires_at: self.refresh_expires_at?.0,
            rotated_at: self.refresh_rotated_at.map(|t| t.0),
            family_revoked: self.refresh_family_revoked_at.is_some(),
            offline: self.refresh_offline?,
            session: self
                .refresh_session_expires_at
                .zip(self.refresh_session_last_seen_at)
                .map(|(e, l)| (e.0, l.0)),
            user: self.user.into_user(),
        })
    }
}

/// A client and the grant its token request presents, read in one round trip.
#[derive(sqlx::FromRow)]
struct ClientWith<G> {
    #[sqlx(flatten)]
    client: ClientAccessRow,
    #[sqlx(flatten)]
    grant: G,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The token was spent and its successor recorded.
    Rotated,
    /// The token had been spent already (outside the grace period): the family is revoked.
    Reused,
    /// Unknown, expired, or its family is revoked.
    Invalid,
}

/// One try at a spend: its outcome, or what to do next.
enum Attempt<T> {
    Done(T),
    /// No process holds the earlier spend in doubt: try again and judge the replay.
    Judge,
    /// The earlier spend was undone: try again.
    Again,
}

/// A refresh token that could not be spent: (family, rotated_at, expires_at, family revoked_at,
/// tenant).
type SpentRow = (Uuid, Option<DbTime>, DbTime, Option<DbTime>, Uuid);

/// An access token as recorded, with what introspection and userinfo report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub jti: Uuid,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    /// The client's public identifier.
    pub client_public_id: String,
    pub user_id: Option<UserId>,
    pub scope: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Unexpired, unrevoked, family unrevoked, client and tenant live and active.
    pub active: bool,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccessRow {
    jti: Uuid,
    tenant_id: Uuid,
    client_id: Uuid,
    client_public_id: String,
    user_id: Option<Uuid>,
    scope: String,
    created_at: DbTime,
    expires_at: DbTime,
    usable: bool,
}

macro_rules! access_select {
    ($where:literal) => {
        access_select!("", "", $where)
    };
    ($columns:expr, $joins:literal, $where:literal) => {
        concat!(
            "SELECT a.jti, a.tenant_id, a.client_id, c.client_id AS client_public_id, a.user_id, \
             a.scope, a.created_at, a.expires_at, \
             (a.revoked_at IS NULL AND a.expires_at > $2 AND f.revoked_at IS NULL \
              AND c.deleted_at IS NULL AND c.active AND t.status = 'active') AS usable",
            $columns,
            " FROM access_token_records a \
             JOIN oauth_clients c ON c.id = a.client_id \
             JOIN tenants t ON t.id = a.tenant_id \
             LEFT JOIN token_families f ON f.id = a.family_id",
            $joins,
            " WHERE ",
            $where
        )
    };
}
pub(crate) use access_select;

/// The columns of a grant's user joined with `LEFT JOIN users u` (see [`JoinedUser`]), so a
/// grant and its user come back in one round trip.
macro_rules! joined_user_columns {
    () => {
        "u.id AS user_row_id, u.tenant_id AS user_tenant_id, u.email AS user_email, \
         u.email_verified AS user_email_verified, u.given_name AS user_given_name, \
         u.family_name AS user_family_name, u.status AS user_status, \
         u.locked_until AS user_locked_until, u.created_at AS user_created_at, \
         u.updated_at AS user_updated_at"
    };
}
pub(crate) use joined_user_columns;

/// The token's user beside the token, for UserInfo: one round trip instead of two.
macro_rules! access_with_user_select {
    ($where:literal) => {
        access_select!(
            concat!(", ", joined_user_columns!()),
            " LEFT JOIN users u ON u.id = a.user_id AND u.deleted_at IS NULL",
            $where
        )
    };
}

/// How a presented access token is found: a JWT by its `jti` (after its signature was
/// verified), an opaque token by the digest of its text.
#[derive(Debug, Clone, Copy)]
pub enum AccessTokenKey {
    Jti(Uuid),
    Digest([u8; 32]),
}

/// A user read through [`joined_user_columns`]: every column is NULL when there is none.
#[derive(sqlx::FromRow)]
pub(crate) struct JoinedUser {
    user_row_id: Option<Uuid>,
    user_tenant_id: Option<Uuid>,
    user_email: Option<String>,
    user_email_verified: Option<bool>,
    user_given_name: Option<String>,
    user_family_name: Option<String>,
    user_status: Option<String>,
    user_locked_until: Option<DbTime>,
    user_created_at: Option<DbTime>,
    user_updated_at: Option<DbTime>,
}

impl JoinedUser {
    pub(crate) fn into_user(self) -> Option<User> {
        Some(
            UserRow {
                id: self.user_row_id?,
                tenant_id: self.user_tenant_id,
                email: self.user_email?,
                email_verified: self.user_email_verified?,
                given_name: self.user_given_name,
                family_name: self.user_family_name,
                status: self.user_status?,
                locked_until: self.user_locked_until,
                created_at: self.user_created_at?,
                updated_at: self.user_updated_at?,
            }
            .into_user(),
        )
    }
}

/// An access token read through [`client_with_access_select`] beside its presenter's client;
/// every column is NULL when there is none.
#[derive(sqlx::FromRow)]
struct JoinedAccess {
    token_jti: Option<Uuid>,
    token_tenant_id: Option<Uuid>,
    token_client_id: Option<Uuid>,
    token_client_public_id: Option<String>,
    token_user_id: Option<Uuid>,
    token_scope: Option<String>,
    token_created_at: Option<DbTime>,
    token_expires_at: Option<DbTime>,
    token_usable: Option<bool>,
}

impl JoinedAccess {
    fn into_record(self) -> Option<AccessTokenRecord> {
        Some(
            AccessRow {
                jti: self.token_jti?,
                tenant_id: self.token_tenant_id?,
                client_id: self.token_client_id?,
                client_public_id: self.token_client_public_id?,
                user_id: self.token_user_id,
                scope: self.token_scope?,
                created_at: self.token_created_at?,
                expires_at: self.token_expires_at?,
                usable: self.token_usable?,
            }
            .into_record(),
        )
    }
}

/// The live client named by `$1` and the access token `$where` (over `$3`) selects, as
/// [`access_select`] reads it at `$2`: an introspection's reads in one statement.
macro_rules! client_with_access_select {
    ($where:literal) => {
        concat!(
            "SELECT c.*, t.jti AS token_jti, t.tenant_id AS token_tenant_id, \
             t.client_id AS token_client_id, t.client_public_id AS token_client_public_id, \
             t.user_id AS token_user_id, t.scope AS token_scope, \
             t.created_at AS token_created_at, t.expires_at AS token_expires_at, \
             t.usable AS token_usable FROM (",
            client_access_select!(),
            ") c LEFT JOIN (",
            access_select!($where),
            ") t ON TRUE"
        )
    };
}

#[derive(sqlx::FromRow)]
struct AccessUserRow {
    #[sqlx(flatten)]
    access: AccessRow,
    #[sqlx(flatten)]
    user: JoinedUser,
}

impl AccessUserRow {
    fn into_parts(self) -> (AccessTokenRecord, Option<User>) {
        (self.access.into_record(), self.user.into_user())
    }
}

impl AccessRow {
    pub(crate) fn into_record(self) -> AccessTokenRecord {
        AccessTokenRecord {
            jti: self.jti,
            tenant_id: TenantId(self.tenant_id),
            client_id: ClientId(self.client_id),
            client_public_id: self.client_public_id,
            user_id: self.user_id.map(UserId),
            scope: self.scope,
            issued_at: self.created_at.0,
            expires_at: self.expires_at.0,
            active: self.usable,
        }
    }
}

impl Tx {
    /// Revokes a family (and so every access token in it) unless it is revoked already.
    pub(crate) async fn revoke_family(
        &mut self,
        family: Uuid,
        reason: &str,
        at: DbTime,
    ) -> Result<bool, StoreError> {
        let n = on_tx!(self, |c| sqlx::query(
            "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
             WHERE id = $1 AND revoked_at IS NULL"
        )
        .bind(family)
        .bind(at)
        .bind(reason)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Revokes a client-credentials token of `client` recorded by its audit row alone, by
    /// listing its jti until it expires. Its tenant; `None` if there is no such token of
    /// `client` or it is revoked already.
    async fn revoke_client_token(
        &mut self,
        jti: Uuid,
        client: ClientId,
        at: Timestamp,
    ) -> Result<Option<Uuid>, StoreError> {
        let recorded: Option<(Option<Uuid>, DbTime)> = on_tx!(self, |c| sqlx::query_as(
            "SELECT tenant_id, token_expires_at FROM audit_events \
             WHERE id = $1 AND actor_id = $2 AND token_expires_at IS NOT NULL"
        )
        .bind(jti)
        .bind(client.0)
        .fetch_optional(&mut *c)
        .await)?;
        let Some((Some(tenant), expires_at)) = recorded else {
            return Ok(None);
        };
        let listed = on_tx!(self, |c| {
            sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING"
        )
        .bind(jti)
        .bind(DbTime(at))
        .bind(expires_at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok((listed == 1).then_some(tenant))
    }
}

impl Store {
    /// The code with this digest, used or not (expired ones included: the caller decides),
    /// with its user.
    #[cfg(feature = "test-support")]
    pub async fn find_authorization_code(
        &self,
        code_digest: &[u8; 32],
    ) -> Result<Option<CodeGrant>, StoreError> {
        let row: Option<JoinedCode> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            code_columns!(),
            ", ",
            joined_user_columns!(),
            " FROM authorization_codes a \
             LEFT JOIN users u ON u.id = a.user_id AND u.deleted_at IS NULL \
             WHERE a.code_hash = $1"
        ))
        .bind(&code_digest[..])
        .fetch_optional(pool)
        .await)?;
        Ok(row.and_then(JoinedCode::into_grant))
    }

    /// The live client with public id `client_id` and, when it exists, the code with this
    /// digest as `Store::find_authorization_code` reads it: a code exchange's reads in one
    /// round trip. The code is read whoever it was issued to; the caller checks.
    pub async fn find_client_with_code(
        &self,
        client_id: &str,
        code_digest: &[u8; 32],
    ) -> Result<Option<(ClientAccess, Option<CodeGrant>)>, StoreError> {
        let row: Option<ClientWith<JoinedCode>> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT c.*, ",
            code_columns!(),
            ", ",
            joined_user_columns!(),
            " FROM (",
            client_access_select!(),
            ") c LEFT JOIN authorization_codes a ON a.code_hash = $2 \
             LEFT JOIN users u ON u.id = a.user_id AND u.deleted_at IS NULL"
        ))
        .bind(client_id)
        .bind(&code_digest[..])
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|r| (r.client.into_access(), r.grant.into_grant())))
    }

    /// Redeems a code and records what it issues, atomically: exactly one caller can redeem a
    /// code. A call that finds the code already redeemed revokes the family the winner
    /// created (and so its access and refresh tokens) and records the replay.
    pub async fn redeem_authorization_code(
        &self,
        code_digest: &[u8; 32],
        access: &NewAccessToken,
        family: &NewTokenFamily,
        origin: &Origin,
    ) -> Result<Redemption, StoreError> {
        // A redemption of this process found undone leaves the code unspent: redeem again.
        for _ in 0..3 {
            match self.try_redeem(code_digest, access, family, origin).await? {
                Redemption::Restored => {}
                outcome => return Ok(outcome),
            }
        }
        Err(StoreError::Unavailable(
            "the code's earlier redemption is still being settled".to_owned(),
        ))
    }

    async fn try_redeem(
        &self,
        code_digest: &[u8; 32],
        access: &NewAccessToken,
        family: &NewTokenFamily,
        origin: &Origin,
    ) -> Result<Redemption, StoreError> {
        let at = DbTime(now());
        if let crate::Db::Postgres(pool) = &self.db {
            // The usual case in one statement, shared with the redemptions of the same moment
            // (`grant_writes.rs`): claim the code, create its family (with the first refresh
            // token, if any), the access token and the audit row. A code not claimable
            // (replay, unknown, expired) goes to the replay handling.
            let write = RedeemWrite::new(code_digest, access, family, origin, at.0);
            let family_id = write.family_id;
            let group = self.group_commits.as_ref().map(|g| &g.redemptions);
            let flight = self.settlement.send(at.0);
            match crate::postgres::batch::write(pool, self.statement_deadline, group, write).await {
                Ok(true) => return Ok(Redemption::Issued(family_id)),
                Ok(false) => {}
                Err(StoreError::InDoubt(_)) => {
                    let spend = Spend::Redemption {
                        code: *code_digest,
                        family: family_id,
                    };
                    self.settle_in_request(flight, spend).await?;
                    return Ok(Redemption::Issued(family_id));
                }
                Err(e) => return Err(e),
            }
            drop(flight);
            return self.revoke_replayed_code(code_digest, origin).await;
        }
        let mut tx = self.begin().await?;
        let claimed = on_tx!(tx, |c| sqlx::query(concat!(
            "UPDATE authorization_codes SET used_at = $2 WHERE code_hash = $1 AND ",
            code_claimable!("authorization_codes", "$2")
        ))
        .bind(&code_digest[..])
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if claimed == 1 {
            let family_id = tx.insert_family(family).await?;
            on_tx!(tx, |c| sqlx::query(
                "UPDATE authorization_codes SET family_id = $2 WHERE code_hash = $1"
            )
            .bind(&code_digest[..])
            .bind(family_id.0)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
            tx.insert_access_token(access, Some(family_id)).await?;
            tx.audit_issue(
                access,
                Some(family.refresh_digest.is_some()),
                action::TOKEN_ISSUED,
                origin,
            )
            .await?;
            tx.commit().await?;
            return Ok(Redemption::Issued(family_id));
        }
        // Not claimable: a replay of a redeemed code, or an unknown or expired one.
        tx.rollback().await;
        self.revoke_replayed_code(code_digest, origin).await
    }

    /// Handles a code presented after it was redeemed: revokes the family its redemption
    /// created (and so every token it issued) and records the replay, once no process may
    /// still hold that redemption in doubt (`settlement.rs`). `Invalid` when the code is
    /// unknown or was never redeemed; `Restored` when the redemption was this process's, in
    /// doubt, and is now settled: the code may be redeemed (again, if it was undone).
    pub async fn revoke_replayed_code(
        &self,
        code_digest: &[u8; 32],
        origin: &Origin,
    ) -> Result<Redemption, StoreError> {
        let mut judged = false;
        for _ in 0..2 {
            let at = DbTime(now());
            let mut tx = self.begin().await?;
            let used: Option<(Option<Uuid>, Uuid, Uuid, DbTime)> = on_tx!(tx, |c| {
                sqlx::query_as(
                    "SELECT family_id, tenant_id, client_id, used_at FROM authorization_codes \
                     WHERE code_hash = $1 AND used_at IS NOT NULL",
                )
                .bind(&code_digest[..])
                .fetch_optional(&mut *c)
                .await
            })?;
            let Some((family_id, tenant, client, used_at)) = used else {
                tx.rollback().await;
                return Ok(Redemption::Invalid);
            };
            if !judged {
                // Waiting for the verdict holds no transaction (on SQLite, no lock).
                tx.rollback().await;
                match self.replay_verdict(code_digest, used_at.0).await? {
                    Replay::Judge => judged = true,
                    Replay::Undone => return Ok(Redemption::Restored),
                    Replay::Unsettled => {
                        return Err(StoreError::Unavailable(
                            "the code's earlier redemption is not settled yet".to_owned(),
                        ));
                    }
                }
                continue;
            }
            let revoked = match family_id {
                Some(f) => tx.revoke_family(f, "authorization_code_replay", at).await?,
                None => false,
            };
            tx.audit(AuditEvent::new(
                origin,
                action::AUTHORIZATION_CODE_REPLAYED,
                Some(TenantId(tenant)),
                Some(Target::new("client", ClientId(client))),
                json!({ "family_id": family_id, "revoked": revoked }),
                at.0,
            ))
            .await?;
            tx.commit().await?;
            return Ok(Redemption::Replayed);
        }
        Err(StoreError::Unavailable(
            "the code's earlier redemption is still being settled".to_owned(),
        ))
    }

    /// The refresh token with this digest, its family and the family's user.
    #[cfg(feature = "test-support")]
    pub async fn find_refresh_token(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<RefreshGrant>, StoreError> {
        Ok(self
            .find_refresh_token_with_client(digest)
            .await?
            .map(|(grant, _)| grant))
    }

    /// `Store::find_refresh_token` with the public id of the token's client while that client
    /// is live (`None` once deleted), in one round trip: what introspection answers.
    pub async fn find_refresh_token_with_client(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<(RefreshGrant, Option<String>)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            refresh: JoinedRefresh,
            refresh_client_public_id: Option<String>,
        }
        let row: Option<Row> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            refresh_columns!(),
            ", ",
            joined_user_columns!(),
            ", c.client_id AS refresh_client_public_id \
             FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
             LEFT JOIN sessions s ON s.id = f.session_id \
             LEFT JOIN oauth_clients c ON c.id = f.client_id AND c.tenant_id = f.tenant_id \
               AND c.deleted_at IS NULL \
             LEFT JOIN users u ON u.id = f.user_id AND u.deleted_at IS NULL \
             WHERE r.token_hash = $1"
        ))
        .bind(&digest[..])
        .fetch_optional(pool)
        .await)?;
        Ok(row.and_then(|r| Some((r.refresh.into_grant()?, r.refresh_client_public_id))))
    }

    /// The live client with public id `client_id` and, when it exists, the refresh token with
    /// this digest as `Store::find_refresh_token` reads it, in one round trip.
    pub async fn find_client_with_refresh_token(
        &self,
        client_id: &str,
        digest: &[u8; 32],
    ) -> Result<Option<(ClientAccess, Option<RefreshGrant>)>, StoreError> {
        let row: Option<ClientWith<JoinedRefresh>> =
            on_pool!(self, |pool| sqlx::query_as(concat!(
                "SELECT c.*, ",
                refresh_columns!(),
                ", ",
                joined_user_columns!(),
                " FROM (",
                client_access_select!(),
                ") c LEFT JOIN (refresh_tokens r JOIN token_families f ON f.id = r.family_id) \
                 ON r.token_hash = $2 \
                 LEFT JOIN sessions s ON s.id = f.session_id \
                 LEFT JOIN users u ON u.id = f.user_id AND u.deleted_at IS NULL"
            ))
            .bind(client_id)
            .bind(&digest[..])
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|r| (r.client.into_access(), r.grant.into_grant())))
    }

    /// Spends the refresh token `old` and records its successor `new` and a new access token,
    /// atomically. A token spent before, more than `grace_secs` ago, revokes its family, once
    /// no process may still hold that spend in doubt (`settlement.rs`).
    pub async fn rotate_refresh_token(
        &self,
        old: &[u8; 32],
        new: &[u8; 32],
        access: &NewAccessToken,
        grace_secs: i64,
        origin: &Origin,
    ) -> Result<Rotation, StoreError> {
        // A replay is judged only once every process has settled the moment of the spend; a
        // spend of this process found undone leaves the token unspent, and the rotation is
        // tried again.
        let mut judged = false;
        for _ in 0..3 {
            match self
                .try_rotate(old, new, access, grace_secs, origin, judged)
                .await?
            {
                Attempt::Done(rotation) => return Ok(rotation),
                Attempt::Judge => judged = true,
                Attempt::Again => {}
            }
        }
        Err(StoreError::Unavailable(
            "the refresh token's earlier spend is still being settled".to_owned(),
        ))
    }

    async fn try_rotate(
        &self,
        old: &[u8; 32],
        new: &[u8; 32],
        access: &NewAccessToken,
        grace_secs: i64,
        origin: &Origin,
        judged: bool,
    ) -> Result<Attempt<Rotation>, StoreError> {
        let at = now();
        if let crate::Db::Postgres(pool) = &self.db {
            // The usual case in one statement, shared with the rotations of the same moment
            // (`grant_writes.rs`): spend the live token, record its successor, the access
            // token and the audit row. When nothing was spent (reuse, grace period, unknown or
            // revoked) the transaction below decides what it means.
            let write = RotateWrite::new(old, new, access, origin, at);
            let group = self.group_commits.as_ref().map(|g| &g.rotations);
            let flight = self.settlement.send(at);
            match crate::postgres::batch::write(pool, self.statement_deadline, group, write).await {
                Ok(true) => return Ok(Attempt::Done(Rotation::Rotated)),
                Ok(false) => {}
                Err(StoreError::InDoubt(_)) => {
                    let spend = Spend::Rotation {
                        old: *old,
                        new: *new,
                        jti: access.jti,
                    };
                    self.settle_in_request(flight, spend).await?;
                    return Ok(Attempt::Done(Rotation::Rotated));
                }
                Err(e) => return Err(e),
            }
            // Answered: nothing of this spend is in doubt while the replay is looked at.
            drop(flight);
        }
        let mut tx = self.begin().await?;
        let spent: Option<Uuid> = on_tx!(tx, |c| sqlx::query_scalar(concat!(
            "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1 AND ",
            refresh_spendable!("refresh_tokens", "$2"),
            " RETURNING family_id"
        ))
        .bind(&old[..])
        .bind(DbTime(at))
        .fetch_optional(&mut *c)
        .await)?;
        let family = match spent {
            Some(f) => f,
            None => {
                let row: Option<SpentRow> = on_tx!(tx, |c| sqlx::query_as(
                    "SELECT r.family_id, r.rotated_at, r.expires_at, f.revoked_at, f.tenant_id \
                         FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
                         WHERE r.token_hash = $1"
                )
                .bind(&old[..])
                .fetch_optional(&mut *c)
                .await)?;
                let Some((family, Some(rotated_at), expires_at, None, tenant)) = row else {
                    tx.rollback().await;
                    return Ok(Attempt::Done(Rotation::Invalid));
                };
                if expires_at.0 <= at {
                    tx.rollback().await;
                    return Ok(Attempt::Done(Rotation::Invalid));
                }
                let within_grace =
                    grace_secs > 0 && (at - rotated_at.0).whole_seconds() < grace_secs;
                if !within_grace {
                    if !judged {
                        // Waiting for the verdict holds no transaction (on SQLite, no lock).
                        tx.rollback().await;
                        return match self.replay_verdict(old, rotated_at.0).await? {
                            Replay::Judge => Ok(Attempt::Judge),
                            Replay::Undone => Ok(Attempt::Again),
                            Replay::Unsettled => Err(StoreError::Unavailable(
                                "the refresh token's earlier spend is not settled yet".to_owned(),
                            )),
                        };
                    }
                    tx.revoke_family(family, "refresh_token_reuse", DbTime(at))
                        .await?;
                    tx.audit(AuditEvent::new(
                        origin,
                        action::REFRESH_TOKEN_REUSED,
                        Some(TenantId(tenant)),
                        Some(Target::new("token_family", family)),
                        json!({ "client_id": access.client_id }),
                        at,
                    ))
                    .await?;
                    tx.commit().await?;
                    return Ok(Attempt::Done(Rotation::Reused));
                }
                family
            }
        };
        let family = TokenFamilyId(family);
        let family_expires: DbTime = on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT expires_at FROM token_families WHERE id = $1"
        )
        .bind(family.0)
        .fetch_one(&mut *c)
        .await)?;
        tx.insert_refresh_token(family, new, family_expires.0)
            .await?;
        tx.insert_access_token(access, Some(family)).await?;
        tx.audit_issue(access, Some(true), action::TOKEN_REFRESHED, origin)
            .await?;
        tx.commit().await?;
        Ok(Attempt::Done(Rotation::Rotated))
    }

    /// Looks an access token up by `jti` (JWT) and reports whether it is usable at `at`.
    pub async fn find_access_token(
        &self,
        jti: Uuid,
        at: Timestamp,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let row: Option<AccessRow> =
            on_pool!(self, |pool| sqlx::query_as(access_select!("a.jti = $1"))
                .bind(jti)
                .bind(DbTime(at))
                .fetch_optional(pool)
                .await)?;
        Ok(row.map(AccessRow::into_record))
    }

    /// Looks an access token up together with its (live) user, for UserInfo.
    pub async fn find_access_token_with_user(
        &self,
        key: AccessTokenKey,
        at: Timestamp,
    ) -> Result<Option<(AccessTokenRecord, Option<User>)>, StoreError> {
        let row: Option<AccessUserRow> = match key {
            AccessTokenKey::Jti(jti) => on_pool!(self, |pool| sqlx::query_as(
                access_with_user_select!("a.jti = $1")
            )
            .bind(jti)
            .bind(DbTime(at))
            .fetch_optional(pool)
            .await)?,
            AccessTokenKey::Digest(digest) => on_pool!(self, |pool| sqlx::query_as(
                access_with_user_select!("a.token_hash = $1")
            )
            .bind(&digest[..])
            .bind(DbTime(at))
            .fetch_optional(pool)
            .await)?,
        };
        Ok(row.map(AccessUserRow::into_parts))
    }

    /// The live client with public id `client_id` and, when it exists, the access token `key`
    /// names as [`Store::find_access_token`] reads it: an introspection's reads in one round
    /// trip. The token is read whoever it was issued to; the caller checks.
    pub async fn find_client_with_access_token(
        &self,
        client_id: &str,
        key: AccessTokenKey,
        at: Timestamp,
    ) -> Result<Option<(ClientAccess, Option<AccessTokenRecord>)>, StoreError> {
        let row: Option<ClientWith<JoinedAccess>> = match key {
            AccessTokenKey::Jti(jti) => on_pool!(self, |pool| sqlx::query_as(
                client_with_access_select!("a.jti = $3")
            )
            .bind(client_id)
            .bind(DbTime(at))
            .bind(jti)
            .fetch_optional(pool)
            .await)?,
            AccessTokenKey::Digest(digest) => on_pool!(self, |pool| sqlx::query_as(
                client_with_access_select!("a.token_hash = $3")
            )
            .bind(client_id)
            .bind(DbTime(at))
            .bind(&digest[..])
            .fetch_optional(pool)
            .await)?,
        };
        Ok(row.map(|r| (r.client.into_access(), r.grant.into_record())))
    }

    /// Looks an access token (opaque or JWT) up by the digest of its text.
    pub async fn find_access_token_by_digest(
        &self,
        digest: &[u8; 32],
        at: Timestamp,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let row: Option<AccessRow> = on_pool!(self, |pool| sqlx::query_as(access_select!(
            "a.token_hash = $1"
        ))
        .bind(&digest[..])
        .bind(DbTime(at))
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(AccessRow::into_record))
    }

    /// Revokes one access token of `client`; `false` if it is not that client's.
    pub async fn revoke_access_token(
        &self,
        jti: Uuid,
        client: ClientId,
        origin: &Origin,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let tenant: Option<Uuid> = on_tx!(tx, |c| sqlx::query_scalar(
            "UPDATE access_tokens SET revoked_at = $3 \
             WHERE jti = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING tenant_id"
        )
        .bind(jti)
        .bind(client.0)
        .bind(DbTime(at))
        .fetch_optional(&mut *c)
        .await)?;
        let tenant = match tenant {
            Some(tenant) => tenant,
            None => match tx.revoke_client_token(jti, client, at).await? {
                Some(tenant) => tenant,
                None => return Ok(false),
            },
        };
        tx.audit(AuditEvent::new(
            origin,
            action::TOKEN_REVOKED,
            Some(TenantId(tenant)),
            Some(Target::new("access_token", jti)),
            json!({ "kind": "access_token" }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes the family of a refresh token of `client` (and so all its tokens); `false` if
    /// the token is not that client's or already revoked.
    pub async fn revoke_refresh_token(
        &self,
        digest: &[u8; 32],
        client: ClientId,
        origin: &Origin,
    ) -> Result<bool, StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        let family: Option<(Uuid, Uuid)> = on_tx!(tx, |c| sqlx::query_as(
            "SELECT f.id, f.tenant_id FROM refresh_tokens r \
             JOIN token_families f ON f.id = r.family_id \
             WHERE r.token_hash = $1 AND f.client_id = $2"
        )
        .bind(&digest[..])
        .bind(client.0)
        .fetch_optional(&mut *c)
        .await)?;
        let Some((family, tenant)) = family else {
            return Ok(false);
        };
        if !tx.revoke_family(family, "revoked_by_client", at).await? {
            return Ok(false);
        }
        tx.audit(AuditEvent::new(
            origin,
            action::TOKEN_REVOKED,
            Some(TenantId(tenant)),
            Some(Target::new("token_family", family)),
            json!({ "kind": "refresh_token" }),
            at.0,
        ))
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
