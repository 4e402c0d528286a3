//! The append-only audit trail: appending inside a transaction, and reading it back per tenant
//! or platform-wide, newest first.

use opentrusty_core::audit::{Actor, AuditEvent, Target};
use opentrusty_core::ids::AuditEventId;
use opentrusty_core::{ClientId, TenantId, Timestamp, UserId};
use sqlx::types::Json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Store, StoreError, Tx, on_pool, on_tx};

/// Which events to read. Every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `Some`: that tenant's events only. `None`: every event (platform view).
    pub tenant: Option<TenantId>,
    /// The action, exactly (`user.created`).
    pub action: Option<String>,
    /// The actor's id (a user or a client).
    pub actor: Option<uuid::Uuid>,
    /// The target's id, exactly.
    pub target: Option<String>,
    /// Events at or after this instant.
    pub since: Option<Timestamp>,
    /// Events before this instant.
    pub until: Option<Timestamp>,
    /// Events strictly older than this position (`occurred_at`, `id`): the cursor of the
    /// previous page. Positions are stable, so pages stay correct while events arrive.
    pub before: Option<(Timestamp, AuditEventId)>,
    /// At most this many, newest first.
    pub limit: u32,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    occurred_at: DbTime,
    tenant_id: Option<Uuid>,
    actor_kind: String,
    actor_id: Option<Uuid>,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    metadata: Json<serde_json::Value>,
}

impl AuditRow {
    fn into_event(self) -> AuditEvent {
        let actor = match (self.actor_kind.as_str(), self.actor_id) {
            ("user", Some(id)) => Actor::User(UserId(id)),
            ("client", Some(id)) => Actor::Client(ClientId(id)),
            ("system", _) => Actor::System,
            _ => Actor::Anonymous,
        };
        AuditEvent {
            id: AuditEventId(self.id),
            occurred_at: self.occurred_at.0,
            tenant_id: self.tenant_id.map(TenantId),
            actor,
            action: self.action,
            target: match (self.target_kind, self.target_id) {
                (Some(kind), Some(id)) => Some(Target { kind, id }),
                _ => None,
            },
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            metadata: self.metadata.0,
        }
    }
}

macro_rules! audit_columns {
    () => {
        "id, occurred_at, tenant_id, actor_kind, actor_id, action, target_kind, target_id, ip, \
         user_agent, request_id, metadata"
    };
}
pub(crate) use audit_columns;

/// The columns of [`audit_columns!`], as parameter names: `{prefix}_{column}`.
const AUDIT_PARAMETERS: [&str; 12] = [
    "id",
    "occurred_at",
    "tenant_id",
    "actor_kind",
    "actor_id",
    "action",
    "target_kind",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "metadata",
];

/// The names of an audit row's twelve parameters, `{prefix}_{column}`, in the order of
/// [`audit_columns!`] and [`bind_audit!`] (for [`crate::sql::numbered`]).
pub(crate) fn audit_parameters(prefix: &str) -> Vec<String> {
    AUDIT_PARAMETERS
        .iter()
        .map(|c| format!("{prefix}_{c}"))
        .collect()
}

/// `:{prefix}_id, …`: the values of an audit row named by [`audit_parameters`].
pub(crate) fn audit_value_list(prefix: &str) -> String {
    let names: Vec<String> = audit_parameters(prefix)
        .iter()
        .map(|n| format!(":{n}"))
        .collect();
    names.join(", ")
}

/// `(:{prefix}_id, …)`: [`audit_value_list`] as a row.
pub(crate) fn audit_values(prefix: &str) -> String {
    format!("({})", audit_value_list(prefix))
}

/// Binds `$event` (an `&AuditEvent`) as the twelve parameters after those already bound to
/// `$q`, in the order of [`audit_columns!`], on either backend.
macro_rules! bind_audit {
    ($q:expr, $event:expr) => {{
        let event: &opentrusty_core::audit::AuditEvent = $event;
        let (target_kind, target_id) = match &event.target {
            Some(t) => (Some(t.kind.as_str()), Some(t.id.as_str())),
            None => (None, None),
        };
        $q.bind(event.id.0)
            .bind($crate::rows::DbTime(event.occurred_at))
            .bind(event.tenant_id.map(|t| t.0))
            .bind(event.actor.kind())
            .bind(event.actor.id())
            .bind(&event.action)
            .bind(target_kind)
            .bind(target_id)
            .bind(&event.ip)
            .bind(&event.user_agent)
            .bind(&event.request_id)
            .bind(sqlx::types::Json(&event.metadata))
    }};
}
pub(crate) use bind_audit;

/// Binds `event` after the parameters already bound to `q`, for statements that append their
/// audit row themselves (PostgreSQL's data-modifying `WITH`: the change and its row in one
/// statement, one round trip).
pub(crate) fn bind_event<'q>(
    q: crate::tokens::PgQuery<'q>,
    event: &'q AuditEvent,
) -> crate::tokens::PgQuery<'q> {
    bind_audit!(q, event)
}

impl Tx {
    /// Appends `event` as part of this transaction: it lands if and only if the change does.
    pub(crate) async fn audit(&mut self, event: AuditEvent) -> Result<(), StoreError> {
        on_tx!(self, |c| bind_audit!(
            sqlx::query(concat!(
                "INSERT INTO audit_events (",
                audit_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )),
            &event
        )
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl Store {
    /// Reads events newest first, filtered by `query`.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::from(query.limit.clamp(1, 1000));
        let (before_at, before_id) = match query.before {
            Some((at, id)) => (Some(DbTime(at)), Some(id.0)),
            None => (None, None),
        };
        let rows: Vec<AuditRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE ($1 IS NULL OR tenant_id = $1) \
               AND ($2 IS NULL OR action = $2) \
               AND ($3 IS NULL OR actor_id = $3) \
               AND ($4 IS NULL OR target_id = $4) \
               AND ($5 IS NULL OR occurred_at >= $5) \
               AND ($6 IS NULL OR occurred_at < $6) \
               AND ($7 IS NULL OR occurred_at < $7 OR (occurred_at = $7 AND id < $8)) \
             ORDER BY occurred_at DESC, id DESC LIMIT $9"
        ))
        .bind(query.tenant.map(|t| t.0))
        .bind(&query.action)
        .bind(query.actor)
        .bind(&query.target)
        .bind(query.since.map(DbTime))
        .bind(query.until.map(DbTime))
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(AuditRow::into_event).collect())
    }
}
