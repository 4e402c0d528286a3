//! The bounded pool that runs Argon2: at most `workers` hashes at once (each holds its memory
//! cost), at most `queue` sign-ins waiting for one; beyond that a sign-in is refused at once
//! (503 with `Retry-After`) instead of piling up tasks and memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// The pool is full: the caller answers 503 and the client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturated;

pub struct HashPool {
    running: std::sync::Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> Self {
        Self {
            running: std::sync::Arc::new(Semaphore::new(workers.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    /// Runs `work` on a blocking thread once a worker is free, or refuses when `queue` callers
    /// are already waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
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
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|_| Saturated)
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
        let slow = || std::thread::sleep(Duration::from_millis(300));
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
        assert!(pool.run(|| 7).await == Ok(7));
    }
}
