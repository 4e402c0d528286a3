//! OpenTrusty storage: one interface, [`Store`], over PostgreSQL (production, multi-process) and an
//! embedded SQLite file (the zero-configuration default). Both backends run the same SQL where the
//! dialects agree, the same embedded migrations in their own dialect, and one conformance suite.
//! Every operation that changes state writes its audit event in the same transaction.

mod audit;
mod bootstrap;
mod callers;
mod changes;
mod client_cache;
mod client_reads;
mod clients;
mod consents;
mod enrollment;
mod error;
mod grants;
mod janitor;
mod keys;
mod migrate;
pub mod outage;
mod postgres;
mod rbac;
mod rows;
mod sessions;
mod sql;
mod tenants;
mod tokens;
mod users;
mod workers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use audit::AuditQuery;
pub use bootstrap::BootstrapOutcome;
pub use callers::{SessionCaller, TokenCaller};
pub use client_cache::IssuingClient;
pub use clients::ClientAccess;
pub use enrollment::{EnrollmentPurpose, NewEnrollmentLink, PendingEnrollment};
pub use error::StoreError;
pub use grants::{
    AccessTokenKey, AccessTokenRecord, CodeGrant, Redemption, RefreshGrant, Rotation,
};
pub use janitor::Swept;
pub use keys::{NewSigningKey, StoredKey};
#[cfg(feature = "test-support")]
pub use migrate::schema_fingerprint;
pub use migrate::{AppliedMigration, Lock, LockKind, MIGRATIONS, Migration, MigrationStatus};
pub use postgres::settlement::{PUBLISH_EVERY as SETTLEMENT_PUBLISH_EVERY, WRITER_GONE_AFTER};
pub use rbac::Subject;
pub use tokens::{Confirmation, NewAccessToken, NewAuthorizationCode, NewTokenFamily};
pub use users::UserFilter;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Which backend a database URL names, if any.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Upper bound on pooled connections (PostgreSQL; SQLite uses at most this many readers).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long one statement may go unanswered before it fails as unavailable.
    pub statement_deadline: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_deadline: STATEMENT_DEADLINE,
        }
    }
}

/// How long a pooled PostgreSQL connection may sit idle before it is checked with a round trip
/// when taken again.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A handle to the database; cheap to clone (it is a connection pool).
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// PostgreSQL only: the group commits of issued tokens and grant writes (`batch.rs`).
    group_commits: Option<Arc<postgres::batch::GroupCommits>>,
    /// PostgreSQL only: shared client look-ups (`client_reads.rs`).
    client_reader: Option<Arc<client_reads::ClientReader>>,
    /// Clients remembered for client-credentials issuance (`client_cache.rs`).
    remembered_clients: Arc<client_cache::RememberedClients>,
    /// SQLite only: whose turn it is to write in this process (`SqliteTx::begin`).
    sqlite_writers: Arc<tokio::sync::Mutex<()>>,
    /// This process's grant writes in flight and in doubt (`settlement.rs`).
    settlement: Arc<postgres::settlement::Settlement>,
    /// Changes to what processes keep copies of (`changes.rs`).
    changes: Arc<changes::Changes>,
    /// [`ConnectOptions::statement_deadline`].
    statement_deadline: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Evaluates `$body` once per backend with `$pool` bound to that backend's pool, so one piece of
/// SQL serves both without generic trait bounds.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        $crate::within_deadline($store.statement_deadline, async {
            $crate::each_pool!($store, |$pool| $body)
        })
        .await
    };
}

/// [`on_pool`] without the statement deadline, for what is not a statement (the pool's own
/// state, closing it).
macro_rules! each_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Postgres($pool) => $body,
            $crate::Db::Sqlite($pool) => $body,
        }
    };
}

/// Like [`on_pool`], for a statement inside a transaction: `$conn` is the transaction's
/// connection.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        $crate::within_deadline($tx.deadline, async {
            match &mut $tx.inner {
                $crate::TxInner::Postgres(t) => {
                    let $conn: &mut sqlx::PgConnection = &mut *t;
                    $body
                }
                $crate::TxInner::Sqlite(t) => {
                    let $conn: &mut sqlx::SqliteConnection = &mut *t;
                    $body
                }
            }
        })
        .await
    };
}

/// How long one statement may go unanswered, unless configured otherwise. A connection whose
/// network path went silent (no reset, no close) would otherwise hold its request until TCP
/// gives up, a quarter of an hour later: past this the request fails as unavailable. Long
/// enough for the largest legitimate statement (a tenant's deletion revoking a million tokens).
pub const STATEMENT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs one statement of `on_pool!` or `on_tx!` under `deadline`.
pub(crate) async fn within_deadline<T>(
    deadline: Duration,
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(deadline, statement)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer from the database within {} s",
                    deadline.as_secs_f64()
                ),
            )))
        })
}

