//! Group commit on PostgreSQL: writes of one kind that arrive at the same moment (client-
//! credentials tokens here, code redemptions and refresh rotations in `grant_writes.rs`) are
//! made by one statement, and each caller is answered only after that statement committed, with
//! the outcome of its own row, so nothing is handed out that is not recorded and audited. A
//! batch the database refused is retried one write at a time, so one bad row (a client deleted
//! a moment ago) fails only its own request.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentrusty_core::audit::{AuditEvent, Origin, action};
use opentrusty_core::{Timestamp, now};
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::StoreError;
use crate::postgres::grant_writes::{RedeemWrite, RotateWrite};
use crate::tokens::{NewAccessToken, PgQuery, client_token_event, issue_event};

/// Most writes one statement makes; more waiting callers go into the next batch.
const MAX_BATCH: usize = 64;
/// Batches of one kind in flight at once. One: the writes that arrive while a batch is being
/// committed wait for it and go together into the next. A second writer would take each write
/// as it arrives while the first is busy, and PostgreSQL's cost per write is mostly per
/// statement (docs/benchmarks.md, sixth round).
const WRITERS: usize = 1;

/// A kind of write that many callers' rows can share one statement.
pub(crate) trait GroupWrite: Send + Sync + Sized + 'static {
    /// Makes every write of `batch` with one statement; for each, in order, whether it was made
    /// (`false`: its condition did not hold, e.g. the code was claimed already).
    fn write_all<'a>(
        pool: &'a WritePool,
        batch: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send + 'a;
}

struct Pending<W> {
    write: W,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The queue in front of one kind's writer.
pub(crate) struct GroupCommit<W> {
    queue: mpsc::UnboundedSender<Pending<W>>,
}

impl<W: GroupWrite> GroupCommit<W> {
    /// Starts the writer on the current runtime.
    fn start(pool: WritePool) -> GroupCommit<W> {
        let queue =
            crate::workers::start(WRITERS, MAX_BATCH, move |batch| commit(pool.clone(), batch));
        GroupCommit { queue }
    }
}

/// The group commits of a PostgreSQL store; cheap to clone with it.
pub(crate) struct GroupCommits {
    pub(crate) tokens: GroupCommit<TokenWrite>,
    pub(crate) client_tokens: GroupCommit<ClientTokenWrite>,
    pub(crate) redemptions: GroupCommit<RedeemWrite>,
    pub(crate) rotations: GroupCommit<RotateWrite>,
}

impl GroupCommits {
    /// Starts every writer on the current runtime.
    pub(crate) fn start(pool: &PgPool, statement_deadline: Duration) -> Arc<GroupCommits> {
        let pool = WritePool::new(pool, statement_deadline);
        Arc::new(GroupCommits {
            tokens: GroupCommit::start(pool.clone()),
            client_tokens: GroupCommit::start(pool.clone()),
            redemptions: GroupCommit::start(pool.clone()),
            rotations: GroupCommit::start(pool.clone()),
        })
    }
}

/// Makes `write` through `group`, or by itself when there is none or its writer is gone (its
/// runtime ended). Whether it was made. A writer that stops after taking the write cannot say
/// whether it was committed: that is answered as unavailable (the client retries) rather than
/// written a second time.
pub(crate) async fn write<W: GroupWrite>(
    pool: &PgPool,
    statement_deadline: Duration,
    group: Option<&GroupCommit<W>>,
    write: W,
) -> Result<bool, StoreError> {
    let write = match group {
        Some(group) => {
            let (done, answer) = oneshot::channel();
            match group.queue.send(Pending { write, done }) {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(StoreError::InDoubt("the writer stopped".to_owned()))
                    });
                }
                Err(mpsc::error::SendError(back)) => back.write,
            }
        }
        None => write,
    };
    write_alone(&WritePool::new(pool, statement_deadline), &write).await
}

