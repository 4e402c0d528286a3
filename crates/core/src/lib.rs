//! The OpenTrusty domain: tenants, users, OAuth clients, sessions, role-based access control,
//! the password policy and audit events. Pure logic and types: this crate performs no I/O, so every
//! rule here is testable without a database or a network.

pub mod audit;
pub mod client;
pub mod email;
pub mod error;
pub mod ids;
pub mod lockout;
pub mod password;
pub mod pkce;
pub mod rbac;
pub mod secret;
pub mod session;
pub mod signing;
pub mod tenant;
pub mod uri;
pub mod user;

pub use error::DomainError;
pub use ids::{ClientId, SessionId, TenantId, UserId};

/// The one clock type of the domain: an instant in UTC.
pub type Timestamp = time::OffsetDateTime;

/// The current time in UTC, truncated to microseconds (the precision both stores keep), so a
/// value written and read back compares equal to the one the caller holds.
pub fn now() -> Timestamp {
    let t = time::OffsetDateTime::now_utc();
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}
