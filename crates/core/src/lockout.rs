//! Sign-in lockout: after `threshold` failed passwords within `window`, an account is locked for
//! `duration`. The counter restarts after the window, after a lock expires, and after a success.
//! The state lives in the user's row, so every process sees the same counter.

use crate::Timestamp;

/// How many failures lock an account, within what window, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// 0 turns lockout off.
    pub threshold: u32,
    pub window_secs: i64,
    pub duration_secs: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            window_secs: 15 * 60,
            duration_secs: 15 * 60,
        }
    }
}

/// The lockout columns of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCount {
    pub count: i32,
    pub since: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
}

/// Whether a lock is in force at `now`.
pub fn is_locked(locked_until: Option<Timestamp>, now: Timestamp) -> bool {
    locked_until.is_some_and(|t| t > now)
}

/// The state after one more failed password at `now`, and whether this failure locked the
/// account. While a lock is in force nothing changes (a locked account cannot be locked longer by
/// guessing on).
pub fn after_failure(
    state: FailureCount,
    now: Timestamp,
    policy: &LockoutPolicy,
) -> (FailureCount, bool) {
    if is_locked(state.locked_until, now) {
        return (state, false);
    }
    let window_start = now - time::Duration::seconds(policy.window_secs);
    let restart = state.locked_until.is_some() || state.since.is_none_or(|s| s <= window_start);
    let mut next = if restart {
        FailureCount {
            count: 1,
            since: Some(now),
            locked_until: None,
        }
    } else {
        FailureCount {
            count: state.count.saturating_add(1),
            ..state
        }
    };
    let lock =
        policy.threshold > 0 && next.count >= i32::try_from(policy.threshold).unwrap_or(i32::MAX);
    if lock {
        next.locked_until = Some(now + time::Duration::seconds(policy.duration_secs));
    }
    (next, lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + secs)
    }

    #[test]
    fn the_threshold_locks_for_the_duration_then_the_count_restarts() {
        let p = LockoutPolicy::default();
        let mut s = FailureCount::default();
        for n in 1..=4 {
            let (next, locked) = after_failure(s, at(n), &p);
            assert!(!locked);
            assert_eq!(next.count, n as i32);
            s = next;
        }
        let (s, locked) = after_failure(s, at(5), &p);
        assert!(locked);
        assert!(is_locked(s.locked_until, at(6)));
        // Guessing on while locked changes nothing.
        let (same, locked) = after_failure(s, at(100), &p);
        assert_eq!((same, locked), (s, false));
        // After the lock, the next failure starts a new count.
        let after = at(5 + p.duration_secs + 1);
        assert!(!is_locked(s.locked_until, after));
        let (s, locked) = after_failure(s, after, &p);
        assert_eq!((s.count, s.locked_until, locked), (1, None, false));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up_and_zero_turns_it_off() {
        let p = LockoutPolicy::default();
        let mut s = FailureCount::default();
        for n in 0..10 {
            let (next, locked) = after_failure(s, at(n * (p.window_secs / 2 + 1)), &p);
            assert!(!locked, "failure {n}");
            s = next;
        }
        let off = LockoutPolicy { threshold: 0, ..p };
        let mut s = FailureCount::default();
        for n in 0..50 {
            let (next, locked) = after_failure(s, at(n), &off);
            assert!(!locked);
            s = next;
        }
    }
}
