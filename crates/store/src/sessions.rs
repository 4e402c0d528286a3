//! Browser sessions, looked up by the SHA-256 of the cookie value on every request.

use std::sync::LazyLock;

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::lockout::{FailureCount, LockoutPolicy, after_failure, is_locked};
use opentrusty_core::session::{NewSession, Session};
use opentrusty_core::{SessionId, TenantId, Timestamp, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::tokens::{NewAuthorizationCode, bind_code, code_event, code_values, insert_code};
use crate::{Store, StoreError, Tx, on_pool, on_tx};

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    tenant_id: Option<Uuid>,
    auth_time: DbTime,
    created_at: DbTime,
    last_seen_at: DbTime,
    expires_at: DbTime,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl SessionRow {
    pub(crate) fn into_session(self) -> Session {
        Session {
            id: SessionId(self.id),
            user_id: UserId(self.user_id),
            tenant_id: self.tenant_id.map(TenantId),
            auth_time: self.auth_time.0,
            created_at: self.created_at.0,
            last_seen_at: self.last_seen_at.0,
            expires_at: self.expires_at.0,
            ip: self.ip,
            user_agent: self.user_agent,
        }
    }
}

macro_rules! session_columns {
    () => {
        "id, user_id, tenant_id, auth_time, created_at, last_seen_at, expires_at, ip, user_agent"
    };
    ("s.") => {
        "s.id, s.user_id, s.tenant_id, s.auth_time, s.created_at, s.last_seen_at, s.expires_at, \
         s.ip, s.user_agent"
    };
}
pub(crate) use session_columns;

/// The condition a session must meet to authenticate its cookie (`$p` prefixes the columns):
/// the digest `$1`, before its absolute end `$2`, used since `$3` ([`idle_since`]).
macro_rules! live_session {
    ($p:literal) => {
        concat!(
            $p,
            "token_hash = $1 AND ",
            $p,
            "expires_at > $2 AND ",
            $p,
            "last_seen_at > $3"
        )
    };
}
pub(crate) use live_session;

/// The oldest last use a session may have at `at` and still be live.
pub(crate) fn idle_since(at: Timestamp, idle_secs: i64) -> DbTime {
    DbTime(at - time::Duration::seconds(idle_secs))
}

/// The insert of a session with its ten values (the cookie digest, then
/// [`session_columns!`]); `$values` names their placeholders in the order of [`bind_session!`].
macro_rules! insert_session {
    ($values:expr) => {
        concat!(
            "INSERT INTO sessions (token_hash, ",
            session_columns!(),
            ") VALUES (",
            $values,
            ")"
        )
    };
}

/// The parameters [`bind_session!`] binds, in its order, as named in [`SESSION_VALUES`].
const SESSION_PARAMETERS: [&str; 8] = [
    "session_hash",
    "session_id",
    "session_user",
    "session_tenant",
    "session_start",
    "session_expires",
    "session_ip",
    "session_user_agent",
];

/// [`insert_session!`]'s values as [`SESSION_PARAMETERS`] (the start is `auth_time`,
/// `created_at` and `last_seen_at` at once).
macro_rules! session_values {
    () => {
        ":session_hash, :session_id, :session_user, :session_tenant, :session_start, \
         :session_start, :session_start, :session_expires, :session_ip, :session_user_agent"
    };
}

/// Binds a starting session as the eight parameters of [`insert_session!`] (its start is one
/// parameter used for `auth_time`, `created_at` and `last_seen_at`).
macro_rules! bind_session {
    ($q:expr, $digest:expr, $session:expr) => {
        $q.bind(&$digest[..])
            .bind($session.id.0)
            .bind($session.user_id.0)
            .bind($session.tenant_id.map(|t| t.0))
            .bind(DbTime($session.auth_time))
            .bind(DbTime($session.expires_at))
            .bind(&$session.ip)
            .bind(&$session.user_agent)
    };
}

/// A successful sign-in restarts the user's failure count.
macro_rules! reset_failures {
    ($user:literal) => {
        concat!(
            "UPDATE users SET failed_login_count = 0, failed_login_since = NULL, \
             locked_until = NULL WHERE id = ",
            $user,
            " AND (failed_login_count <> 0 OR locked_until IS NOT NULL)"
        )
    };
}

/// Moves the unrevoked token families of session `$old` to session `$new`: a sign-in of the
/// same user replacing the browser's session keeps that browser's applications signed in.
macro_rules! rebind_families {
    ($old:literal, $new:literal) => {
        concat!(
            "UPDATE token_families SET session_id = ",
            $new,
            " WHERE session_id = ",
            $old,
            " AND revoked_at IS NULL"
        )
    };
}

/// Revokes, at `$at`, the families of session `$session` without offline access: they belong
/// to that session and end with it.
macro_rules! end_session_families {
    ($session:literal, $at:literal) => {
        concat!(
            "UPDATE token_families SET revoked_at = ",
            $at,
            ", revoked_reason = 'session_ended' WHERE session_id = ",
            $session,
            " AND NOT offline AND revoked_at IS NULL"
        )
    };
}

/// The two CTEs (after an `ended` CTE returning the replaced session's `id, user_id`) that
/// settle its families when session `$new` of user `$user` replaces it at `$at`: the same
/// user's are rebound, another user's end unless offline.
macro_rules! replaced_session_families {
    ($new:literal, $user:literal, $at:literal) => {
        concat!(
            "rebound AS (UPDATE token_families SET session_id = ",
            $new,
            " WHERE session_id IN (SELECT id FROM ended WHERE user_id = ",
            $user,
            ") AND revoked_at IS NULL), dropped AS (UPDATE token_families SET revoked_at = ",
            $at,
            ", revoked_reason = 'session_ended' WHERE session_id IN \
             (SELECT id FROM ended WHERE user_id <> ",
            $user,
            ") AND NOT offline AND revoked_at IS NULL)"
        )
    };
}

/// The common part of the single-statement sign-ins: the replaced session (`:replaced`) out
/// with its families settled, the new session in, its user's failure count reset.
macro_rules! sign_in_ctes {
    () => {
        concat!(
            "ended AS (DELETE FROM sessions WHERE token_hash = :replaced \
             RETURNING id, user_id), ",
            replaced_session_families!(":session_id", ":session_user", ":session_start"),
            ", started AS (",
            insert_session!(session_values!()),
            "), reset AS (",
            reset_failures!(":session_user"),
            ")"
        )
    };
}

/// A sign-in on PostgreSQL in one statement: [`sign_in_ctes!`] and the audit row (`login_…`).
pub(crate) static SIGN_IN: LazyLock<String> = LazyLock::new(|| {
    let names = [
        crate::sql::owned(&SESSION_PARAMETERS),
        crate::sql::owned(&["replaced"]),
        crate::audit::audit_parameters("login"),
    ]
    .concat();
    let template = format!(
        concat!(
            "WITH ",
            sign_in_ctes!(),
            " INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") VALUES {}"
        ),
        crate::audit::audit_values("login")
    );
    crate::sql::statement_of(&names, &template)
});

