//! Changes that processes keep copies of in memory (the signing keys): counted per process, so
//! a copy taken at an older count is stale. A change made here counts at once; on PostgreSQL
//! the transaction that makes it also sends a NOTIFY, and [`Store::follow_changes`] counts the
//! changes of every other process as they commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Db, Store, StoreError, TxInner};

/// The channel PostgreSQL announces key changes on.
const KEYS_CHANNEL: &str = "opentrusty_keys";

/// How long to wait before listening again after the listening connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Changes {
    keys: AtomicU64,
}

impl Changes {
    fn keys_changed(&self) {
        self.keys.fetch_add(1, Ordering::AcqRel);
    }
}

impl Store {
    /// A count that moves whenever the signing keys may have changed: a copy of the keys read
    /// at an older count must be read again.
    pub fn key_changes(&self) -> u64 {
        self.changes.keys.load(Ordering::Acquire)
    }

    /// Counts a key change this process committed.
    pub(crate) fn count_key_change(&self) {
        self.changes.keys_changed();
    }

    /// Follows the key changes other processes commit until `stop` fires: a NOTIFY listener
    /// on PostgreSQL (each notification counts as a change, and so does each start of listening,
    /// for what was announced while nobody listened); nothing to do on SQLite, whose processes
    /// fall back on their copies' age.
    pub async fn follow_changes(&self, mut stop: tokio::sync::watch::Receiver<()>) {
        let Db::Postgres(pool) = &self.db else {
            return;
        };
        loop {
            let listened = tokio::select! {
                r = self.listen(pool) => r,
                _ = stop.changed() => return,
            };
            if let Err(e) = listened {
                tracing::debug!(error = %e, "not listening for key changes; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(RELISTEN_AFTER) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Listens until the connection is lost.
    async fn listen(&self, pool: &sqlx::PgPool) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(KEYS_CHANNEL).await?;
        // Changes committed while nobody listened (before the first LISTEN, or while the last
        // listening connection was lost) were not heard.
        self.changes.keys_changed();
        while listener.try_recv().await?.is_some() {
            self.changes.keys_changed();
        }
        Ok(())
    }
}

impl crate::Tx {
    /// Announces, at commit, that the signing keys changed (PostgreSQL; SQLite processes do
    /// not listen).
    pub(crate) async fn announce_key_change(&mut self) -> Result<(), StoreError> {
        if let TxInner::Postgres(t) = &mut self.inner {
            crate::within_deadline(
                self.deadline,
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(KEYS_CHANNEL)
                    .execute(&mut **t),
            )
            .await?;
        }
        Ok(())
    }
}
