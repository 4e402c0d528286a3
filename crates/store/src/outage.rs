//! How a database outage reaches the log: its first failure once, then a count every
//! [`SUMMARY_EVERY`], and its end once, so an outage of minutes under load writes a handful of
//! lines rather than one per refused request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// How often an outage that goes on is summed up in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);

struct Outage {
    since: Instant,
    /// Failures since the last line about this outage.
    unreported: u64,
    total: u64,
    last_line: Instant,
}

static CURRENT: Mutex<Option<Outage>> = Mutex::new(None);

fn current() -> std::sync::MutexGuard<'static, Option<Outage>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a request refused because the database is unavailable (or cannot take writes):
/// logged at once if it starts an outage, counted otherwise.
pub fn refused(e: &StoreError) {
    let now = Instant::now();
    let mut current = current();
    match current.as_mut() {
        None => {
            *current = Some(Outage {
                since: now,
                unreported: 0,
                total: 1,
                last_line: now,
            });
            drop(current);
            if e.needs_operator() {
                tracing::error!(error = %e, "database cannot take writes; refusing writes until it can (further failures are counted)");
            } else {
                tracing::error!(error = %e, "database unavailable; answering 503 until it is back (further failures are counted)");
            }
        }
        Some(outage) => {
            outage.unreported += 1;
            outage.total += 1;
            if now.duration_since(outage.last_line) >= SUMMARY_EVERY {
                let (secs, refused) = (outage.since.elapsed().as_secs(), outage.unreported);
                outage.unreported = 0;
                outage.last_line = now;
                drop(current);
                tracing::warn!(error = %e, outage_secs = secs, refused, "database still unavailable");
            }
        }
    }
}

/// Whether an outage is going on (a request was refused and the database has not been seen
/// answering since).
pub fn ongoing() -> bool {
    current().is_some()
}

/// The database answered again: ends the outage, with one line saying how long it lasted.
pub fn answered() {
    let Some(outage) = current().take() else {
        return;
    };
    tracing::warn!(
        outage_secs = outage.since.elapsed().as_secs(),
        refused = outage.total,
        "database available again"
    );
}