/// [`SIGN_IN`] that also issues an authorization code (`code_…`, first) bound to the new
/// session, with its audit row (`issued_…`, last).
pub(crate) static SIGN_IN_WITH_CODE: LazyLock<String> = LazyLock::new(|| {
    let names = [
        crate::sql::owned(&crate::tokens::CODE_PARAMETERS),
        crate::sql::owned(&["replaced"]),
        crate::sql::owned(&SESSION_PARAMETERS),
        crate::audit::audit_parameters("login"),
        crate::audit::audit_parameters("issued"),
    ]
    .concat();
    let template = format!(
        concat!(
            "WITH code AS (",
            insert_code!(code_values!()),
            "), ",
            sign_in_ctes!(),
            " INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") VALUES {}, {}"
        ),
        crate::audit::audit_values("login"),
        crate::audit::audit_values("issued")
    );
    crate::sql::statement_of(&names, &template)
});

/// The session a sign-in at `at` starts.
fn starting_session(new: &NewSession, at: Timestamp) -> Session {
    Session {
        id: SessionId::new(),
        user_id: new.user_id,
        tenant_id: new.tenant_id,
        auth_time: at,
        created_at: at,
        last_seen_at: at,
        expires_at: new.expires_at,
        ip: new.ip.clone(),
        user_agent: new.user_agent.clone(),
    }
}

