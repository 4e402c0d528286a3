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
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
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
        matches!(self, StoreError::Unavailable(_))
    }
}