/// Makes `write` with a statement of its own. Whether it was made.
async fn write_alone<W: GroupWrite>(pool: &WritePool, write: &W) -> Result<bool, StoreError> {
    Ok(W::write_all(pool, &[write]).await?.first() == Some(&true))
}

/// Makes `batch` with one statement, or write by write when the database refused it. When the
/// database could not be reached the outcome is unknown, and every caller is told so rather
/// than written again.
async fn commit<W: GroupWrite>(pool: WritePool, batch: Vec<Pending<W>>) {
    let writes: Vec<&W> = batch.iter().map(|p| &p.write).collect();
    match W::write_all(&pool, &writes).await {
        Ok(made) => {
            for (pending, made) in batch.into_iter().zip(made) {
                let _ = pending.done.send(Ok(made));
            }
        }
        Err(StoreError::Unavailable(why)) => {
            for pending in batch {
                let _ = pending.done.send(Err(StoreError::Unavailable(why.clone())));
            }
        }
        Err(StoreError::InDoubt(why)) => {
            for pending in batch {
                let _ = pending.done.send(Err(StoreError::InDoubt(why.clone())));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(pending) = batch.into_iter().next() {
                let _ = pending.done.send(Err(e));
            }
        }
        Err(_) => {
            for pending in batch {
                let outcome = write_alone(&pool, &pending.write).await;
                let _ = pending.done.send(outcome);
            }
        }
    }
}

/// The audit rows of a statement's writes as arrays, typed for `UNNEST(..)`, in the order of
/// `audit_columns!` (named by `audit_parameters("event")`; [`SharedColumns`] binds them).
macro_rules! audit_arrays {
    () => {
        ":event_id::uuid[], :event_occurred_at::timestamptz[], :event_tenant_id::uuid[], \
         :event_actor_kind::text[], :event_actor_id::uuid[], :event_action::text[], \
         :event_target_kind::text[], :event_target_id::text[], :event_ip::text[], \
         :event_user_agent::text[], :event_request_id::text[], :event_metadata::jsonb[]"
    };
}
pub(crate) use audit_arrays;

/// The access tokens of a statement's writes as arrays, typed for `UNNEST(..)` (jti,
/// token_hash, tenant_id, client_id, user_id, scope, expires_at: [`TOKEN_PARAMETERS`];
/// [`SharedColumns`] binds them).
macro_rules! access_arrays {
    () => {
        ":token_jti::uuid[], :token_hash::bytea[], :token_tenant::uuid[], \
         :token_client::uuid[], :token_user::uuid[], :token_scope::text[], \
         :token_expires::timestamptz[]"
    };
}
pub(crate) use access_arrays;

/// The access token's parameters [`SharedColumns::query`] binds after the audit row's.
const TOKEN_PARAMETERS: [&str; 7] = [
    "token_jti",
    "token_hash",
    "token_tenant",
    "token_client",
    "token_user",
    "token_scope",
    "token_expires",
];

/// A group-commit statement: the parameters [`SharedColumns::query`] binds (the audit row's,
/// then the access token's), then `own`, numbered in that order.
pub(crate) fn group_statement(own: &[&str], template: &str) -> String {
    let names = [
        crate::audit::audit_parameters("event"),
        crate::sql::owned(&TOKEN_PARAMETERS),
        crate::sql::owned(own),
    ]
    .concat();
    crate::sql::statement_of(&names, template)
}

/// What every group-commit statement writes for each of its writes, an audit row and an access
/// token, as arrays (`audit_arrays!`, `access_arrays!`).
#[derive(Default)]
pub(crate) struct SharedColumns<'a> {
    id: Vec<Uuid>,
    occurred: Vec<Timestamp>,
    event_tenant: Vec<Option<Uuid>>,
    actor_kind: Vec<&'a str>,
    actor_id: Vec<Option<Uuid>>,
    action: Vec<&'a str>,
    target_kind: Vec<Option<&'a str>>,
    target_id: Vec<Option<&'a str>>,
    ip: Vec<Option<&'a str>>,
    user_agent: Vec<Option<&'a str>>,
    request_id: Vec<Option<&'a str>>,
    metadata: Vec<Json<&'a serde_json::Value>>,
    jti: Vec<Uuid>,
    digest: Vec<Option<Vec<u8>>>,
    tenant: Vec<Uuid>,
    client: Vec<Uuid>,
    user: Vec<Option<Uuid>>,
    scope: Vec<&'a str>,
    expires: Vec<Timestamp>,
}

