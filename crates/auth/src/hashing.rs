//! The bounded pool that runs Argon2: at most `workers` hashes at once (each holds its memory
//! cost), at most `queue` sign-ins waiting for one; beyond that a sign-in is refused at once
//! (503 with `Retry-After`) instead of piling up tasks and memory. The pool also owns Argon2's
//! working memory, one per worker at most, allocated on first use and reused from then on: an
//! allocation of the memory cost per sign-in costs page faults and, freed, fragments the heap
//! (resident memory then grows with traffic instead of staying at workers × memory cost).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentrusty_password::WorkingMemory;
use tokio::sync::Semaphore;

/// The pool is full: the caller answers 503 and the client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturated;

pub struct HashPool {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    /// Working memory not in use right now (never more than `workers`).
    memories: Arc<Mutex<Vec<WorkingMemory>>>,
}

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            running: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue,
            memories: Arc::new(Mutex::new(Vec::with_capacity(workers))),
        }
    }

    /// Runs `work` on a blocking thread once a worker is free, with a working memory, or
    /// refuses when `queue` callers are already waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WorkingMemory) -> T + Send + 'static,
    ) -> Result<T, Saturated> {
        let _gauge = opentrusty_web::metrics::hashing();
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Saturated);
                }
                let acquired = self.running.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                acquired.map_err(|_| Saturated)?
            }
        };
        let memories = self.memories.clone();
        tokio::task::spawn_blocking(move || {
            let taken = memories.lock().map(|mut m| m.pop()).ok().flatten();
            let mut memory = taken.unwrap_or_default();
            let result = work(&mut memory);
            if let Ok(mut free) = memories.lock() {
                free.push(memory);
            }
            drop(permit);
            result
        })
        .await
        .map_err(|_| Saturated)
    }

    /// Bytes of working memory held while no hash runs.
    #[cfg(test)]
    pub fn idle_memory(&self) -> usize {
        self.memories
            .lock()
            .map(|m| m.iter().map(WorkingMemory::size).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let pool = Arc::new(HashPool::new(1, 2));
        let slow = |_: &mut WorkingMemory| std::thread::sleep(Duration::from_millis(300));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move { pool.run(slow).await }));
        }
        let mut done = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => done += 1,
                Err(Saturated) => refused += 1,
            }
        }
        // One running and two waiting at most; the rest refused.
        assert_eq!(done, 3);
        assert_eq!(refused, 7);
        assert!(pool.run(|_| 7).await == Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn working_memory_is_reused_and_bounded_by_the_workers() {
        use opentrusty_password::{HashParams, PasswordHasher};
        let hasher = PasswordHasher::new(HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let phc = hasher.hash("a password of some length");
        let pool = Arc::new(HashPool::new(2, 64));
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let (pool, hasher, phc) = (pool.clone(), hasher.clone(), phc.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move |memory| {
                    let grown_before = memory.size();
                    let v = hasher.verify_in("a password of some length", &phc, memory);
                    (grown_before, v)
                })
                .await
                .unwrap()
            }));
        }
        let mut reused = 0;
        for t in tasks {
            let (grown_before, v) = t.await.unwrap();
            assert!(matches!(v, opentrusty_password::Verification::Match { .. }));
            if grown_before == 1024 * 1024 {
                reused += 1;
            }
        }
        assert!(reused >= 38, "memory reused {reused} times out of 40");
        assert_eq!(pool.idle_memory(), 2 * 1024 * 1024, "one memory per worker");
    }
}
