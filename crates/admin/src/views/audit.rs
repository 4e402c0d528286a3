//! Audit events as the API shows them and the audit list's filters.

use opentrusty_core::Timestamp;
use opentrusty_core::audit::{Actor, AuditEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActorView {
    /// `system`, `user`, `client` or `anonymous`.
    pub kind: String,
    pub id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTargetView {
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    pub tenant_id: Option<Uuid>,
    /// The action, `<thing>.<past tense>` (`user.created`).
    #[serde(rename = "type")]
    pub action: String,
    pub actor: AuditActorView,
    pub target: Option<AuditTargetView>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// What changed (before and after), without secrets.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id.0,
            occurred_at: e.occurred_at,
            tenant_id: e.tenant_id.map(|t| t.0),
            action: e.action,
            actor: AuditActorView {
                kind: e.actor.kind().to_owned(),
                id: match e.actor {
                    Actor::User(u) => Some(u.0),
                    Actor::Client(c) => Some(c.0),
                    Actor::System | Actor::Anonymous => None,
                },
            },
            target: e.target.map(|t| AuditTargetView {
                kind: t.kind,
                id: t.id,
            }),
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            metadata: e.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The event type (action), exactly: `user.created`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub action: Option<String>,
    /// The actor's id.
    #[param(value_type = Option<String>, format = Uuid)]
    pub actor: Option<String>,
    /// The target's id.
    pub target: Option<String>,
    /// Events at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Events before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}
