//! Schema migrations: versioned, embedded in the binary, one SQL file per dialect, recorded in the
//! `schema_migrations` ledger with a checksum. Each migration runs in its own transaction. Two
//! processes migrating at once serialise: on PostgreSQL on an advisory lock, on SQLite on the
//! write lock of `BEGIN IMMEDIATE`; the second finds the work done and applies nothing.

use sha2::{Digest, Sha256};
use sqlx::Connection as _;

use crate::rows::DbTime;
use crate::{Db, Store, StoreError};

/// One schema change, in both dialects.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
    /// What it holds locked on existing tables while it runs (`migrate --dry-run`).
    pub locks: &'static [Lock],
}

/// A lock a migration takes on an existing table, for the operator deciding when to run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub table: &'static str,
    pub kind: LockKind,
}

/// How long a [`Lock`] lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A change to the table's definition alone (a column with a constant default, a trigger):
    /// an exclusive lock for a moment, whatever the table's size.
    Definition,
    /// An index built inside the migration's transaction: writes to the table wait while it
    /// reads the whole table once.
    IndexBuild,
    /// Rows rewritten by an `UPDATE`: those rows are locked until the migration commits; the
    /// statement reads the whole table once.
    RowRewrite,
}

impl LockKind {
    /// What it means for the planes, in words for the operator.
    pub fn effect(self) -> &'static str {
        match self {
            LockKind::Definition => "every statement on it waits a moment (no scan)",
            LockKind::IndexBuild => "writes to it wait for one scan of the table",
            LockKind::RowRewrite => "the rows it changes are locked for one scan of the table",
        }
    }

    /// Whether the lock lasts as long as one read of the whole table.
    pub fn scans(self) -> bool {
        !matches!(self, LockKind::Definition)
    }

    /// About how long the lock lasts per million rows of the table, for the dry run's
    /// estimates: the slowest of `bench/migration-locks.sh`'s runs at a million users on two
    /// cores without other load (docs/storage.md, "Longest lock per migration"): index builds
    /// 0.09–0.45 s, migration 5's `UPDATE` (15 % of the rows changed) 3.5–3.7 s.
    pub fn ms_per_million_rows(self) -> f64 {
        match self {
            LockKind::Definition => 0.0,
            LockKind::IndexBuild => 450.0,
            LockKind::RowRewrite => 3_700.0,
        }
    }
}

impl Migration {
    /// The slowest scan this migration makes of `table`, if any. A definition change to a
    /// table that the same migration then scans holds its exclusive lock across that scan,
    /// until the migration commits: reads wait as well as writes.
    pub fn slowest_scan_of(&self, table: &str) -> Option<LockKind> {
        self.locks
            .iter()
            .filter(|l| l.table == table && l.kind.scans())
            .map(|l| l.kind)
            .max_by(|a, b| a.ms_per_million_rows().total_cmp(&b.ms_per_million_rows()))
    }
}

const fn definition(table: &'static str) -> Lock {
    Lock {
        table,
        kind: LockKind::Definition,
    }
}

const fn index_build(table: &'static str) -> Lock {
    Lock {
        table,
        kind: LockKind::IndexBuild,
    }
}

/// Every migration this binary knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        locks: &[],
    },
    Migration {
        version: 2,
        name: "client revision",
        postgres: include_str!("../migrations/postgres/0002_client_revision.sql"),
        sqlite: include_str!("../migrations/sqlite/0002_client_revision.sql"),
        locks: &[definition("oauth_clients")],
    },
    Migration {
        version: 3,
        name: "access tokens by user",
        postgres: include_str!("../migrations/postgres/0003_access_tokens_by_user.sql"),
        sqlite: include_str!("../migrations/sqlite/0003_access_tokens_by_user.sql"),
        locks: &[index_build("access_tokens")],
    },
    Migration {
        version: 4,
        name: "client tokens by audit row",
        postgres: include_str!("../migrations/postgres/0004_client_tokens_by_audit_row.sql"),
        sqlite: include_str!("../migrations/sqlite/0004_client_tokens_by_audit_row.sql"),
        locks: &[definition("audit_events"), index_build("audit_events")],
    },
    Migration {
        version: 5,
        name: "session-bound grants",
        postgres: include_str!("../migrations/postgres/0005_session_bound_grants.sql"),
        sqlite: include_str!("../migrations/sqlite/0005_session_bound_grants.sql"),
        locks: &[
            definition("token_families"),
            Lock {
                table: "token_families",
                kind: LockKind::RowRewrite,
            },
            definition("authorization_codes"),
            definition("oauth_clients"),
            index_build("oauth_clients"),
        ],
    },
    Migration {
        version: 6,
        name: "settled grant writes",
        postgres: include_str!("../migrations/postgres/0006_settled_grant_writes.sql"),
        sqlite: include_str!("../migrations/sqlite/0006_settled_grant_writes.sql"),
        locks: &[index_build("token_families")],
    },
];

