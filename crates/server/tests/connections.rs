//! Connections of the real `serve` binary cannot be held open forever: a request head that stops
//! halfway is closed after the header-read timeout, an idle keep-alive connection after the
//! (longer) keep-alive timeout, and one client holding more stalled sockets than the process has
//! descriptors keeps `/health` from answering only briefly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use opentrusty_testkit::TestDb;
use support::{Server, free_port, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Half a request: the request line and one header, never the blank line that ends the head.
const HALF_A_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

async fn start(db: &TestDb, dir: &std::path::Path, open_files: Option<u64>) -> Server {
    let header = HEADER_READ_TIMEOUT.as_secs().to_string();
    let keep_alive = KEEP_ALIVE_TIMEOUT.as_secs().to_string();
    let mut server = Server::start_adjusted(
        dir,
        "auth",
        db.url(),
        free_port(),
        &[
            ("OPENTRUSTY_HEADER_READ_TIMEOUT", &header),
            ("OPENTRUSTY_KEEP_ALIVE_TIMEOUT", &keep_alive),
        ],
        |cmd| {
            if let Some(n) = open_files {
                // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || {
                        let limit = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
            }
        },
    );
    server.wait_healthy().await;
    server
}

/// Reads until the server closes the connection (or `within` passes): when it closed it.
async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a whole `/health` request and reads its answer on a kept-alive connection.
async fn health_on(socket: &mut TcpStream) -> String {
    socket.write_all(HEALTH).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"status\":\"pass\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_stalled_head_closes_after_the_header_timeout_and_keep_alive_lasts_longer() {
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&db, dir.path(), None).await;
    let addr = ("127.0.0.1", server.port);

    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(HALF_A_HEAD).await.unwrap();
    let sent = Instant::now();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    assert!(health_on(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();

    let closed = closed_by_server(&mut stalled, HEADER_READ_TIMEOUT * 4)
        .await
        .expect("the stalled head was never closed");
    let stalled_for = closed - sent;
    eprintln!("a stalled head was closed after {stalled_for:?}");
    assert!(
        stalled_for >= HEADER_READ_TIMEOUT - Duration::from_millis(100)
            && stalled_for <= HEADER_READ_TIMEOUT + Duration::from_millis(1500),
        "closed after {stalled_for:?}"
    );

    // Idle for longer than the header timeout: still open for the next request.
    tokio::time::sleep_until((answered + HEADER_READ_TIMEOUT + Duration::from_secs(1)).into())
        .await;
    assert!(health_on(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let closed = closed_by_server(&mut kept_alive, KEEP_ALIVE_TIMEOUT * 3)
        .await
        .expect("the idle keep-alive connection was never closed");
    let idle_for = closed - answered;
    eprintln!("an idle keep-alive connection was closed after {idle_for:?}");
    assert!(
        idle_for >= KEEP_ALIVE_TIMEOUT - Duration::from_millis(100)
            && idle_for <= KEEP_ALIVE_TIMEOUT + Duration::from_millis(1500),
        "closed after {idle_for:?}"
    );
}

/// Open descriptors of process `pid`.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Time until a fresh client's `/health` is answered, trying again until `within`.
async fn time_to_health(url: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(within)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    while started.elapsed() < within {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn more_stalled_sockets_than_descriptors_keep_health_out_only_briefly() {
    const OPEN_FILES: u64 = 256;
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&db, dir.path(), Some(OPEN_FILES)).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "{limits}"
    );
    let addr = ("127.0.0.1", server.port);

    // One client opens half as many sockets again as the server may have descriptors, and
    // sends half a request on each.
    let mut stalled = Vec::new();
    for n in 1..=(OPEN_FILES + OPEN_FILES / 2) {
        let mut socket = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| {
                panic!("connection {n} got no answer in 10 s: the server stopped accepting")
            })
            .unwrap();
        socket.write_all(HALF_A_HEAD).await.unwrap();
        stalled.push(socket);
    }
    let margin = Duration::from_secs(2);
    let waited = time_to_health(&server.url("/health"), HEADER_READ_TIMEOUT + margin)
        .await
        .unwrap_or_else(|| {
            panic!(
                "/health did not answer within {:?} with {} stalled sockets open",
                HEADER_READ_TIMEOUT + margin,
                stalled.len()
            )
        });
    let descriptors = open_descriptors(server.pid());
    eprintln!(
        "{} stalled sockets: /health answered after {waited:?}; the server holds {descriptors} \
         descriptors",
        stalled.len()
    );
    assert!(server.exited().is_none(), "{}", server.output());
    assert!(descriptors < OPEN_FILES as usize, "{descriptors}");
    // The first stalled socket has been closed by the server by now.
    let first_closed = closed_by_server(&mut stalled[0], HEADER_READ_TIMEOUT).await;
    assert!(
        first_closed.is_some(),
        "the first stalled socket is still open"
    );
    drop(stalled);

    // Idle keep-alive connections filling the cap make room for a newcomer at once.
    let mut idle = Vec::new();
    for _ in 0..OPEN_FILES {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let _ = socket.write_all(HEALTH).await;
        idle.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = time_to_health(&server.url("/health"), HEADER_READ_TIMEOUT)
        .await
        .expect("/health did not answer while idle keep-alive connections filled the cap");
    eprintln!(
        "{} idle keep-alive connections: /health answered after {waited:?}",
        idle.len()
    );
    assert!(waited < HEADER_READ_TIMEOUT, "{waited:?}");
    assert_eq!(
        http()
            .get(server.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
