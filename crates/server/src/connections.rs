//! Serving one listener's connections: HTTP/1.1 where a request head (and then its body) must
//! arrive within the header-read timeout, a keep-alive connection with nothing in flight closes
//! after the keep-alive timeout, at most a set number of connections are open at once, and
//! shutdown drains what is in flight.
//!
//! At the cap nothing more is accepted (new connections wait in the kernel's backlog, holding no
//! descriptor of ours) and room is made by closing idle keep-alive connections and the heads
//! waited on longest: a client holding many half-sent requests keeps nobody out for long.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Bytes, Frame, Incoming, SizeHint};
use hyper::rt::{Sleep, Timer};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

/// How long requests may take to arrive and how many connections one listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must arrive within this of its first byte (of the connection, for the
    /// first request); its body, within this of the head.
    pub header_read_timeout: Duration,
    /// A keep-alive connection waiting for its next request closes after this.
    pub keep_alive_timeout: Duration,
    /// Connections open at once on one listener.
    pub max_connections: usize,
}

/// How long a head may have been arriving before it may be closed to make room at the cap: an
/// eighth of the header-read timeout, between 100 ms and a second. Heads normally arrive within
/// a round trip of the connection, so only a client that holds connections loses them, and a
/// newcomer waits at most about this long per cap's worth of them queued before it.
fn head_grace(header_read_timeout: Duration) -> Duration {
    (header_read_timeout / 8).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// How often the acceptor looks for room again while the cap is reached and nothing can go.
const ROOM_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` fires (its sender is dropped), then stops accepting,
/// closes connections waiting for a request, lets in-flight requests finish and returns once
/// every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<()>,
) {
    let listener_state = Arc::new(Listener {
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        limits,
    });
    loop {
        let permit = tokio::select! {
            permit = listener_state.room() => permit,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: the cap is set too high for this host.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ROOM_RETRY).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        tokio::spawn(connection(
            listener_state.clone(),
            permit,
            stream,
            peer,
            app.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    // Each connection holds a permit until it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = listener_state.permits.acquire_many(all).await;
}

/// Connections the kernel completes and queues while the cap is reached; beyond them a
/// client's connection attempts are dropped and retried after a second or more.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog deep enough to hold newcomers while the cap is reached.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Errors of one connection that arrived and went before it was accepted.
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

async fn stopped(stop: &mut watch::Receiver<()>) {
    // Only the sender's drop ends this; a value sent would be a spurious wake-up.
    while stop.changed().await.is_ok() {}
}

/// What a listener knows about its open connections.
struct Listener {
    permits: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Clock>>>,
    next_id: AtomicU64,
    limits: ConnectionLimits,
}

impl Listener {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Clock>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free place for one more connection, closing others to make one at the cap.
    async fn room(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return permit;
            }
            self.make_room(Instant::now());
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    if let Ok(permit) = permit {
                        return permit;
                    }
                }
                () = tokio::time::sleep(ROOM_RETRY) => {}
            }
        }
    }

    /// Closes a batch of connections that serve nobody: idle keep-alive connections first, then
    /// the heads waited on longest (past [`head_grace`]). A batch, so that one scan of the open
    /// connections pays for many accepts.
    fn make_room(&self, now: Instant) {
        let grace = head_grace(self.limits.header_read_timeout);
        let mut idle = Vec::new();
        let mut slow = Vec::new();
        for clock in self.open().values() {
            match clock.phase() {
                Phase::AwaitingHead {
                    first_byte: None, ..
                } => idle.push(clock.clone()),
                Phase::AwaitingHead {
                    first_byte: Some(at),
                    ..
                } if now.saturating_duration_since(at) >= grace => slow.push((at, clock.clone())),
                _ => {}
            }
        }
        slow.sort_by_key(|(at, _)| *at);
        let batch = (self.limits.max_connections / 16).max(1);
        for clock in idle
            .into_iter()
            .chain(slow.into_iter().map(|(_, clock)| clock))
            .take(batch)
        {
            clock.evicted.notify_one();
        }
    }
}

/// Where a connection is in its request cycle, as the deadlines and the cap see it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since `since`; `first_byte` is when it began to arrive (the
    /// accept, for a connection's first request). Without one the connection is idle.
    AwaitingHead {
        since: Instant,
        first_byte: Option<Instant>,
    },
    /// A request is being read or answered.
    Serving,
}

/// One connection's phase, shared by its socket, its timer and its service.
struct Clock {
    phase: Mutex<Phase>,
    limits: ConnectionLimits,
    evicted: Notify,
}

impl Clock {
    fn new(limits: ConnectionLimits, accepted: Instant) -> Clock {
        Clock {
            phase: Mutex::new(Phase::AwaitingHead {
                since: accepted,
                first_byte: Some(accepted),
            }),
            limits,
            evicted: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn phase(&self) -> Phase {
        *self.lock()
    }

    /// hyper starts waiting for the next request head.
    fn head_awaited(&self, now: Instant) {
        let mut phase = self.lock();
        if let Phase::Serving = *phase {
            *phase = Phase::AwaitingHead {
                since: now,
                first_byte: None,
            };
        }
    }

    fn bytes_arrived(&self, now: Instant) {
        if let Phase::AwaitingHead { first_byte, .. } = &mut *self.lock()
            && first_byte.is_none()
        {
            *first_byte = Some(now);
        }
    }

    fn request_started(&self) {
        *self.lock() = Phase::Serving;
    }

    /// When the connection closes unless the awaited head has arrived.
    fn deadline(&self) -> Option<Instant> {
        match self.phase() {
            Phase::AwaitingHead {
                first_byte: Some(at),
                ..
            } => Some(at + self.limits.header_read_timeout),
            Phase::AwaitingHead {
                since,
                first_byte: None,
            } => Some(since + self.limits.keep_alive_timeout),
            Phase::Serving => None,
        }
    }
}

/// hyper's header-read timer, stretched to the keep-alive timeout while no byte of the next
/// request has arrived: hyper arms it as soon as a response is out, so on its own it would
/// close idle keep-alive connections after the header-read timeout.
#[derive(Clone)]
struct HeadTimer(Arc<Clock>);

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.0.head_awaited(Instant::now());
        let first = self.0.deadline().unwrap_or_else(Instant::now);
        Box::pin(HeadDeadline {
            clock: self.0.clone(),
            sleep: Box::pin(tokio::time::sleep_until(first.into())),
        })
    }
}

struct HeadDeadline {
    clock: Arc<Clock>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadDeadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this only while it waits for a head, after each read.
        let Some(deadline) = self.clock.deadline() else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadDeadline {}

/// The socket, telling the clock when bytes arrive.
struct ClockedIo {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for ClockedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived(Instant::now());
        }
        read
    }
}

impl AsyncWrite for ClockedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that fails once its deadline passes, so a stalled upload cannot hold a
/// connection (and a handler) either.
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err("the request body did not arrive in time".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Takes a connection off the listener's books when it closes.
struct Open {
    listener: Arc<Listener>,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.listener.open().remove(&self.id);
    }
}

async fn connection(
    listener: Arc<Listener>,
    permit: OwnedSemaphorePermit,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stop: watch::Receiver<()>,
) {
    let limits = listener.limits;
    let clock = Arc::new(Clock::new(limits, Instant::now()));
    let id = listener.next_id.fetch_add(1, Ordering::Relaxed);
    listener.open().insert(id, clock.clone());
    let _open = Open {
        listener,
        id,
        _permit: permit,
    };
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            clock.request_started();
            let mut request = request.map(|body| {
                if body.is_end_stream() {
                    Body::new(body)
                } else {
                    Body::new(DeadlineBody {
                        body,
                        deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
                    })
                }
            });
            // Handlers and the edge layer find the socket's address here, as with axum::serve.
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), request)
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(HeadTimer(clock.clone()))
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let io = TokioIo::new(ClockedIo {
        stream,
        clock: clock.clone(),
    });
    let mut conn = pin!(http.serve_connection(io, service));
    let mut draining = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
                return;
            }
            // A request may have begun since the listener chose this connection: it stays.
            () = clock.evicted.notified() => {
                if let Phase::AwaitingHead { .. } = clock.phase() {
                    return;
                }
            }
            () = stopped(&mut stop), if !draining => {
                draining = true;
                if let Phase::AwaitingHead { .. } = clock.phase() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The soft limit on open descriptors of this process (`None`: unlimited or unknown).
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer and reads nothing else.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}
