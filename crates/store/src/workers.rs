//! The queue and worker tasks behind the store's shared statements (group commit, shared client
//! look-ups): callers queue their item, and each worker takes whatever is waiting, up to a
//! limit, and answers it with one statement.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

/// Starts `workers` tasks on the current runtime, each taking up to `max_batch` waiting items
/// at a time and handing them to `work`; they stop when every sender is gone.
pub(crate) fn start<T, F, Fut>(
    workers: usize,
    max_batch: usize,
    work: F,
) -> mpsc::UnboundedSender<T>
where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (queue, receiver) = mpsc::unbounded_channel();
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..workers {
        let (receiver, work) = (receiver.clone(), work.clone());
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                {
                    let mut queue = receiver.lock().await;
                    if queue.recv_many(&mut batch, max_batch).await == 0 {
                        return;
                    }
                }
                work(batch).await;
            }
        });
    }
    queue
}
