//! Browser sessions. The cookie carries a random 256-bit token; storage keeps only its SHA-256,
//! and every request that presents a cookie is checked against storage, so ending a session on one
//! process ends it on all of them.

use crate::{SessionId, TenantId, Timestamp, UserId};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// The user's tenant; `None` for platform operators.
    pub tenant_id: Option<TenantId>,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute end of the session, however active it is.
    pub expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session to create; `token_digest` is [`crate::secret::token_digest`] of the cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub user_id: UserId,
    pub tenant_id: Option<TenantId>,
    pub token_digest: [u8; 32],
    pub expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}
