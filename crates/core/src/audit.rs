//! Audit events: who did what to which thing, from where, when. Events are written in the same
//! transaction as the change they record and never altered afterwards. Metadata is redacted
//! before it is stored, so a secret handed to a change never lands in the trail.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::AuditEventId;
use crate::{ClientId, TenantId, Timestamp, UserId};

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// The installation itself (bootstrap, janitor, migrations).
    System,
    /// A signed-in user, or a user acting through a login attempt.
    User(UserId),
    /// An OAuth client acting as a service account.
    Client(ClientId),
    /// Nobody identified (for example a failed login with an unknown email).
    Anonymous,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::System => "system",
            Actor::User(_) => "user",
            Actor::Client(_) => "client",
            Actor::Anonymous => "anonymous",
        }
    }

    pub fn id(&self) -> Option<uuid::Uuid> {
        match self {
            Actor::User(u) => Some(u.0),
            Actor::Client(c) => Some(c.0),
            Actor::System | Actor::Anonymous => None,
        }
    }
}

/// Where a change came from: the actor and the request that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub actor: Option<Actor>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// A change made by the installation itself, outside any request.
    pub fn system() -> Self {
        Self {
            actor: Some(Actor::System),
            ..Self::default()
        }
    }

    pub fn actor(&self) -> Actor {
        self.actor.unwrap_or(Actor::Anonymous)
    }

    /// The same request, acting as `actor` (known once the caller is authenticated).
    pub fn by(self, actor: Actor) -> Self {
        Self {
            actor: Some(actor),
            ..self
        }
    }
}

/// The thing an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_string(),
        }
    }
}

/// Names of audited actions. Dotted, `<thing>.<past tense>`, stable: operators filter on them.
pub mod action {
    pub const TENANT_CREATED: &str = "tenant.created";
    pub const TENANT_SUSPENDED: &str = "tenant.suspended";
    pub const TENANT_ACTIVATED: &str = "tenant.activated";
    pub const TENANT_DELETED: &str = "tenant.deleted";
    pub const TENANT_UPDATED: &str = "tenant.updated";
    pub const USER_CREATED: &str = "user.created";
    pub const USER_PASSWORD_SET: &str = "user.password_set";
    pub const USER_UPDATED: &str = "user.updated";
    pub const USER_DELETED: &str = "user.deleted";
    pub const USER_UNLOCKED: &str = "user.unlocked";
    pub const USER_LOCKED: &str = "user.locked";
    pub const ENROLLMENT_LINK_ISSUED: &str = "enrollment_link.issued";
    pub const SESSIONS_REVOKED: &str = "sessions.revoked";
    pub const ROLE_ASSIGNED: &str = "role.assigned";
    pub const ROLE_REVOKED: &str = "role.revoked";
    pub const CLIENT_CREATED: &str = "client.created";
    pub const CLIENT_UPDATED: &str = "client.updated";
    pub const CLIENT_DELETED: &str = "client.deleted";
    pub const CLIENT_SECRET_ROTATED: &str = "client.secret_rotated";
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const TOKEN_REFRESHED: &str = "token.refreshed";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const REFRESH_TOKEN_REUSED: &str = "refresh_token.reused";
    pub const AUTHORIZATION_CODE_REPLAYED: &str = "authorization_code.replayed";
    /// A code redemption or refresh rotation committed after its request had been refused
    /// (the connection broke while it was in flight) was undone: its tokens were never
    /// handed out, and the code or refresh token is unspent again.
    pub const GRANT_UNDELIVERED: &str = "grant.undelivered";
    pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
    pub const LOGIN_FAILED: &str = "login.failed";
    pub const LOGOUT: &str = "logout";
    pub const CONSENT_GRANTED: &str = "consent.granted";
    pub const SIGNING_KEY_CREATED: &str = "signing_key.created";
    pub const SIGNING_KEY_ROTATED: &str = "signing_key.rotated";
    pub const AUTHORIZATION_CODE_ISSUED: &str = "authorization_code.issued";
    pub const PLATFORM_ADMIN_BOOTSTRAPPED: &str = "platform_admin.bootstrapped";
}