pub(crate) use {each_pool, on_pool, on_tx};

/// An open write transaction. Dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx {
    inner: TxInner,
    /// The store's statement deadline, for each statement of the transaction.
    deadline: Duration,
}

pub(crate) enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(SqliteTx),
}

/// An SQLite transaction run by hand (`BEGIN IMMEDIATE` … `COMMIT`). A connection that may
/// still be inside a transaction is closed rather than returned to the pool: after SQLite rolls
/// a transaction back by itself (disk full, I/O error), the driver's own transaction bookkeeping
/// would leave the connection refusing every later transaction; and a request abandoned by its
/// client while `BEGIN` was on its way would otherwise pool a connection that holds the write
/// lock, stalling every writer of every process.
pub(crate) struct SqliteTx {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    /// No transaction is open on `conn`: it may go back to the pool.
    settled: bool,
    /// This process's turn to write (released after `conn`, when the transaction is dropped).
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteTx {
    async fn begin(
        pool: &SqlitePool,
        writers: &Arc<tokio::sync::Mutex<()>>,
    ) -> Result<SqliteTx, StoreError> {
        use sqlx::Executor as _;
        // One writer at a time per process, queued in order: SQLite has one write lock, and
        // connections left to its busy handler sleep in growing steps (up to 100 ms) and miss
        // the moment it is free; under load that convoy put the p99 of token issuance at
        // 283 ms instead of 12 (docs/benchmarks.md, second round). The turn comes before the
        // connection, so waiting writers hold no connection readers need.
        let turn = writers.clone().lock_owned().await;
        // In doubt from before `BEGIN` is sent: dropped while it runs, or refused (a rare
        // busy timeout), the connection is closed and the pool opens a fresh one.
        let mut tx = SqliteTx {
            conn: pool.acquire().await?,
            settled: false,
            _turn: turn,
        };
        tx.conn.execute("BEGIN IMMEDIATE").await?;
        Ok(tx)
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        use sqlx::Executor as _;
        self.conn.execute("COMMIT").await?;
        self.settled = true;
        Ok(())
    }

    /// Rolls back; the connection goes back to the pool only if that worked.
    async fn rollback(mut self) {
        use sqlx::Executor as _;
        if self.conn.execute("ROLLBACK").await.is_ok() {
            self.settled = true;
        }
    }
}

impl std::ops::Deref for SqliteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

/// One step of a cascade: what it ends (the key of its count), the statement (taking the id as
/// `$1`), and whether it also takes the time as `$2`.
pub(crate) type CascadeStep = (&'static str, &'static str, bool);

impl Tx {
    /// Runs `steps` for the row `id` at `at`, returning how many rows each step touched, for the
    /// audit record of the change that ends them.
    pub(crate) async fn cascade(
        &mut self,
        id: uuid::Uuid,
        at: rows::DbTime,
        steps: &[CascadeStep],
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let mut counts = serde_json::Map::new();
        for &(what, sql, timed) in steps {
            let n = on_tx!(self, |c| {
                let mut q = sqlx::query(sql).bind(id);
                if timed {
                    q = q.bind(at);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
            counts.insert(what.to_owned(), n.into());
        }
        Ok(counts)
    }

    /// Ends the transaction without its changes. Dropping it does the same, but on SQLite only
    /// this keeps the connection for the pool: use it where a refusal is an expected outcome
    /// (an unknown token, a replayed code), so that such requests do not cost a reconnection.
    pub(crate) async fn rollback(self) {
        match self.inner {
            TxInner::Postgres(t) => {
                let _ = t.rollback().await;
            }
            TxInner::Sqlite(t) => t.rollback().await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Postgres(t) => t.commit().await?,
            TxInner::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl Store {
    /// Opens a pool on `url` (`postgres://…` or `sqlite://path`). An SQLite file is created if it
    /// does not exist. Nothing is migrated here.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Store, StoreError> {
        let deadline = options.statement_deadline;
        let db = match Backend::of_url(url) {
            Some(Backend::Postgres) => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?
                    .application_name("opentrusty");
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    // sqlx checks every connection it hands out with a round trip of its own,
                    // which doubled the round trips of every statement. A connection given back
                    // moments ago is alive (the pool's own check on its return said so); only
                    // one that sat idle, and may have been cut meanwhile (a database restart, a
                    // firewall's idle timeout), is checked before use.
                    .test_before_acquire(false)
                    .before_acquire(move |conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= CHECK_IDLE_AFTER {
                                within_deadline(deadline, sqlx::Connection::ping(conn)).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(opts)
                    .await?;
                Db::Postgres(pool)
            }
            Some(Backend::Sqlite) => {
                let opts = sqlite_options(url)?;
                let in_memory = opts.get_filename().as_os_str() == ":memory:";
                if !in_memory {
                    create_private_file(opts.get_filename())?;
                }
                let pool_options = SqlitePoolOptions::new()
                    // An in-memory database exists once per connection: keep exactly one.
                    .max_connections(if in_memory {
                        1
                    } else {
                        options.max_connections.max(1)
                    })
                    .min_connections(if in_memory { 1 } else { 0 })
                    .idle_timeout(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .acquire_timeout(options.acquire_timeout)
                    // A file cannot hang up: a liveness round trip to the connection's worker
                    // thread before each statement checks nothing.
                    .test_before_acquire(false);
                // Processes opening a new database file at the same moment (`migrate` twice,
                // or both planes started together): turning the file to WAL needs it to itself,
                // and SQLite tells the others "locked" at once instead of waiting in the busy
                // handler. Opening again is harmless; give up after the busy timeout.
                let started = std::time::Instant::now();
                let pool = loop {
                    match pool_options.clone().connect_with(opts.clone()).await {
                        Ok(pool) => break pool,
                        Err(e)
                            if error::sqlite_busy(&e)
                                && started.elapsed() < SQLITE_BUSY_TIMEOUT =>
                        {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                Db::Sqlite(pool)
            }
            None => {
                return Err(StoreError::Config(
                    "database URL must start with postgres:// or sqlite:".to_owned(),
                ));
            }
        };
        let (group_commits, client_reader) = match &db {
            Db::Postgres(pool) => (
                Some(postgres::batch::GroupCommits::start(pool, deadline)),
                Some(client_reads::ClientReader::start(pool.clone(), deadline)),
            ),
            Db::Sqlite(_) => (None, None),
        };
        Ok(Store {
            db,
            group_commits,
            client_reader,
            remembered_clients: Arc::default(),
            sqlite_writers: Arc::default(),
            settlement: postgres::settlement::Settlement::new(),
            changes: Arc::default(),
            statement_deadline: deadline,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The pool right now: `(open connections, idle ones, upper bound)`, for metrics.
    pub fn pool_status(&self) -> (u32, u32, u32) {
        each_pool!(self, |pool| (
            pool.size(),
            u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            pool.options().get_max_connections()
        ))
    }

    /// Round-trips a trivial query: is the database reachable right now?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Fails with [`StoreError::Unwritable`] when the database cannot take writes (a read-only
    /// file or file system, a PostgreSQL standby), so a plane refuses to start rather than
    /// serve only what needs no write. Writes nothing: the probe's change is rolled back.
    pub async fn ensure_writable(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let read_only: String =
                    sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
                        .fetch_one(pool)
                        .await?;
                if read_only == "on" {
                    return Err(StoreError::Unwritable(
                        "the server accepts read-only transactions only (a standby?)".to_owned(),
                    ));
                }
            }
            Db::Sqlite(_) => {
                let mut tx = self.begin().await?;
                // Dropped without a commit: rolled back with its connection.
                on_tx!(tx, |c| sqlx::query(
                    "UPDATE schema_migrations SET version = version"
                )
                .execute(&mut *c)
                .await
                .map(|_| ()))?;
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        each_pool!(self, |pool| pool.close().await)
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so two writers queue on the busy timeout instead of failing when a read
    /// lock would have to be upgraded.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match &self.db {
            Db::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
            Db::Sqlite(pool) => TxInner::Sqlite(SqliteTx::begin(pool, &self.sqlite_writers).await?),
        };
        Ok(Tx {
            inner,
            deadline: self.statement_deadline,
        })
    }
}

/// SQLite settings every connection gets: foreign keys enforced, WAL so readers never block the
/// writer, a busy timeout so concurrent writers wait rather than fail.
fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
    Ok(opts
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT))
}

/// How long an SQLite writer waits for another to finish before it gives up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the database file readable by its owner only (it holds password hashes and encrypted
/// keys); SQLite gives its WAL and shared-memory files the same mode. An existing file is left
/// as it is.
fn create_private_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

/// The file an SQLite URL points at, or `None` for PostgreSQL and in-memory databases.
pub fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    if Backend::of_url(url) != Some(Backend::Sqlite) {
        return Ok(None);
    }
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
    let path = opts.get_filename();
    if path.as_os_str() == ":memory:" {
        return Ok(None);
    }
    Ok(Some(path.to_path_buf()))
}