/// The columns of the writes' audit rows and access tokens, in order:
/// `batch.iter().map(|w| (&w.event, &w.access)).collect()`.
impl<'a> FromIterator<(&'a AuditEvent, &'a NewAccessToken)> for SharedColumns<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a AuditEvent, &'a NewAccessToken)>>(rows: I) -> Self {
        let mut columns = SharedColumns::default();
        for (event, access) in rows {
            columns.push(event, access);
        }
        columns
    }
}

impl<'a> SharedColumns<'a> {
    fn push(&mut self, event: &'a AuditEvent, access: &'a NewAccessToken) {
        self.id.push(event.id.0);
        self.occurred.push(event.occurred_at);
        self.event_tenant.push(event.tenant_id.map(|t| t.0));
        self.actor_kind.push(event.actor.kind());
        self.actor_id.push(event.actor.id());
        self.action.push(event.action.as_str());
        self.target_kind
            .push(event.target.as_ref().map(|t| t.kind.as_str()));
        self.target_id
            .push(event.target.as_ref().map(|t| t.id.as_str()));
        self.ip.push(event.ip.as_deref());
        self.user_agent.push(event.user_agent.as_deref());
        self.request_id.push(event.request_id.as_deref());
        self.metadata.push(Json(&event.metadata));
        self.jti.push(access.jti);
        self.digest.push(access.token_digest.map(|d| d.to_vec()));
        self.tenant.push(access.tenant_id.0);
        self.client.push(access.client_id.0);
        self.user.push(access.user_id.map(|u| u.0));
        self.scope.push(access.scope.as_str());
        self.expires.push(access.expires_at);
    }

