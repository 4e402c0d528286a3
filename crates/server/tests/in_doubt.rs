//! Grant writes whose outcome is unknown, through the real binary on a real PostgreSQL: a TCP
//! proxy between an auth process and the database lets the statement that spends a refresh
//! token or a code through, lets the database commit it, then cuts the connection before the
//! answer comes back and keeps the database away for a while. The client's request, or its
//! retry, must get its tokens; a retry must never be taken for a replay, and nothing may be
//! revoked. PostgreSQL only: an SQLite commit is local and a failed one is rolled back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentrusty_core::secret::token_digest;
use opentrusty_testkit::TestDb;
use serde_json::Value;
use support::{
    ALICE, Browser, CONFIDENTIAL, Idp, PASSWORD, Server, TestClient, code_params, free_port, pkce,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The bytes by which a spend statement carries the digest it spends: a one-element `bytea[]`
/// in PostgreSQL's binary array format (element type 17, one dimension of one element from 1,
/// an element of 32 bytes). Reads bind the digest as a plain `bytea` and never match.
fn spend_pattern(digest: &[u8; 32]) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 17, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 32];
    p.extend_from_slice(digest);
    p
}

/// A cut to make: after the statement that carries `pattern` went through, hold the
/// database's answer back, cut the connection, and refuse every connection for `blackout`.
struct Cut {
    pattern: Vec<u8>,
    blackout: Duration,
}

#[derive(Default)]
struct ProxyState {
    cut: Option<Cut>,
    refuse_until: Option<Instant>,
    connections: Vec<AbortHandle>,
    /// How many cuts were made.
    made: usize,
}

/// A TCP proxy in front of the test's PostgreSQL server.
struct CutProxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    accept: AbortHandle,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.state.lock().unwrap().connections.drain(..) {
            c.abort();
        }
    }
}

impl CutProxy {
    async fn start(upstream: String) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let refused = {
                    let s = shared.lock().unwrap();
                    s.refuse_until.is_some_and(|t| Instant::now() < t)
                };
                if refused {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let task = tokio::spawn(relay(client, server, shared.clone()));
                shared.lock().unwrap().connections.push(task.abort_handle());
            }
        })
        .abort_handle();
        CutProxy {
            port,
            state,
            accept,
        }
    }

    /// Makes a cut at the next statement that spends `digest`.
    fn cut_at_spend_of(&self, digest: &[u8; 32], blackout: Duration) {
        self.state.lock().unwrap().cut = Some(Cut {
            pattern: spend_pattern(digest),
            blackout,
        });
    }

    fn cuts_made(&self) -> usize {
        self.state.lock().unwrap().made
    }

    /// Whether the database is being kept away right now.
    fn refusing(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.refuse_until.is_some_and(|t| Instant::now() < t)
    }
}

/// Relays one connection both ways until either side closes, making the armed cut.
async fn relay(client: TcpStream, server: TcpStream, state: Arc<Mutex<ProxyState>>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let to_client = {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // The answer to the cut statement never reaches the auth process.
                if cut.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                if client_tx.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        window.extend_from_slice(&buf[..n]);
        let blackout = {
            let mut s = state.lock().unwrap();
            let hit = s.cut.as_ref().is_some_and(|c| {
                window
                    .windows(c.pattern.len())
                    .any(|w| w == c.pattern.as_slice())
            });
            if hit {
                s.made += 1;
                s.cut.take().map(|c| c.blackout)
            } else {
                None
            }
        };
        if let Some(blackout) = blackout {
            cut.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = server_tx.write_all(&buf[..n]).await;
            // Time for the database to commit before the connection goes.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let others = {
                let mut s = state.lock().unwrap();
                s.refuse_until = Some(Instant::now() + blackout);
                std::mem::take(&mut s.connections)
            };
            to_client.abort();
            for c in others {
                c.abort();
            }
            return;
        }
        // Enough of the stream to find a pattern split across reads.
        let keep = window.len().saturating_sub(64);
        window.drain(..keep);
        if server_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    to_client.abort();
}