/// One audit event, ready to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub occurred_at: Timestamp,
    pub tenant_id: Option<TenantId>,
    pub actor: Actor,
    pub action: String,
    pub target: Option<Target>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Already redacted.
    pub metadata: Value,
}

impl AuditEvent {
    /// Builds an event for `action` caused by `origin`; `metadata` is redacted here.
    pub fn new(
        origin: &Origin,
        action: &str,
        tenant_id: Option<TenantId>,
        target: Option<Target>,
        metadata: Value,
        at: Timestamp,
    ) -> Self {
        Self {
            id: AuditEventId::new(),
            occurred_at: at,
            tenant_id,
            actor: origin.actor(),
            action: action.to_owned(),
            target,
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            request_id: origin.request_id.clone(),
            metadata: redact(metadata),
        }
    }
}

/// Key fragments that mark a value as secret. Matching is by substring on the lower-cased key, so
/// `client_secret`, `new_password` and `refresh_token` are all caught.
const SECRET_KEY_FRAGMENTS: [&str; 9] = [
    "password",
    "secret",
    "token",
    "code",
    "cookie",
    "authorization",
    "credential",
    "private",
    "key",
];

/// The value that replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Replaces the value of every object member whose name looks secret, at any depth. Numbers,
/// booleans and nulls are kept (counts such as `access_tokens: 3` carry no secret); strings,
/// arrays and objects under such a name are replaced whole.
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let carries_text =
                        matches!(v, Value::String(_) | Value::Array(_) | Value::Object(_));
                    if carries_text && SECRET_KEY_FRAGMENTS.iter().any(|f| lower.contains(f)) {
                        (k, Value::String(REDACTED.to_owned()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// The fields that differ between two JSON objects, as `{"field": {"from": …, "to": …}}`, for
/// the before/after record of a change. Redact the result (as [`AuditEvent::new`] does).
pub fn changes(before: &Value, after: &Value) -> Value {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = serde_json::Map::new();
    for (k, to) in a {
        let from = b.get(k).unwrap_or(&Value::Null);
        if from != to {
            out.insert(k.clone(), serde_json::json!({ "from": from, "to": to }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn changes_list_only_differing_fields() {
        let out = changes(
            &json!({"name": "a", "status": "active", "n": 1}),
            &json!({"name": "b", "status": "active", "n": 1}),
        );
        assert_eq!(out, json!({"name": {"from": "a", "to": "b"}}));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_members_at_any_depth() {
        let out = redact(json!({
            "name": "acme",
            "client_secret": "s3cr3t",
            "Password": "hunter22",
            "nested": {"refresh_token": "rt", "scope": "openid"},
            "list": [{"authorization_code": "c"}, {"ok": 1}],
            "access_tokens": 3,
            "refresh_token_rotated": true,
            "tokens": ["a", "b"],
        }));
        assert_eq!(
            out,
            json!({
                "name": "acme",
                "client_secret": REDACTED,
                "Password": REDACTED,
                "nested": {"refresh_token": REDACTED, "scope": "openid"},
                "list": [{"authorization_code": REDACTED}, {"ok": 1}],
                "access_tokens": 3,
                "refresh_token_rotated": true,
                "tokens": REDACTED,
            })
        );
    }

    #[test]
    fn events_take_actor_and_request_from_origin() {
        let user = UserId::new();
        let origin = Origin {
            actor: Some(Actor::User(user)),
            ip: Some("192.0.2.1".into()),
            user_agent: Some("curl".into()),
            request_id: Some("req-1".into()),
        };
        let e = AuditEvent::new(
            &origin,
            action::TENANT_CREATED,
            None,
            Some(Target::new("tenant", "t1")),
            json!({"password": "x"}),
            crate::now(),
        );
        assert_eq!(e.actor, Actor::User(user));
        assert_eq!(e.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(e.metadata, json!({"password": REDACTED}));
        assert_eq!(Origin::default().actor(), Actor::Anonymous);
    }
}