    /// `sql` with these columns bound first (see [`group_statement`]); its own parameters
    /// follow.
    pub(crate) fn query(self, sql: &'static str) -> PgQuery<'a> {
        sqlx::query(sql)
            .bind(self.id)
            .bind(self.occurred)
            .bind(self.event_tenant)
            .bind(self.actor_kind)
            .bind(self.actor_id)
            .bind(self.action)
            .bind(self.target_kind)
            .bind(self.target_id)
            .bind(self.ip)
            .bind(self.user_agent)
            .bind(self.request_id)
            .bind(self.metadata)
            .bind(self.jti)
            .bind(self.digest)
            .bind(self.tenant)
            .bind(self.client)
            .bind(self.user)
            .bind(self.scope)
            .bind(self.expires)
    }
}

/// How long a write statement may go unanswered before its connection is taken for dead (a
/// network cut leaves no error to wait for) and its outcome for unknown; shorter if the store's
/// statement deadline is.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The pool group-committed writes go through, with their deadline.
#[derive(Clone)]
pub(crate) struct WritePool {
    pool: PgPool,
    deadline: Duration,
}

impl WritePool {
    pub(crate) fn new(pool: &PgPool, statement_deadline: Duration) -> WritePool {
        WritePool {
            pool: pool.clone(),
            deadline: WRITE_DEADLINE.min(statement_deadline),
        }
    }
}

/// The first column of every row the write `q` answers: which rows it wrote. A connection that
/// breaks or goes silent once the statement is on it leaves the outcome unknown
/// ([`StoreError::InDoubt`]); one that could not be had means nothing was sent.
pub(crate) async fn first_column<T>(q: PgQuery<'_>, pool: &WritePool) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let mut conn = pool.pool.acquire().await?;
    let rows = match tokio::time::timeout(pool.deadline, q.fetch_all(&mut *conn)).await {
        Ok(answer) => answer.map_err(StoreError::of_sent_write)?,
        Err(_) => {
            conn.close_on_drop();
            return Err(StoreError::InDoubt(format!(
                "no answer within {} s",
                pool.deadline.as_secs_f64()
            )));
        }
    };
    let column = rows.iter().map(|row| sqlx::Row::try_get(row, 0));
    Ok(column.collect::<Result<_, _>>()?)
}

/// An access token for the group commit, with its audit row.
pub(crate) struct TokenWrite {
    pub(crate) access: NewAccessToken,
    pub(crate) event: AuditEvent,
    pub(crate) created_at: Timestamp,
}

impl TokenWrite {
    /// `access` issued now, with its audit row.
    pub(crate) fn new(access: &NewAccessToken, origin: &Origin) -> Self {
        TokenWrite {
            access: access.clone(),
            event: issue_event(access, None, action::TOKEN_ISSUED, origin),
            created_at: now(),
        }
    }
}

/// The statement of [`TokenWrite::write_all`].
pub(crate) static TOKEN_WRITES: LazyLock<String> = LazyLock::new(|| {
    group_statement(
        &["created_at"],
        concat!(
            "WITH token AS (INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, \
         user_id, scope, expires_at, created_at) \
         SELECT jti, token_hash, tenant_id, client_id, user_id, scope, expires_at, \
         created_at FROM UNNEST(",
            access_arrays!(),
            ", :created_at::timestamptz[]) \
         AS n (jti, token_hash, tenant_id, client_id, user_id, scope, expires_at, \
         created_at) RETURNING jti), \
         audit AS (INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 FROM UNNEST(",
            audit_arrays!(),
            ", :token_jti::uuid[]) AS e (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, \
         jti) WHERE e.jti IN (SELECT jti FROM token)) \
         SELECT jti FROM token"
        ),
    )
});

impl GroupWrite for TokenWrite {
    /// The tokens, then their audit rows.
    async fn write_all(pool: &WritePool, batch: &[&TokenWrite]) -> Result<Vec<bool>, StoreError> {
        let shared: SharedColumns = batch.iter().map(|w| (&w.event, &w.access)).collect();
        let created: Vec<Timestamp> = batch.iter().map(|w| w.created_at).collect();
        let q = shared.query(&TOKEN_WRITES).bind(created);
        let written: Vec<Uuid> = first_column(q, pool).await?;
        Ok(batch
            .iter()
            .map(|w| written.contains(&w.access.jti))
            .collect())
    }
}

/// A client-credentials token for the group commit, recorded by its audit row alone
/// (`client_token_event`, docs/storage.md). It is written only while its client is still at
/// `revision`, active and in an active tenant: the token was decided on that revision,
/// possibly of a remembered client (`client_cache.rs`).
pub(crate) struct ClientTokenWrite {
    pub(crate) access: NewAccessToken,
    pub(crate) revision: i64,
    pub(crate) event: AuditEvent,
}

impl ClientTokenWrite {
    /// `access` issued now to a client decided on at `revision`.
    pub(crate) fn new(access: &NewAccessToken, revision: i64, origin: &Origin) -> Self {
        ClientTokenWrite {
            access: access.clone(),
            revision,
            event: client_token_event(access, origin),
        }
    }
}

/// The statement of [`ClientTokenWrite::write_all`].
pub(crate) static CLIENT_TOKEN_WRITES: LazyLock<String> = LazyLock::new(|| {
    group_statement(
        &["revision"],
        concat!(
            "INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ", token_hash, token_expires_at) \
         SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, token_hash, \
         expires_at FROM UNNEST(",
            audit_arrays!(),
            ", ",
            access_arrays!(),
            ", :revision::int8[]) AS e (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, jti, \
         token_hash, tenant_id, client_id, user_id, scope, expires_at, revision) \
         WHERE ",
            crate::tokens::client_at_revision!("e.client_id", "e.tenant_id", "e.revision"),
            " RETURNING id"
        ),
    )
});

impl GroupWrite for ClientTokenWrite {
    /// The audit rows, each with its token's digest and expiry, of the clients still as decided.
    async fn write_all(
        pool: &WritePool,
        batch: &[&ClientTokenWrite],
    ) -> Result<Vec<bool>, StoreError> {
        let shared: SharedColumns = batch.iter().map(|w| (&w.event, &w.access)).collect();
        let revision: Vec<i64> = batch.iter().map(|w| w.revision).collect();
        let q = shared.query(&CLIENT_TOKEN_WRITES).bind(revision);
        // The audit row's id is the token's jti (`client_token_event`).
        let written: Vec<Uuid> = first_column(q, pool).await?;
        Ok(batch
            .iter()
            .map(|w| written.contains(&w.access.jti))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! The group commit's answer to a failed batch, on writes of a kind made for the test: which
    //! statements it sends and what each caller is told. (The statements themselves are tested
    //! against PostgreSQL by the conformance suite.)

    use std::sync::{Arc, Mutex};

    use super::*;

    /// A write that the "database" refuses with `error` whenever it is in the statement.
    struct Probe {
        id: usize,
        error: Option<fn() -> StoreError>,
        statements: Arc<Mutex<Vec<Vec<usize>>>>,
    }

    impl GroupWrite for Probe {
        async fn write_all(_: &WritePool, batch: &[&Probe]) -> Result<Vec<bool>, StoreError> {
            let ids = batch.iter().map(|p| p.id).collect();
            batch[0].statements.lock().unwrap().push(ids);
            match batch.iter().find_map(|p| p.error) {
                Some(error) => Err(error()),
                None => Ok(vec![true; batch.len()]),
            }
        }
    }

    /// Commits three writes, the second failing with `error`, as one batch; the statements sent
    /// and each caller's answer.
    async fn commit_three(
        error: fn() -> StoreError,
    ) -> (Vec<Vec<usize>>, Vec<Result<bool, StoreError>>) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://127.0.0.1:1/never-used")
            .unwrap();
        let statements = Arc::new(Mutex::new(Vec::new()));
        let (mut batch, mut answers) = (Vec::new(), Vec::new());
        for id in 0..3 {
            let (done, answer) = oneshot::channel();
            let error = (id == 1).then_some(error);
            let statements = statements.clone();
            let write = Probe {
                id,
                error,
                statements,
            };
            batch.push(Pending { write, done });
            answers.push(answer);
        }
        commit(WritePool::new(&pool, WRITE_DEADLINE), batch).await;
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        let sent = statements.lock().unwrap().clone();
        (sent, outcomes)
    }

    #[tokio::test]
    async fn a_batch_the_database_refused_is_retried_write_by_write() {
        let (sent, outcomes) = commit_three(|| StoreError::Conflict("a row is refused")).await;
        assert_eq!(sent, vec![vec![0, 1, 2], vec![0], vec![1], vec![2]]);
        assert!(matches!(outcomes[0], Ok(true)));
        assert!(matches!(outcomes[1], Err(StoreError::Conflict(_))));
        assert!(matches!(outcomes[2], Ok(true)));
    }

    #[tokio::test]
    async fn a_batch_whose_outcome_is_unknown_is_never_sent_again() {
        let (sent, outcomes) =
            commit_three(|| StoreError::Unavailable("connection reset".to_owned())).await;
        assert_eq!(sent, vec![vec![0, 1, 2]]);
        for outcome in outcomes {
            assert!(
                matches!(outcome, Err(StoreError::Unavailable(_))),
                "{outcome:?}"
            );
        }
    }
}