/// A token request to `base` as `client`: status, `Retry-After`, body.
async fn token(
    base: &str,
    client: TestClient,
    form: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let r = support::token_request_to(base, client, form)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, r.json().await.unwrap())
}

async fn refresh(base: &str, refresh_token: &str) -> (u16, Option<String>, Value) {
    token(
        base,
        CONFIDENTIAL,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn exchange(base: &str, code: &str, verifier: &str) -> (u16, Option<String>, Value) {
    token(
        base,
        CONFIDENTIAL,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", support::CALLBACK),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Two auth processes on one database: `direct` reaches it as usual, `proxied` through a
/// [`CutProxy`].
struct Pair {
    proxy: CutProxy,
    proxied: Server,
    direct: Idp,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start() -> Option<Pair> {
        let db = TestDb::postgres(true).await?;
        let mut url = url::Url::parse(db.url()).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let direct = Idp::start(db).await;
        let proxy = CutProxy::start(upstream).await;
        url.set_port(Some(proxy.port)).unwrap();
        // The proxy reads the statements: in the clear.
        url.query_pairs_mut().append_pair("sslmode", "disable");
        let dir = tempfile::tempdir().unwrap();
        let mut proxied = Server::auth(dir.path(), url.as_str(), free_port());
        proxied.wait_healthy().await;
        Some(Pair {
            proxy,
            proxied,
            direct,
            _dir: dir,
        })
    }

    /// A code and its PKCE verifier for Alice at the confidential client.
    async fn code(&self) -> (String, String) {
        let (challenge, verifier) = pkce();
        let url = self.direct.authorize_url(&code_params(
            CONFIDENTIAL,
            "openid offline_access",
            "in-doubt",
            &challenge,
        ));
        let code = Browser::new(&self.direct)
            .journey(url, Some((ALICE, PASSWORD)))
            .await
            .code();
        (code, verifier)
    }

    /// A refresh token, redeemed at the direct process.
    async fn refresh_token(&self) -> String {
        let (code, verifier) = self.code().await;
        let (status, _, body) = exchange(&self.direct.url(""), &code, &verifier).await;
        assert_eq!(status, 200, "{body}");
        body["refresh_token"].as_str().unwrap().to_owned()
    }

    async fn scalar(&self, sql: &'static str, digest: &[u8; 32]) -> i64 {
        let pool = sqlx::PgPool::connect(self.direct.db.url()).await.unwrap();
        let n = sqlx::query_scalar(sql)
            .bind(&digest[..])
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    /// Revoked families of the refresh token with this digest.
    async fn revoked_family(&self, refresh: &str) -> bool {
        self.scalar(
            "SELECT COUNT(*) FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
             WHERE r.token_hash = $1 AND f.revoked_at IS NOT NULL",
            &token_digest(refresh),
        )
        .await
            > 0
    }

    async fn audited(&self, action: &str) -> i64 {
        let pool = sqlx::PgPool::connect(self.direct.db.url()).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = $1")
            .bind(action)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    async fn wait_until_reachable(&self) {
        while self.proxy.refusing() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends `request` again while it is answered 503 (as a client honouring `Retry-After` would,
/// faster), for up to 10 s: the first answer that is not a 503.
async fn until_served<F, Fut>(request: F) -> (u16, Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, Option<String>, Value)>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, retry_after, body) = request().await;
        if status != 503 || Instant::now() >= deadline {
            return (status, body);
        }
        assert!(retry_after.is_some(), "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn refresh_of(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_was_lost_is_delivered_once_the_database_answers() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let first = pair.refresh_token().await;
    pair.proxy
        .cut_at_spend_of(&token_digest(&first), Duration::from_secs(1));
    let (status, _, body) = refresh(&pair.proxied.url(""), &first).await;
    assert_eq!(
        pair.proxy.cuts_made(),
        1,
        "the rotation went through the cut"
    );
    // The rotation committed: the request waited for the database to say so and delivered
    // what it had recorded.
    assert_eq!(status, 200, "{body}");
    assert!(
        pair.proxied
            .output()
            .contains("a write interrupted by a lost connection had committed"),
        "{}",
        pair.proxied.output()
    );
    let second = refresh_of(&body);
    let (status, _, body) = refresh(&pair.direct.url(""), &second).await;
    assert_eq!(status, 200, "the delivered successor works: {body}");
    assert!(!pair.revoked_family(&second).await);
    // The spent token is spent: presented again after its successor was delivered, it is a
    // replay, and revokes the family.
    let (status, _, body) = refresh(&pair.direct.url(""), &first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(pair.revoked_family(&second).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_committed_after_its_request_was_refused_is_undone_for_the_retry() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let first = pair.refresh_token().await;
    pair.proxy
        .cut_at_spend_of(&token_digest(&first), Duration::from_secs(8));
    let (status, retry_after, body) = refresh(&pair.proxied.url(""), &first).await;
    assert_eq!(pair.proxy.cuts_made(), 1);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(retry_after.is_some());
    // The rotation did commit: its successor is recorded, though nobody ever received it.
    pair.wait_until_reachable().await;
    // The client retries with the token it holds, at the same process, until it is served.
    let base = pair.proxied.url("");
    let (status, body) = until_served(|| refresh(&base, &first)).await;
    assert_eq!(
        status, 200,
        "the retry is served, not taken for a replay: {body}"
    );
    let next = refresh_of(&body);
    assert!(!pair.revoked_family(&first).await, "nothing was revoked");
    assert_eq!(pair.audited("grant.undelivered").await, 1);
    assert_eq!(pair.audited("refresh_token.reused").await, 0);
    let (status, _, body) = refresh(&pair.direct.url(""), &next).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_another_process_waits_for_the_process_that_holds_the_spend_in_doubt() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let first = pair.refresh_token().await;
    pair.proxy
        .cut_at_spend_of(&token_digest(&first), Duration::from_secs(12));
    let (status, _, body) = refresh(&pair.proxied.url(""), &first).await;
    assert_eq!(pair.proxy.cuts_made(), 1);
    assert_eq!(status, 503, "{body}");
    // The load balancer sends the retry to the other process, which reaches the database and
    // finds the token spent; the process that spent it cannot say yet whether that spend
    // was delivered, so there is no verdict: 503, nothing revoked.
    assert!(
        pair.proxy.refusing(),
        "the retry comes while the spender is cut off"
    );
    let (status, retry_after, body) = refresh(&pair.direct.url(""), &first).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(!pair.revoked_family(&first).await, "nothing was revoked");
    // Once the spender is back, it undoes the spend it never delivered, and the retry works
    // wherever it lands.
    pair.wait_until_reachable().await;
    let base = pair.direct.url("");
    let (status, body) = until_served(|| refresh(&base, &first)).await;
    assert_eq!(status, 200, "{body}");
    let next = refresh_of(&body);
    assert!(!pair.revoked_family(&next).await);
    assert_eq!(pair.audited("refresh_token.reused").await, 0);
    // A real replay is still judged one, by either process, now that all is settled.
    let (status, _, body) = refresh(&pair.proxied.url(""), &first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(pair.revoked_family(&next).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_redeemed_after_its_request_was_refused_is_redeemed_again_by_the_retry() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let (code, verifier) = pair.code().await;
    pair.proxy
        .cut_at_spend_of(&token_digest(&code), Duration::from_secs(8));
    let (status, _, body) = exchange(&pair.proxied.url(""), &code, &verifier).await;
    assert_eq!(pair.proxy.cuts_made(), 1);
    assert_eq!(status, 503, "{body}");
    pair.wait_until_reachable().await;
    let base = pair.proxied.url("");
    let (status, body) = until_served(|| exchange(&base, &code, &verifier)).await;
    assert_eq!(
        status, 200,
        "the retry is served, not taken for a replay: {body}"
    );
    assert_eq!(pair.audited("authorization_code.replayed").await, 0);
    assert_eq!(pair.audited("grant.undelivered").await, 1);
    let (status, _, body) = refresh(&pair.direct.url(""), &refresh_of(&body)).await;
    assert_eq!(status, 200, "{body}");
    // The code is spent now; a real replay still revokes what it issued.
    let (status, _, body) = exchange(&pair.direct.url(""), &code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(pair.audited("authorization_code.replayed").await, 1);
}
