//! Spends in doubt: the connection to PostgreSQL broke (a failover, a network cut) while the
//! statement that spends a code or a refresh token was in flight, so it may or may not have
//! committed. Such a spend is settled, never written twice: delivered if it turns out committed
//! while its request still waits, undone if it committed after its request was answered, so the
//! client's retry finds its code or refresh token unspent. Each auth process publishes up to
//! when its own spends are settled (`grant_writers`); no process takes a code or refresh token
//! presented again for a replay while another may still hold that spend in doubt.
//! docs/design/in-doubt-grant-writes.md gives the reasoning.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentrusty_core::audit::{AuditEvent, Origin, Target, action};
use opentrusty_core::ids::{TenantId, TokenFamilyId};
use opentrusty_core::{Timestamp, now};
use serde_json::json;
use uuid::Uuid;

use crate::rows::DbTime;
use crate::{Db, Store, StoreError, on_pool, on_tx};

/// How long a request whose spend is in doubt waits for the database to tell the outcome
/// before it is answered 503 (the spend is then settled in the background).
const SETTLE_IN_REQUEST: Duration = Duration::from_secs(5);
/// How long a replay's verdict waits for the other processes to settle the moment it was
/// spent at, before it is answered 503 without a verdict.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(2);
/// Between two tries to reach the database while settling.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// A process not seen for this long is taken to be gone: its doubts, if any, no longer hold
/// back other processes' verdicts. Longer than any failover the documented cluster takes.
pub const WRITER_GONE_AFTER: Duration = Duration::from_secs(120);
/// How long after its last publication a process may still send a spend: a publication
/// interval, the write deadline, and room for the process's clock to run ahead of the
/// database's.
const SPEND_AFTER_SEEN: Duration = Duration::from_secs(30);
/// How often a running auth process settles its doubts and publishes its watermark.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// What a spend in doubt wrote if it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spend {
    /// The refresh token `old` spent for its successor `new`, with the access token `jti`.
    Rotation {
        old: [u8; 32],
        new: [u8; 32],
        jti: Uuid,
    },
    /// The code `code` claimed for the new family `family`.
    Redemption {
        code: [u8; 32],
        family: TokenFamilyId,
    },
}

impl Spend {
    /// The digest of the code or refresh token that was spent: what a retry presents again.
    fn spent(&self) -> &[u8; 32] {
        match self {
            Spend::Rotation { old, .. } => old,
            Spend::Redemption { code, .. } => code,
        }
    }
}

struct Doubt {
    id: u64,
    spend: Spend,
    at: Timestamp,
    /// Being settled right now (by its request or in the background).
    claimed: bool,
}

#[derive(Default)]
struct Ledger {
    next: u64,
    /// Spends sent and not yet answered, by ticket, with the time they record.
    in_flight: BTreeMap<u64, Timestamp>,
    doubts: Vec<Doubt>,
}

/// This process's spends in flight and in doubt.
pub(crate) struct Settlement {
    /// This process in `grant_writers`.
    writer: Uuid,
    started_at: Timestamp,
    ledger: Mutex<Ledger>,
}

/// A spend on its way to the database; dropped once its outcome is known.
pub(crate) struct InFlight {
    settlement: Arc<Settlement>,
    ticket: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.settlement.ledger().in_flight.remove(&self.ticket);
    }
}

/// What a replay's verdict may rest on.
pub(crate) enum Replay {
    /// No process holds the spend in doubt: a replay it is.
    Judge,
    /// The spend was this process's, committed and never delivered, and is now undone: the
    /// code or refresh token is unspent again.
    Undone,
    /// A process may still hold the spend in doubt: no verdict yet.
    Unsettled,
}