/// Arbitrary constant naming OpenTrusty's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x4f54_4d49_4752_4154; // "OTMIGRAT"

const LEDGER_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL
)";

const LEDGER_SQLITE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
) STRICT";

const LEDGER_ROWS: &str =
    "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version";

/// Runs migration `$m` in the open transaction `$tx` of either backend and records it in the
/// ledger in that same transaction.
macro_rules! apply_and_record {
    ($store:expr, $tx:expr, $m:expr) => {{
        sqlx::raw_sql($m.sql($store))
            .execute(&mut *$tx)
            .await
            .map_err(|e| failed($m, e))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind($m.version)
        .bind($m.name)
        .bind($m.checksum($store))
        .bind(DbTime(opentrusty_core::now()))
        .execute(&mut *$tx)
        .await?;
    }};
}

impl Migration {
    fn sql(&self, store: &Store) -> &'static str {
        match store.db {
            Db::Postgres(_) => self.postgres,
            Db::Sqlite(_) => self.sqlite,
        }
    }

    fn checksum(&self, store: &Store) -> String {
        hex_sha256(self.sql(store))
    }
}

/// A digest of every embedded migration in both dialects: equal fingerprints mean equal schemas.
/// Test harnesses key their migrated template databases on it.
#[cfg(feature = "test-support")]
pub fn schema_fingerprint() -> String {
    let all: String = MIGRATIONS
        .iter()
        .flat_map(|m| [m.postgres, m.sqlite])
        .collect();
    hex_sha256(&all)
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub applied_at: opentrusty_core::Timestamp,
}

/// Applied and pending migrations, as `migrate --status` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<AppliedMigration>,
    /// Known to this binary, not yet applied.
    pub pending: Vec<(i64, &'static str)>,
}

#[derive(sqlx::FromRow)]
struct LedgerRow {
    version: i64,
    name: String,
    checksum: String,
    applied_at: DbTime,
}

