//! Shared client look-ups on PostgreSQL: the clients named by requests that arrive at the same
//! moment are read by one statement, and each caller is answered from its rows. Nothing is
//! kept between statements: every look-up reads rows as committed after its caller asked, as a
//! statement of its own would, so a rotated secret or a disabled client is never answered from
//! an older read. What it saves is a round trip (and PostgreSQL's wake-up) per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::clients::{ClientAccessRow, client_access_from};
use crate::{ClientAccess, StoreError};

/// Most look-ups one statement answers; more waiting callers go into the next one.
const MAX_BATCH: usize = 64;
/// Statements in flight at once: while one waits for PostgreSQL the next one gathers.
const READERS: usize = 2;

struct Lookup {
    client_id: String,
    done: oneshot::Sender<Result<Option<ClientAccess>, StoreError>>,
}

/// The queue in front of the readers; cheap to clone with the store.
pub(crate) struct ClientReader {
    queue: mpsc::UnboundedSender<Lookup>,
}

impl ClientReader {
    /// Starts the readers on the current runtime.
    pub(crate) fn start(pool: PgPool, deadline: Duration) -> Arc<ClientReader> {
        let queue = crate::workers::start(READERS, MAX_BATCH, move |batch| {
            read_batch(pool.clone(), deadline, batch)
        });
        Arc::new(ClientReader { queue })
    }

    /// The live client with this public id. `None` when the readers are gone (their runtime
    /// ended): the caller reads for itself.
    pub(crate) async fn find(
        &self,
        client_id: &str,
    ) -> Option<Result<Option<ClientAccess>, StoreError>> {
        let (done, answer) = oneshot::channel();
        let lookup = Lookup {
            client_id: client_id.to_owned(),
            done,
        };
        self.queue.send(lookup).ok()?;
        Some(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the client reader stopped".to_owned(),
            ))
        }))
    }
}

/// Answers every look-up of `batch` from one statement.
async fn read_batch(pool: PgPool, deadline: Duration, mut batch: Vec<Lookup>) {
    let mut ids: Vec<&str> = batch.iter().map(|l| l.client_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match read(&pool, deadline, &ids).await {
        Ok(found) => {
            for lookup in batch {
                let client = found.get(lookup.client_id.as_str()).cloned();
                let _ = lookup.done.send(Ok(client));
            }
        }
        // The database cannot be reached: asking again per caller would only wait again.
        Err(StoreError::Unavailable(why)) => {
            for lookup in batch {
                let _ = lookup.done.send(Err(StoreError::Unavailable(why.clone())));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(lookup) = batch.pop() {
                let _ = lookup.done.send(Err(e));
            }
        }
        // A failed statement is retried per caller, so each gets the outcome of its own.
        Err(_) => {
            for lookup in batch {
                let outcome = read(&pool, deadline, &[lookup.client_id.as_str()])
                    .await
                    .map(|mut found| found.remove(lookup.client_id.as_str()));
                let _ = lookup.done.send(outcome);
            }
        }
    }
}

/// One statement for every client the batch names, keyed by public id.
async fn read(
    pool: &PgPool,
    deadline: Duration,
    ids: &[&str],
) -> Result<HashMap<String, ClientAccess>, StoreError> {
    let statement = sqlx::query_as(concat!(
        client_access_from!(),
        " WHERE client_id = ANY($1) AND deleted_at IS NULL"
    ))
    .bind(ids)
    .fetch_all(pool);
    let rows: Vec<ClientAccessRow> = crate::within_deadline(deadline, statement).await?;
    Ok(rows
        .into_iter()
        .map(ClientAccessRow::into_access)
        .map(|a| (a.client.client_id.clone(), a))
        .collect())
}