fn login_event(session: &Session, origin: &Origin) -> AuditEvent {
    AuditEvent::new(
        origin,
        action::LOGIN_SUCCEEDED,
        session.tenant_id,
        Some(Target::new("user", session.user_id)),
        json!({ "session_id": session.id }),
        session.auth_time,
    )
}

impl Tx {
    /// Ends the browser's previous session (`replacing`), stores `session` under `digest`,
    /// restarts the failure count and appends the sign-in's audit row.
    async fn start_session(
        &mut self,
        digest: &[u8; 32],
        session: &Session,
        replacing: Option<&[u8; 32]>,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        if let Some(old) = replacing {
            // The replaced session's families: the same user's move to the new session, the
            // others end with it unless they have offline access.
            let ended: Option<(Uuid, Uuid)> = on_tx!(self, |c| sqlx::query_as(
                "DELETE FROM sessions WHERE token_hash = $1 RETURNING id, user_id"
            )
            .bind(&old[..])
            .fetch_optional(&mut *c)
            .await)?;
            match ended {
                Some((old_id, old_user)) if old_user == session.user_id.0 => {
                    on_tx!(self, |c| sqlx::query(rebind_families!("$1", "$2"))
                        .bind(old_id)
                        .bind(session.id.0)
                        .execute(&mut *c)
                        .await
                        .map(|r| r.rows_affected()))?;
                }
                Some((old_id, _)) => {
                    on_tx!(self, |c| sqlx::query(end_session_families!("$1", "$2"))
                        .bind(old_id)
                        .bind(DbTime(session.auth_time))
                        .execute(&mut *c)
                        .await
                        .map(|r| r.rows_affected()))?;
                }
                None => {}
            }
        }
        on_tx!(self, |c| bind_session!(
            sqlx::query(insert_session!("$1, $2, $3, $4, $5, $5, $5, $6, $7, $8")),
            digest,
            session
        )
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        on_tx!(self, |c| sqlx::query(reset_failures!("$1"))
            .bind(session.user_id.0)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        self.audit(login_event(session, origin)).await
    }
}

impl Store {
    /// Starts a session after a successful sign-in, ending the browser's previous session (the
    /// one whose cookie digest is `replacing`) in the same transaction, so a session id is never
    /// carried across a login. Audited as `login.succeeded`.
    pub async fn create_session(
        &self,
        new: &NewSession,
        replacing: Option<&[u8; 32]>,
        origin: &Origin,
    ) -> Result<Session, StoreError> {
        let session = starting_session(new, now());
        if let crate::Db::Postgres(pool) = &self.db {
            // Old session out, new session in, failure count reset and the audit row: one
            // statement, one round trip (a sign-in made five).
            let event = login_event(&session, origin);
            let q = bind_session!(sqlx::query(SIGN_IN.as_str()), new.token_digest, session)
                .bind(replacing.map(|old| &old[..]));
            crate::audit::bind_event(q, &event).execute(pool).await?;
            return Ok(session);
        }
        let mut tx = self.begin().await?;
        tx.start_session(&new.token_digest, &session, replacing, origin)
            .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// [`Store::create_session`] and [`Store::issue_authorization_code`] in one transaction, for
    /// a sign-in that answers its authorization request with a code at once: `code_for` makes
    /// the code from the session (which it is bound to), and both are audited. One round trip
    /// and one commit on PostgreSQL instead of two of each.
    pub async fn create_session_with_code(
        &self,
        new: &NewSession,
        replacing: Option<&[u8; 32]>,
        origin: &Origin,
        code_for: impl FnOnce(&Session) -> NewAuthorizationCode,
    ) -> Result<Session, StoreError> {
        let at = now();
        let session = starting_session(new, at);
        let code = code_for(&session);
        if let crate::Db::Postgres(pool) = &self.db {
            let (login, issued) = (login_event(&session, origin), code_event(&code, origin, at));
            let q = bind_code!(sqlx::query(SIGN_IN_WITH_CODE.as_str()), code, at)
                .bind(replacing.map(|old| &old[..]));
            let q = bind_session!(q, new.token_digest, session);
            let q = crate::audit::bind_event(q, &login);
            crate::audit::bind_event(q, &issued).execute(pool).await?;
            return Ok(session);
        }
        let mut tx = self.begin().await?;
        tx.start_session(&new.token_digest, &session, replacing, origin)
            .await?;
        tx.insert_code(&code, origin, at).await?;
        tx.commit().await?;
        Ok(session)
    }

    /// The session a cookie digest names, if it has not expired at `at`.
    #[cfg(feature = "test-support")]
    pub async fn find_session(
        &self,
        token_digest: &[u8; 32],
        at: Timestamp,
    ) -> Result<Option<Session>, StoreError> {
        let row: Option<SessionRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE token_hash = $1 AND expires_at > $2"
        ))
        .bind(&token_digest[..])
        .bind(DbTime(at))
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(SessionRow::into_session))
    }

