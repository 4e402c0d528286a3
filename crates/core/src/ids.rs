//! Typed identifiers. Every entity id is a UUIDv7 (time-ordered, so index inserts stay local and
//! ids double as stable pagination keys), wrapped in its own type so a tenant id can never be
//! passed where a user id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

entity_id!(
    /// Identifies a tenant, the isolation boundary.
    TenantId
);
entity_id!(
    /// Identifies a user (a tenant member, or a platform operator with no tenant).
    UserId
);
entity_id!(
    /// Internal identifier of an OAuth client row; the public `client_id` is a separate string.
    ClientId
);
entity_id!(
    /// Identifies a browser session row (never the cookie value, which only the browser holds).
    SessionId
);
entity_id!(
    /// Identifies an audit event.
    AuditEventId
);
entity_id!(
    /// Identifies a role assignment.
    AssignmentId
);
entity_id!(
    /// Identifies a refresh-token family (every token issued from one authorization grant).
    TokenFamilyId
);
entity_id!(
    /// Identifies a single-use enrollment or password-reset link.
    EnrollmentId
);