impl Settlement {
    pub(crate) fn new() -> Arc<Settlement> {
        Arc::new(Settlement {
            writer: Uuid::now_v7(),
            started_at: now(),
            ledger: Mutex::default(),
        })
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger holds plain data; a panic elsewhere leaves it consistent.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a spend recording `at` as on its way.
    pub(crate) fn send(self: &Arc<Self>, at: Timestamp) -> InFlight {
        let mut ledger = self.ledger();
        let ticket = ledger.next;
        ledger.next += 1;
        ledger.in_flight.insert(ticket, at);
        InFlight {
            settlement: self.clone(),
            ticket,
        }
    }

    /// The spend of `flight` has an unknown outcome: it stays in doubt until settled, claimed
    /// by the request that made it while that request waits for the outcome.
    fn doubt(&self, flight: InFlight, spend: Spend) -> u64 {
        let mut ledger = self.ledger();
        let at = ledger
            .in_flight
            .get(&flight.ticket)
            .copied()
            .unwrap_or_else(now);
        let id = ledger.next;
        ledger.next += 1;
        ledger.doubts.push(Doubt {
            id,
            spend,
            at,
            claimed: true,
        });
        drop(ledger);
        drop(flight);
        id
    }

    /// Every spend of this process recorded a time before this is settled.
    fn settled_until(&self) -> Timestamp {
        let ledger = self.ledger();
        let flying = ledger.in_flight.values().copied();
        let doubted = ledger.doubts.iter().map(|d| d.at);
        flying.chain(doubted).fold(now(), Timestamp::min)
    }

    fn claim_all(&self) -> Vec<(u64, Spend)> {
        let mut ledger = self.ledger();
        ledger
            .doubts
            .iter_mut()
            .filter(|d| !d.claimed)
            .map(|d| {
                d.claimed = true;
                (d.id, d.spend.clone())
            })
            .collect()
    }

    fn release(&self, id: u64) {
        if let Some(d) = self.ledger().doubts.iter_mut().find(|d| d.id == id) {
            d.claimed = false;
        }
    }

    fn settle(&self, id: u64) {
        self.ledger().doubts.retain(|d| d.id != id);
    }

    fn doubts_spend_of(&self, spent: &[u8; 32]) -> bool {
        self.ledger()
            .doubts
            .iter()
            .any(|d| d.spend.spent() == spent)
    }

    /// How many spends of this process are in doubt.
    pub(crate) fn doubts(&self) -> usize {
        self.ledger().doubts.len()
    }
}

impl Store {
    /// Takes a spend whose outcome is unknown into doubt and waits a moment for the database to
    /// tell: `Ok` when it committed (its tokens may be handed out), an unavailability error
    /// otherwise (not made, or still unknown and left to the background).
    pub(crate) async fn settle_in_request(
        &self,
        flight: InFlight,
        spend: Spend,
    ) -> Result<(), StoreError> {
        // The request holds its doubt until it has an answer or gives up: the background must
        // not undo a spend that this request is about to deliver.
        let id = self.settlement.doubt(flight, spend.clone());
        let started = std::time::Instant::now();
        loop {
            match self.spend_committed(&spend).await {
                Ok(committed) => {
                    self.settlement.settle(id);
                    if committed {
                        tracing::info!("a write interrupted by a lost connection had committed");
                        return Ok(());
                    }
                    return Err(StoreError::Unavailable(
                        "the write was interrupted before it committed; retry".to_owned(),
                    ));
                }
                Err(e) => {
                    if !e.is_unavailable() || started.elapsed() >= SETTLE_IN_REQUEST {
                        // Left to the background, which settles it once the database answers.
                        self.settlement.release(id);
                        return Err(StoreError::Unavailable(format!(
                            "the outcome of an interrupted write is not known yet: {e}"
                        )));
                    }
                }
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Settles every spend in doubt the database can tell about now: one that committed is
    /// undone (its tokens were never handed out), one that did not is forgotten. How many
    /// remain in doubt.
    pub async fn settle_doubts(&self) -> usize {
        for (id, spend) in self.settlement.claim_all() {
            let settled = match self.spend_committed(&spend).await {
                Ok(true) => self.undo_spend(&spend).await,
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            match settled {
                Ok(()) => self.settlement.settle(id),
                Err(e) => {
                    tracing::debug!(error = %e, "a write in doubt could not be settled yet");
                    self.settlement.release(id);
                }
            }
        }
        self.settlement.doubts()
    }

    /// Whether the spend's rows exist: the statement that spends writes them all or none.
    async fn spend_committed(&self, spend: &Spend) -> Result<bool, StoreError> {
        let n: i64 = match spend {
            Spend::Rotation { new, .. } => on_pool!(self, |pool| sqlx::query_scalar(
                "SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = $1"
            )
            .bind(&new[..])
            .fetch_one(pool)
            .await)?,
            Spend::Redemption { family, .. } => on_pool!(self, |pool| sqlx::query_scalar(
                "SELECT COUNT(*) FROM token_families WHERE id = $1"
            )
            .bind(family.0)
            .fetch_one(pool)
            .await)?,
        };
        Ok(n > 0)
    }

    /// Undoes a spend that committed after its request was answered: its tokens exist only in
    /// the memory of the request that was refused, so the code or refresh token goes back to
    /// unspent and what the spend issued is revoked, with an audit row saying so.
    async fn undo_spend(&self, spend: &Spend) -> Result<(), StoreError> {
        let at = DbTime(now());
        let mut tx = self.begin().await?;
        let (kind, family, tenant) = match spend {
            Spend::Rotation { old, new, jti } => {
                // Never handed out, so never presented: still unspent.
                let successor: Option<(Uuid, Uuid)> = on_tx!(tx, |c| sqlx::query_as(
                    "SELECT r.family_id, f.tenant_id FROM refresh_tokens r \
                     JOIN token_families f ON f.id = r.family_id \
                     WHERE r.token_hash = $1 AND r.rotated_at IS NULL"
                )
                .bind(&new[..])
                .fetch_optional(&mut *c)
                .await)?;
                let Some((family, tenant)) = successor else {
                    tx.rollback().await;
                    return Ok(());
                };
                on_tx!(tx, |c| sqlx::query(
                    "DELETE FROM refresh_tokens WHERE token_hash = $1"
                )
                .bind(&new[..])
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
                on_tx!(tx, |c| sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = NULL \
                     WHERE token_hash = $1 AND family_id = $2"
                )
                .bind(&old[..])
                .bind(family)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
                on_tx!(tx, |c| sqlx::query(
                    "UPDATE access_tokens SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL"
                )
                .bind(*jti)
                .bind(at)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
                ("refresh_token", family, tenant)
            }
            Spend::Redemption { code, family } => {
                let tenant: Option<Uuid> = on_tx!(tx, |c| sqlx::query_scalar(
                    "UPDATE authorization_codes SET used_at = NULL, family_id = NULL \
                     WHERE code_hash = $1 AND family_id = $2 RETURNING tenant_id"
                )
                .bind(&code[..])
                .bind(family.0)
                .fetch_optional(&mut *c)
                .await)?;
                let Some(tenant) = tenant else {
                    tx.rollback().await;
                    return Ok(());
                };
                tx.revoke_family(family.0, "undelivered", at).await?;
                ("authorization_code", family.0, tenant)
            }
        };
        tx.audit(AuditEvent::new(
            &Origin::system(),
            action::GRANT_UNDELIVERED,
            Some(TenantId(tenant)),
            Some(Target::new("token_family", family)),
            json!({ "spent": kind }),
            at.0,
        ))
        .await?;
        tx.commit().await?;
        tracing::info!(
            spent = kind,
            "a write that committed after its request was refused is undone"
        );
        Ok(())
    }

    /// Whether a code or refresh token `spent` at `spent_at` and presented again may be judged
    /// a replay now. A spend this process holds in doubt is settled first.
    pub(crate) async fn replay_verdict(
        &self,
        spent: &[u8; 32],
        spent_at: Timestamp,
    ) -> Result<Replay, StoreError> {
        if self.settlement.doubts_spend_of(spent) {
            self.settle_doubts().await;
            if self.settlement.doubts_spend_of(spent) {
                return Ok(Replay::Unsettled);
            }
            // Settled: undone, or found never made (then the code or token was spent by
            // another request, and the verdict below still holds).
            return Ok(Replay::Undone);
        }
        let Db::Postgres(pool) = &self.db else {
            return Ok(Replay::Judge);
        };
        let started = std::time::Instant::now();
        loop {
            // A process may hold this spend in doubt if it had not settled that moment when
            // last seen, and was seen shortly before it: a spend is sent no later than a
            // write deadline after its process's last publication.
            let unsettled: i64 = crate::within_deadline(
                self.statement_deadline,
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM grant_writers WHERE id <> $1 AND settled_until <= $2 \
                     AND $2 <= seen_at + make_interval(secs => $3) \
                     AND seen_at > now() - make_interval(secs => $4)",
                )
                .bind(self.settlement.writer)
                .bind(DbTime(spent_at))
                .bind(SPEND_AFTER_SEEN.as_secs_f64())
                .bind(WRITER_GONE_AFTER.as_secs_f64())
                .fetch_one(pool),
            )
            .await?;
            if unsettled == 0 {
                return Ok(Replay::Judge);
            }
            if started.elapsed() >= WAIT_FOR_OTHERS {
                return Ok(Replay::Unsettled);
            }
            tokio::time::sleep(RETRY_EVERY / 2).await;
        }
    }

    /// Publishes up to when this process's spends are settled (PostgreSQL: several processes
    /// share the database; the embedded one has no other process to tell).
    pub async fn publish_settlement(&self) -> Result<(), StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(());
        };
        let settled_until = self.settlement.settled_until();
        crate::within_deadline(
            self.statement_deadline,
            sqlx::query(
                "INSERT INTO grant_writers (id, started_at, settled_until, seen_at) \
                 VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (id) DO UPDATE SET settled_until = $3, seen_at = now()",
            )
            .bind(self.settlement.writer)
            .bind(DbTime(self.settlement.started_at))
            .bind(DbTime(settled_until))
            .execute(pool),
        )
        .await?;
        Ok(())
    }

    /// Settles what it can and, when nothing is left in doubt, removes this process from
    /// `grant_writers`; a process leaving doubts behind stays listed until it is taken for
    /// gone. Whether nothing was left in doubt.
    pub async fn retire_settlement(&self) -> bool {
        if self.settle_doubts().await > 0 {
            return false;
        }
        let Db::Postgres(pool) = &self.db else {
            return true;
        };
        let retire = sqlx::query("DELETE FROM grant_writers WHERE id = $1")
            .bind(self.settlement.writer)
            .execute(pool);
        crate::within_deadline(self.statement_deadline, retire)
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(n: u8) -> Spend {
        Spend::Rotation {
            old: [n; 32],
            new: [n + 1; 32],
            jti: Uuid::now_v7(),
        }
    }

    #[test]
    fn the_watermark_stays_at_the_oldest_spend_in_flight_or_in_doubt() {
        let settlement = Settlement::new();
        let t0 = now() - time::Duration::seconds(10);
        let t1 = t0 + time::Duration::seconds(5);
        let first = settlement.send(t0);
        let second = settlement.send(t1);
        assert_eq!(settlement.settled_until(), t0);
        // The oldest comes back answered: the watermark moves to the next.
        drop(first);
        assert_eq!(settlement.settled_until(), t1);
        // In doubt, the spend holds the watermark where it was, until it is settled.
        let id = settlement.doubt(second, rotation(1));
        assert_eq!(settlement.settled_until(), t1);
        assert!(settlement.doubts_spend_of(&[1; 32]));
        assert!(!settlement.doubts_spend_of(&[2; 32]));
        settlement.settle(id);
        assert!(settlement.settled_until() > t1);
        assert_eq!(settlement.doubts(), 0);
    }

    #[test]
    fn a_doubt_is_settled_by_one_claimant_at_a_time() {
        let settlement = Settlement::new();
        // Held by its request from the start: the background finds nothing to take until the
        // request lets it go, then takes it once.
        let id = settlement.doubt(settlement.send(now()), rotation(3));
        assert!(settlement.claim_all().is_empty());
        settlement.release(id);
        assert_eq!(settlement.claim_all().len(), 1);
        assert!(settlement.claim_all().is_empty());
    }
}
