//! The storage layer's one error type. Its messages are for operators' logs; the HTTP layers map
//! each kind to a response without passing the text on.

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist (or is not visible from the caller's tenant).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; names the thing that already exists.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The change conflicts with the current state (the last owner of a tenant, a key that is
    /// not ready); the text says why, in words meant for the caller.
    #[error("{0}")]
    Refused(String),
    /// The caller asked for something the domain rules forbid.
    #[error(transparent)]
    Invalid(#[from] opentrusty_core::DomainError),
    /// The database could not be reached in time; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection broke while a write was in flight: it may or may not have committed. It
    /// is never made a second time; grant writes settle it (`settlement.rs`).
    #[error("outcome of a write unknown: {0}")]
    InDoubt(String),
    /// The database refuses writes until an operator acts (disk full, read-only file system,
    /// I/O error); reads may still work and the caller may retry once it is fixed.
    #[error("database cannot take writes: {0}")]
    Unwritable(String),
    /// The database URL or settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The schema is not what this binary expects.
    #[error("migration: {0}")]
    Migration(String),
    /// Anything else the driver reported.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut => {
                StoreError::Unavailable("timed out waiting for a connection".to_owned())
            }
            sqlx::Error::PoolClosed => StoreError::Unavailable("the pool is closed".to_owned()),
            sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
            sqlx::Error::Tls(tls) => StoreError::Unavailable(format!("TLS: {tls}")),
            // A connection that breaks during its handshake (a proxy in front of a database
            // that is down), or a driver worker gone: the database is not usable right now.
            sqlx::Error::Protocol(p) => StoreError::Unavailable(format!("protocol: {p}")),
            sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable("the database driver's worker stopped".to_owned())
            }
            sqlx::Error::Database(db) if unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(db.message().to_owned())
            }
            sqlx::Error::Database(db) if unwritable(db.as_ref()) => {
                StoreError::Unwritable(db.message().to_owned())
            }
            other => StoreError::Database(other),
        }
    }
}

/// Database error codes that mean "not now" rather than "never": PostgreSQL shutting down,
/// starting up, out of connections, or a lost connection (SQLSTATE classes 57P and 08, 53300);
/// SQLite busy or locked past the busy timeout.
fn unavailable_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "57P01" | "57P02" | "57P03" | "53300" | "08000" | "08001" | "08003" | "08004" | "08006"
        ) | Some("5" | "6" | "261" | "517")
    )
}

/// Errors that mean the storage under the database cannot take writes: PostgreSQL out of disk
/// (53100) or in a read-only transaction (25006, a standby); SQLite full, read-only or failing
/// I/O (primary result codes 13, 8 and 10, whatever their extended code).
fn unwritable(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(primary) = sqlite_primary_code(db) {
        return matches!(primary, 8 | 10 | 13);
    }
    db.code()
        .is_some_and(|code| matches!(code.as_ref(), "53100" | "25006"))
}

/// SQLite's primary result code of `db` (the low byte of its extended code); `None` for other
/// databases.
fn sqlite_primary_code(db: &dyn sqlx::error::DatabaseError) -> Option<i32> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    Some(db.code()?.parse::<i32>().ok()? & 0xff)
}

/// Whether `e` is SQLite's "busy" (`SQLITE_BUSY` with any extended code).
pub(crate) fn sqlite_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if sqlite_primary_code(db.as_ref()) == Some(5))
}

impl StoreError {
    /// `e` raised by a write statement that had been handed to a connection: a connection that
    /// broke leaves the outcome unknown ([`StoreError::InDoubt`]). An error the server sent
    /// back means the statement failed, and so did its implicit transaction.
    pub(crate) fn of_sent_write(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Io(io) => StoreError::InDoubt(io.to_string()),
            sqlx::Error::Tls(tls) => StoreError::InDoubt(format!("TLS: {tls}")),
            sqlx::Error::Protocol(p) => StoreError::InDoubt(format!("protocol: {p}")),
            sqlx::Error::WorkerCrashed => {
                StoreError::InDoubt("the database driver's worker stopped".to_owned())
            }
            other => StoreError::from(other),
        }
    }

    /// Maps a unique violation to [`StoreError::Conflict`] naming `what`; other errors pass.
    pub(crate) fn unique_as(e: sqlx::Error, what: &'static str) -> StoreError {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(what);
        }
        StoreError::from(e)
    }

    /// Whether retrying later could succeed (the database was unreachable or saturated).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Unwritable(_) | StoreError::InDoubt(_)
        )
    }

    /// Whether an operator must act before writes succeed again (see [`StoreError::Unwritable`]).
    pub fn needs_operator(&self) -> bool {
        matches!(self, StoreError::Unwritable(_))
    }
}
