//! Browser sessions, looked up by the SHA-256 of the cookie value on every request.

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::session::{NewSession, Session};
use opentrusty_core::{SessionId, TenantId, Timestamp, UserId, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, on_pool, on_tx};

#[derive(sqlx::FromRow)]
struct SessionRow {
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
    fn into_session(self) -> Session {
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
}

impl Store {
    pub async fn create_session(
        &self,
        new: &NewSession,
        origin: &Origin,
    ) -> Result<Session, StoreError> {
        let at = now();
        let session = Session {
            id: SessionId::new(),
            user_id: new.user_id,
            tenant_id: new.tenant_id,
            auth_time: at,
            created_at: at,
            last_seen_at: at,
            expires_at: new.expires_at,
            ip: new.ip.clone(),
            user_agent: new.user_agent.clone(),
        };
        let mut tx = self.begin().await?;
        on_tx!(tx, |c| sqlx::query(concat!(
            "INSERT INTO sessions (token_hash, ",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $5, $5, $6, $7, $8)"
        ))
        .bind(&new.token_digest[..])
        .bind(session.id.0)
        .bind(session.user_id.0)
        .bind(session.tenant_id.map(|t| t.0))
        .bind(DbTime(at))
        .bind(DbTime(session.expires_at))
        .bind(&session.ip)
        .bind(&session.user_agent)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.audit(AuditEvent::new(
            origin,
            action::SESSION_CREATED,
            session.tenant_id,
            Some(Target::new("session", session.id)),
            json!({ "user_id": session.user_id }),
            at,
        ))
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// The session a cookie digest names, if it has not expired at `at`.
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

    /// Sessions of one user of `tenant`.
    pub async fn list_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<Session>, StoreError> {
        let rows: Vec<SessionRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE tenant_id = $1 AND user_id = $2 ORDER BY id"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(SessionRow::into_session).collect())
    }
}
