//! Group commit for client-credentials issuance on PostgreSQL: access tokens issued at the same
//! moment are written by one statement (the tokens and their audit rows together), and each
//! caller is answered only after that statement committed, so no token is handed out that is
//! not recorded and audited. A token decided on a remembered client is written only if that
//! client is still as it was remembered (`client_cache.rs`). A batch that fails is retried one
//! token at a time, so one bad row (a client deleted a moment ago) fails only its own request.

use std::sync::Arc;

use opentrusty_core::audit::{AuditEvent, Origin, action};
use opentrusty_core::{Timestamp, now};
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::StoreError;
use crate::tokens::{NewAccessToken, issue_event};

/// Most tokens one statement writes; more waiting callers go into the next batch.
const MAX_BATCH: usize = 64;
/// Batches in flight at once. One: the tokens that arrive while a batch is being committed
/// wait for it and go together into the next. A second writer would take each token as it
/// arrives while the first is busy, and PostgreSQL's cost per token is mostly per statement
/// (docs/benchmarks.md, sixth round).
const WRITERS: usize = 1;

/// An access token for the group commit, with its audit row. With `revision` it is written only
/// while its client is still at that revision, active and in an active tenant (a token decided
/// on a remembered client, `client_cache.rs`); without, it is written as it is.
pub(crate) struct TokenWrite {
    pub(crate) access: NewAccessToken,
    pub(crate) revision: Option<i64>,
    pub(crate) event: AuditEvent,
    pub(crate) created_at: Timestamp,
}

impl TokenWrite {
    /// `access` issued now, with its audit row.
    pub(crate) fn new(access: &NewAccessToken, revision: Option<i64>, origin: &Origin) -> Self {
        TokenWrite {
            access: access.clone(),
            revision,
            event: issue_event(access, None, action::TOKEN_ISSUED, origin),
            created_at: now(),
        }
    }
}

struct Issuance {
    write: TokenWrite,
    /// Whether the token was written.
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The queue in front of the writers; cheap to clone with the store.
pub(crate) struct IssueBatcher {
    queue: mpsc::UnboundedSender<Issuance>,
}

impl IssueBatcher {
    /// Starts the writers on the current runtime.
    pub(crate) fn start(pool: PgPool) -> Arc<IssueBatcher> {
        let queue = crate::workers::start(WRITERS, MAX_BATCH, move |batch| {
            write_batch(pool.clone(), batch)
        });
        Arc::new(IssueBatcher { queue })
    }

    /// Records `write`; `Ok(false)` when its client was no longer at the revision it names.
    /// `Err` hands the write back when the writers are gone (their runtime ended) and nothing
    /// was queued: the caller writes the token itself. A writer that stops after taking the
    /// token cannot say whether it was written: that is answered as unavailable (the client
    /// retries) rather than written a second time.
    pub(crate) async fn issue(
        &self,
        write: TokenWrite,
    ) -> Result<Result<bool, StoreError>, TokenWrite> {
        let (done, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(back)) = self.queue.send(Issuance { write, done }) {
            return Err(back.write);
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the token writer stopped".to_owned(),
            ))
        }))
    }
}

/// Writes `batch` with one statement, or token by token when that fails.
async fn write_batch(pool: PgPool, mut batch: Vec<Issuance>) {
    let writes: Vec<&TokenWrite> = batch.iter().map(|i| &i.write).collect();
    match insert(&pool, &writes).await {
        Ok(written) => {
            for issuance in batch {
                let jti = issuance.write.access.jti;
                let _ = issuance.done.send(Ok(written.contains(&jti)));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(issuance) = batch.pop() {
                let _ = issuance.done.send(Err(e));
            }
        }
        Err(_) => {
            for issuance in batch {
                let outcome = insert(&pool, &[&issuance.write])
                    .await
                    .map(|written| !written.is_empty());
                let _ = issuance.done.send(outcome);
            }
        }
    }
}

/// One statement for the whole batch: the tokens, then the audit rows of those written, from
/// arrays. Returns the jti of every token written.
pub(crate) async fn insert(pool: &PgPool, batch: &[&TokenWrite]) -> Result<Vec<Uuid>, StoreError> {
    let n = batch.len();
    let mut jti = Vec::with_capacity(n);
    let mut digest = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut client = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut scope = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut revision = Vec::with_capacity(n);
    let mut id = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut event_tenant = Vec::with_capacity(n);
    let mut actor_kind = Vec::with_capacity(n);
    let mut actor_id = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut target_kind = Vec::with_capacity(n);
    let mut target_id = Vec::with_capacity(n);
    let mut ip = Vec::with_capacity(n);
    let mut user_agent = Vec::with_capacity(n);
    let mut request_id = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    for TokenWrite {
        access,
        revision: confirm,
        event,
        created_at,
    } in batch.iter().copied()
    {
        jti.push(access.jti);
        digest.push(access.token_digest.map(|d| d.to_vec()));
        tenant.push(access.tenant_id.0);
        client.push(access.client_id.0);
        user.push(access.user_id.map(|u| u.0));
        scope.push(access.scope.as_str());
        expires.push(access.expires_at);
        created.push(*created_at);
        revision.push(*confirm);
        id.push(event.id.0);
        occurred.push(event.occurred_at);
        event_tenant.push(event.tenant_id.map(|t| t.0));
        actor_kind.push(event.actor.kind());
        actor_id.push(event.actor.id());
        action.push(event.action.as_str());
        target_kind.push(event.target.as_ref().map(|t| t.kind.as_str()));
        target_id.push(event.target.as_ref().map(|t| t.id.as_str()));
        ip.push(event.ip.as_deref());
        user_agent.push(event.user_agent.as_deref());
        request_id.push(event.request_id.as_deref());
        metadata.push(Json(&event.metadata));
    }
    let written: Vec<Uuid> = sqlx::query_scalar(concat!(
        "WITH token AS (INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, \
         user_id, scope, expires_at, created_at) \
         SELECT jti, token_hash, tenant_id, client_id, user_id, scope, expires_at, created_at \
         FROM UNNEST($1::uuid[], $2::bytea[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], \
         $7::timestamptz[], $8::timestamptz[], $21::int8[]) \
         AS n (jti, token_hash, tenant_id, client_id, user_id, scope, expires_at, created_at, \
         revision) \
         WHERE n.revision IS NULL OR ",
        crate::tokens::client_at_revision!("n.client_id", "n.tenant_id", "n.revision"),
        " RETURNING jti), \
         audit AS (INSERT INTO audit_events (",
        crate::audit::audit_columns!(),
        ") SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 \
         FROM UNNEST($9::uuid[], $10::timestamptz[], $11::uuid[], $12::text[], \
         $13::uuid[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
         $19::text[], $20::jsonb[], $1::uuid[]) \
         AS e (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, jti) \
         WHERE e.jti IN (SELECT jti FROM token)) \
         SELECT jti FROM token"
    ))
    .bind(jti)
    .bind(digest)
    .bind(tenant)
    .bind(client)
    .bind(user)
    .bind(scope)
    .bind(expires)
    .bind(created)
    .bind(id)
    .bind(occurred)
    .bind(event_tenant)
    .bind(actor_kind)
    .bind(actor_id)
    .bind(action)
    .bind(target_kind)
    .bind(target_id)
    .bind(ip)
    .bind(user_agent)
    .bind(request_id)
    .bind(metadata)
    .bind(revision)
    .fetch_all(pool)
    .await?;
    Ok(written)
}