impl Store {
    /// Applies every pending migration and returns the versions it applied (empty when the
    /// schema was current). Safe to run concurrently from several processes.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(PG_MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await?;
                let result = self.migrate_locked_pg(&mut conn).await;
                // The lock also ends with the connection if unlocking fails.
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(PG_MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await;
                if unlock.is_err() {
                    conn.detach();
                }
                result
            }
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let mut applied_now = Vec::new();
                for m in MIGRATIONS {
                    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                    sqlx::raw_sql(LEDGER_SQLITE).execute(&mut *tx).await?;
                    let ledger: Vec<LedgerRow> =
                        sqlx::query_as(LEDGER_ROWS).fetch_all(&mut *tx).await?;
                    verify_checksums(self, &ledger)?;
                    if ledger.iter().any(|r| r.version == m.version) {
                        continue;
                    }
                    apply_and_record!(self, tx, m);
                    tx.commit().await?;
                    applied_now.push(m.version);
                }
                Ok(applied_now)
            }
        }
    }

    async fn migrate_locked_pg(
        &self,
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<i64>, StoreError> {
        sqlx::raw_sql(LEDGER_POSTGRES).execute(&mut *conn).await?;
        let ledger: Vec<LedgerRow> = sqlx::query_as(LEDGER_ROWS).fetch_all(&mut *conn).await?;
        verify_checksums(self, &ledger)?;
        let mut applied_now = Vec::new();
        for m in MIGRATIONS {
            if ledger.iter().any(|r| r.version == m.version) {
                continue;
            }
            let mut tx = conn.begin().await?;
            apply_and_record!(self, tx, m);
            tx.commit().await?;
            applied_now.push(m.version);
        }
        Ok(applied_now)
    }

    /// What is applied and what is pending. A database never migrated has everything pending.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let ledger = self.ledger().await?;
        verify_checksums(self, &ledger)?;
        let applied = ledger
            .iter()
            .map(|r| AppliedMigration {
                version: r.version,
                name: r.name.clone(),
                applied_at: r.applied_at.0,
            })
            .collect();
        let pending = MIGRATIONS
            .iter()
            .filter(|m| !ledger.iter().any(|r| r.version == m.version))
            .map(|m| (m.version, m.name))
            .collect();
        Ok(MigrationStatus { applied, pending })
    }

    async fn ledger(&self) -> Result<Vec<LedgerRow>, StoreError> {
        let exists_sql = match self.db {
            Db::Postgres(_) => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables \
                                WHERE schemaname = current_schema() AND tablename = 'schema_migrations'"
            }
            Db::Sqlite(_) => {
                "SELECT COUNT(*) FROM sqlite_master \
                              WHERE type = 'table' AND name = 'schema_migrations'"
            }
        };
        let exists: i64 = crate::on_pool!(self, |pool| sqlx::query_scalar(exists_sql)
            .fetch_one(pool)
            .await)?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let rows = crate::on_pool!(self, |pool| sqlx::query_as(LEDGER_ROWS)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// About how many rows `table` holds: PostgreSQL's planner estimate (no scan), SQLite's
    /// count. `None` for a table that does not exist yet.
    pub async fn estimated_rows(&self, table: &str) -> Result<Option<i64>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let estimate: Option<f32> = sqlx::query_scalar(
                    "SELECT c.reltuples FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relname = $1 AND c.relkind = 'r'",
                )
                .bind(table)
                .fetch_optional(pool)
                .await?;
                // -1: never analysed; the table is small or new.
                Ok(estimate.map(|n| n.max(0.0) as i64))
            }
            Db::Sqlite(pool) => {
                let exists: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_one(pool)
                .await?;
                if exists == 0 {
                    return Ok(None);
                }
                // Names come from the migrations' declarations, never from input.
                let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM \"{table}\""
                )))
                .fetch_one(pool)
                .await?;
                Ok(Some(count))
            }
        }
    }

    /// `Ok` when the database answers and no migration is pending; otherwise the reason, in
    /// words fit for a public readiness probe (details go to the log, not the answer).
    pub async fn readiness(&self) -> Result<(), String> {
        if let Err(e) = self.ping().await {
            crate::outage::refused(&e);
            return Err("database unreachable".to_owned());
        }
        let status = self.migration_status().await.map_err(|e| {
            tracing::warn!(error = %e, "not ready: cannot read the migration ledger");
            "cannot read the migration ledger".to_owned()
        })?;
        if !status.pending.is_empty() {
            let versions: Vec<String> = status.pending.iter().map(|(v, _)| v.to_string()).collect();
            return Err(format!(
                "{} migration(s) pending (version {}); run `opentrusty migrate`",
                versions.len(),
                versions.join(", ")
            ));
        }
        Ok(())
    }
}

/// Refuses to go on when an applied migration's SQL differs from the embedded one: the schema
/// would not be what this binary was built for.
fn verify_checksums(store: &Store, ledger: &[LedgerRow]) -> Result<(), StoreError> {
    for row in ledger {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == row.version)
            && m.checksum(store) != row.checksum
        {
            return Err(StoreError::Migration(format!(
                "migration {} ({}) was applied with different SQL than this binary carries",
                row.version, row.name
            )));
        }
    }
    Ok(())
}

fn failed(m: &Migration, e: sqlx::Error) -> StoreError {
    StoreError::Migration(format!(
        "migration {} ({}) failed and was rolled back: {e}",
        m.version, m.name
    ))
}