    /// The session a cookie digest names if it is usable at `at`: before its absolute end and
    /// used within the last `idle_secs`. Marks it used (at most once a minute, to spare writes).
    pub async fn authenticate_session(
        &self,
        token_digest: &[u8; 32],
        at: Timestamp,
        idle_secs: i64,
    ) -> Result<Option<Session>, StoreError> {
        let row: Option<SessionRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE ",
            live_session!("")
        ))
        .bind(&token_digest[..])
        .bind(DbTime(at))
        .bind(idle_since(at, idle_secs))
        .fetch_optional(pool)
        .await)?;
        let Some(session) = row.map(SessionRow::into_session) else {
            return Ok(None);
        };
        self.mark_session_seen(&session, at).await?;
        Ok(Some(session))
    }

    /// Moves the idle clock of `session` on to `at`, at most once a minute (a write per request
    /// would cost every request a commit).
    pub(crate) async fn mark_session_seen(
        &self,
        session: &Session,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.touch_session(session.id, session.last_seen_at, at)
            .await
    }

    /// [`Store::mark_session_seen`] by the session's id and the last use read with it: a refresh
    /// of a token that belongs to the session counts as a use of it.
    pub async fn touch_session(
        &self,
        id: SessionId,
        last_seen_at: Timestamp,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        if at - last_seen_at > time::Duration::seconds(60) {
            on_pool!(self, |pool| sqlx::query(
                "UPDATE sessions SET last_seen_at = $2 WHERE id = $1"
            )
            .bind(id.0)
            .bind(DbTime(at))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Ends the session a cookie digest names (audited as `logout`); `None` if there was none.
    pub async fn end_session(
        &self,
        token_digest: &[u8; 32],
        origin: &Origin,
    ) -> Result<Option<Session>, StoreError> {
        let mut tx = self.begin().await?;
        let row: Option<SessionRow> = on_tx!(tx, |c| sqlx::query_as(concat!(
            "DELETE FROM sessions WHERE token_hash = $1 RETURNING ",
            session_columns!()
        ))
        .bind(&token_digest[..])
        .fetch_optional(&mut *c)
        .await)?;
        let Some(session) = row.map(SessionRow::into_session) else {
            return Ok(None);
        };
        let at = now();
        let families = on_tx!(tx, |c| sqlx::query(end_session_families!("$1", "$2"))
            .bind(session.id.0)
            .bind(DbTime(at))
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::LOGOUT,
            session.tenant_id,
            Some(Target::new("user", session.user_id)),
            json!({ "session_id": session.id, "token_families": families }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(Some(session))
    }

    /// Records a failed sign-in. `user` is set when the email matched an account; with a
    /// `lockout` policy its failure count moves on in the same transaction (the row locked on
    /// PostgreSQL, so processes counting at once do not lose a failure) and a lock is audited
    /// when this failure causes it. Returns whether the account is now locked.
    pub async fn record_login_failure(
        &self,
        tenant: Option<TenantId>,
        user: Option<UserId>,
        reason: &str,
        lockout: Option<&LockoutPolicy>,
        origin: &Origin,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin().await?;
        let mut locked = false;
        if let (Some(u), Some(policy)) = (user, lockout) {
            let row: Option<(i32, Option<DbTime>, Option<DbTime>)> =
                match &mut tx.inner {
                    crate::TxInner::Postgres(t) => sqlx::query_as(
                        "SELECT failed_login_count, failed_login_since, locked_until FROM users \
                     WHERE id = $1 FOR UPDATE",
                    )
                    .bind(u.0)
                    .fetch_optional(&mut **t)
                    .await?,
                    crate::TxInner::Sqlite(t) => sqlx::query_as(
                        "SELECT failed_login_count, failed_login_since, locked_until FROM users \
                     WHERE id = $1",
                    )
                    .bind(u.0)
                    .fetch_optional(&mut **t)
                    .await?,
                };
            if let Some((count, since, locked_until)) = row {
                let before = FailureCount {
                    count,
                    since: since.map(|t| t.0),
                    locked_until: locked_until.map(|t| t.0),
                };
                let (after, newly_locked) = after_failure(before, at, policy);
                if after != before {
                    on_tx!(tx, |c| sqlx::query(
                        "UPDATE users SET failed_login_count = $2, failed_login_since = $3, \
                         locked_until = $4 WHERE id = $1"
                    )
                    .bind(u.0)
                    .bind(after.count)
                    .bind(after.since.map(DbTime))
                    .bind(after.locked_until.map(DbTime))
                    .execute(&mut *c)
                    .await
                    .map(|r| r.rows_affected()))?;
                }
                locked = is_locked(after.locked_until, at);
                if newly_locked {
                    tx.audit(AuditEvent::new(
                        origin,
                        action::USER_LOCKED,
                        tenant,
                        Some(Target::new("user", u)),
                        json!({
                            "failures": after.count,
                            "until": after.locked_until.map(|t| t.unix_timestamp()),
                        }),
                        at,
                    ))
                    .await?;
                }
            }
        }
        tx.audit(AuditEvent::new(
            origin,
            action::LOGIN_FAILED,
            tenant,
            user.map(|u| Target::new("user", u)),
            json!({ "reason": reason }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(locked)
    }

    /// Sessions of one user of `tenant`, in id order, after `after` (exclusive).
    pub async fn list_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let after = after.map(|s| s.0).unwrap_or(Uuid::nil());
        let rows: Vec<SessionRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        })?;
        Ok(rows.into_iter().map(SessionRow::into_session).collect())
    }
}

impl Store {
    /// Ends every session of a live user of `tenant` and revokes every token family of the user,
    /// offline ones and those of sessions that ended before included; returns how many sessions
    /// ended.
    pub async fn end_user_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        origin: &Origin,
    ) -> Result<u64, StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        tx.tenant_user(tenant, user).await?;
        let families = on_tx!(tx, |c| {
            sqlx::query(
                "UPDATE token_families SET revoked_at = $2, revoked_reason = 'sessions_revoked' \
             WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(user.0)
            .bind(at)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
        })?;
        let ended = on_tx!(tx, |c| sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1"
        )
        .bind(user.0)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::SESSIONS_REVOKED,
            Some(tenant),
            Some(Target::new("user", user)),
            json!({ "sessions": ended, "token_families": families }),
            at.0,
        ))
        .await?;
        tx.commit().await?;
        Ok(ended)
    }
}
