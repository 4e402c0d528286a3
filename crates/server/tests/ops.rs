//! Operations of the real binary: routing by host (421 for other hosts), forwarded headers
//! believed only from trusted proxies, one JSON log line per request, the metrics listener, the
//! janitor and `opentrusty cleanup`, `opentrusty check`, and a database outage survived without a
//! restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentrusty_core::audit::{Origin, action};
use opentrusty_core::now;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::session::NewSession;
use opentrusty_store::{AuditQuery, NewAccessToken};
use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{ClientAuth, Idp, SECRET_KEY, SERVICE, Server, free_port, http, opentrusty};
use tokio::net::{TcpListener, TcpStream};

async fn get(url: &str, host: &str) -> u16 {
    http()
        .get(url)
        .header("host", host)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn requests_are_routed_by_host_and_other_hosts_get_421() {
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let domains = [
        ("OPENTRUSTY_AUTH_DOMAIN", "auth.example.com"),
        ("OPENTRUSTY_ADMIN_DOMAIN", "api.example.com"),
    ];
    let mut all = Server::start(dir.path(), "all", db.url(), free_port(), &domains);
    all.wait_healthy().await;
    let auth_path = all.url("/.well-known/openid-configuration");
    let admin_path = all.url("/api/v1/openapi.json");
    assert_eq!(get(&auth_path, "auth.example.com").await, 200);
    assert_eq!(get(&auth_path, "AUTH.example.com:443").await, 200);
    assert_eq!(get(&admin_path, "auth.example.com").await, 404);
    assert_eq!(get(&admin_path, "api.example.com").await, 200);
    assert_eq!(get(&auth_path, "api.example.com").await, 404);
    for host in ["evil.example", "127.0.0.1", "auth.example.com.evil.example"] {
        assert_eq!(get(&auth_path, host).await, 421, "{host}");
        assert_eq!(get(&admin_path, host).await, 421, "{host}");
    }
    // Probes answer on any host (load balancers call them by address).
    assert_eq!(get(&all.url("/health"), "10.1.2.3").await, 200);
    drop(all);

    // Single planes refuse the other plane's host, and with their own domain set, any other.
    let mut auth = Server::start(dir.path(), "auth", db.url(), free_port(), &domains);
    auth.wait_healthy().await;
    let path = auth.url("/.well-known/openid-configuration");
    assert_eq!(get(&path, "auth.example.com").await, 200);
    assert_eq!(get(&path, "api.example.com").await, 421);
    assert_eq!(get(&path, "other.example").await, 421);
    let mut admin = Server::start(dir.path(), "admin", db.url(), free_port(), &domains);
    admin.wait_healthy().await;
    let path = admin.url("/api/v1/openapi.json");
    assert_eq!(get(&path, "api.example.com").await, 200);
    assert_eq!(get(&path, "auth.example.com").await, 421);
    // Without domains, routing is by port: any host.
    let mut plain = Server::start(dir.path(), "admin", db.url(), free_port(), &[]);
    plain.wait_healthy().await;
    assert_eq!(
        get(&plain.url("/api/v1/openapi.json"), "whatever.example").await,
        200
    );
}

/// A failed console sign-in with forwarded headers: the audit row's address and request id.
async fn failed_login(idp: &Idp, forwarded_for: &str, request_id: &str) -> (String, Value) {
    let r = http()
        .post(idp.url("/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .header("x-request-id", request_id)
        .json(&json!({ "email": "nobody@example.com", "password": "wrong password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let answered_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let events = idp
        .store
        .list_audit(&AuditQuery {
            action: Some(action::LOGIN_FAILED.to_owned()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = &events[0];
    (
        answered_id,
        json!({ "ip": e.ip, "request_id": e.request_id }),
    )
}

#[tokio::test]
async fn forwarded_headers_and_request_ids_are_believed_only_from_trusted_proxies() {
    let untrusted = Idp::start_with(TestDb::sqlite(true).await, &[]).await;
    let (answered, audit) = failed_login(&untrusted, "203.0.113.9", "planted-id").await;
    assert_eq!(audit["ip"], "127.0.0.1");
    assert_ne!(answered, "planted-id");
    assert_eq!(audit["request_id"], answered.as_str());

    let trusted = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8")],
    )
    .await;
    // The client planted 6.6.6.6; the proxies appended what they saw.
    let (answered, audit) =
        failed_login(&trusted, "6.6.6.6, 203.0.113.9, 10.0.0.4", "edge-request-7").await;
    assert_eq!(audit["ip"], "203.0.113.9");
    assert_eq!(answered, "edge-request-7");
    assert_eq!(audit["request_id"], "edge-request-7");
}

#[tokio::test]
async fn every_request_is_logged_once_as_json_without_its_query() {
    let idp = Idp::sqlite().await;
    let secret_state = "state-value-that-must-not-be-logged";
    let r = http()
        .get(idp.url(&format!(
            "/oauth2/authorize?client_id=nope&response_type=code&state={secret_state}"
        )))
        .header("x-request-id", "not-trusted")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let output = idp.server.output();
    assert!(!output.contains(secret_state), "the query reached the log");
    let lines: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["request_id"] == id.as_str())
        .collect();
    assert_eq!(lines.len(), 1, "{output}");
    let line = &lines[0];
    assert_eq!(line["target"], "opentrusty::request");
    assert_eq!(line["plane"], "auth");
    assert_eq!(line["route"], "/oauth2/authorize");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 400);
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["client"], "127.0.0.1");
}

#[tokio::test]
async fn the_metrics_listener_serves_prometheus_text() {
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_METRICS_ADDR", addr.as_str())],
    )
    .await;
    let r = support::token_request(
        &idp,
        ClientAuth::of(SERVICE),
        &[("grant_type", "client_credentials")],
    )
    .await;
    r.expect_status(200);
    let _ = http()
        .post(idp.url("/api/v1/auth/login"))
        .json(&json!({ "email": "nobody@example.com", "password": "wrong password" }))
        .send()
        .await
        .unwrap();
    // Never on the public port.
    let public = http().get(idp.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);

    let r = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    // Prometheus's own client library parses it; print each sample as JSON for the checks.
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in f.samples:\n\
        \x20       out.append({'family': f.name, 'type': f.type, 'name': s.name, 'labels': s.labels, 'value': s.value})\n\
        print(json.dumps(out))\n";
    let out = std::process::Command::new(opentrusty_testkit::python_tool("python"))
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str, labels: Value| {
        samples.iter().find(|s| {
            s["name"] == name
                && labels
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| &s["labels"][k] == v)
        })
    };
    let value = |name: &str, labels: Value| {
        find(name, labels.clone())
            .unwrap_or_else(|| panic!("no {name} {labels} in\n{text}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(
        value(
            "opentrusty_http_requests_total",
            json!({ "plane": "auth", "route": "/oauth2/token", "status": "200" })
        ) >= 1.0
    );
    assert!(
        value(
            "opentrusty_http_request_duration_seconds_count",
            json!({ "route": "/oauth2/token" })
        ) >= 1.0
    );
    assert!(
        value(
            "opentrusty_tokens_issued_total",
            json!({ "grant": "client_credentials" })
        ) >= 1.0
    );
    assert!(value("opentrusty_logins_total", json!({ "outcome": "failure" })) >= 1.0);
    assert!(value("opentrusty_db_pool_connections", json!({})) >= 1.0);
    assert_eq!(value("opentrusty_db_pool_max_connections", json!({})), 10.0);
    assert_eq!(
        value("opentrusty_password_hashes_in_flight", json!({})),
        0.0
    );
}

/// Seeds one expired and one live row of every kind the janitor sweeps; returns the live
/// access token's digest and the live session's digest.
async fn expired_and_live_rows(idp: &Idp) -> ([u8; 32], [u8; 32]) {
    let store = &idp.store;
    let origin = Origin::system();
    let client = store.find_client(SERVICE.client_id).await.unwrap().unwrap();
    let mut live = ([0u8; 32], [0u8; 32]);
    for (ttl, slot) in [(-60i64, false), (3600, true)] {
        let token = random_token();
        store
            .issue_tokens(
                &NewAccessToken {
                    jti: uuid::Uuid::now_v7(),
                    token_digest: Some(token_digest(&token)),
                    tenant_id: client.tenant_id,
                    client_id: client.id,
                    user_id: None,
                    scope: String::new(),
                    expires_at: now() + time::Duration::seconds(ttl),
                },
                None,
                &origin,
            )
            .await
            .unwrap();
        let cookie = random_token();
        store
            .create_session(
                &NewSession {
                    user_id: idp.seed.alice,
                    tenant_id: Some(idp.seed.tenant_a),
                    token_digest: token_digest(&cookie),
                    expires_at: now() + time::Duration::seconds(ttl),
                    ip: None,
                    user_agent: None,
                },
                None,
                &origin,
            )
            .await
            .unwrap();
        if slot {
            live = (token_digest(&token), token_digest(&cookie));
        }
    }
    live
}

#[tokio::test]
async fn cleanup_deletes_only_what_expired_and_the_janitor_runs_by_itself() {
    // The server's own janitor is off here, so only `cleanup` deletes what is seeded.
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_JANITOR_INTERVAL", "0")],
    )
    .await;
    let (live_token, live_session) = expired_and_live_rows(&idp).await;
    let (ok, out) = idp.cli(&["cleanup"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 sessions"), "{out}");
    assert!(out.contains("1 access tokens"), "{out}");
    let (ok, out) = idp.cli(&["cleanup"]);
    assert!(ok && out.contains("deleted 0 expired rows"), "{out}");
    assert!(
        idp.store
            .find_access_token_by_digest(&live_token, now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        idp.store
            .find_session(&live_session, now())
            .await
            .unwrap()
            .is_some()
    );

    // The janitor of a running auth process does the same on its own.
    let janitor = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_JANITOR_INTERVAL", "1")],
    )
    .await;
    expired_and_live_rows(&janitor).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if janitor
            .server
            .output()
            .contains("janitor deleted expired rows")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", janitor.server.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn check_validates_configuration_and_database() {
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let check = |mode: &str, url: &str, extra: &[(&str, &str)]| {
        let mut cmd = opentrusty(dir.path());
        cmd.args(["check", mode])
            .env("OPENTRUSTY_DATABASE_URL", url)
            .env("OPENTRUSTY_SECRET_KEY", SECRET_KEY);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = check(
        "auth",
        db.url(),
        &[
            ("OPENTRUSTY_AUTH_DOMAIN", "auth.example.com"),
            ("OPENTRUSTY_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("OPENTRUSTY_METRICS_ADDR", "127.0.0.1:9100"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "mode: auth",
        "routing: by host",
        "trusted proxies: 10.0.0.0/8 (client address from X-Forwarded-For only)",
        "connections: up to ",
        "metrics: http://127.0.0.1:9100/metrics",
        "schema: current",
        "ok: ready to serve",
    ] {
        assert!(out.contains(expected), "{expected} in {out}");
    }
    assert!(!out.contains(SECRET_KEY));
    let (code, out) = check("admin", "postgres://user:hunter2@127.0.0.1:1/db", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let (code, out) = check(
        "auth",
        db.url(),
        &[("OPENTRUSTY_TRUSTED_PROXIES", "10.0.0.0/99")],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("OPENTRUSTY_TRUSTED_PROXIES"), "{out}");
    let (code, out) = check(
        "auth",
        db.url(),
        &[("OPENTRUSTY_FORWARDED_HEADER", "x-real-ip")],
    );
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(out.contains("OPENTRUSTY_FORWARDED_HEADER"), "{out}");
    let (code, out) = check(
        "auth",
        db.url(),
        &[("OPENTRUSTY_METRICS_ADDR", "127.0.0.1:8080")],
    );
    assert_eq!(
        code,
        Some(2),
        "the metrics listener on the public port: {out}"
    );
    let empty = TestDb::sqlite(false).await;
    let (code, out) = check("auth", empty.url(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("opentrusty migrate"), "{out}");
}

/// A TCP forwarder to PostgreSQL that can be cut (existing connections dropped, new ones
/// closed at once) and restored: a database outage for one process only.
struct Outage {
    port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Outage {
    async fn start(target: &'static str) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (flag, gen_tx) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = gen_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Outage {
            port,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_and_the_process_recovers_by_itself() {
    let Some(db) = TestDb::postgres(true).await else {
        return;
    };
    let store = db.store().await;
    support::seed(&store).await;
    let outage = Outage::start("127.0.0.1:5432").await;
    let mut url = url::Url::parse(db.url()).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(outage.port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::auth(dir.path(), url.as_str(), free_port());
    server.wait_healthy().await;
    let token = || async {
        http()
            .post(server.url("/oauth2/token"))
            .basic_auth(SERVICE.client_id, SERVICE.secret)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
    };
    assert_eq!(token().await.status(), 200);

    outage.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let r = token().await;
        let took = started.elapsed();
        assert_eq!(r.status(), 503, "{}", server.output());
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(took < Duration::from_secs(4), "took {took:?}");
    }
    let ready = http().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // What needs no database keeps working.
    let health = http().get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let discovery = http()
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 200);

    outage.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if token().await.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", server.output());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready = http().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// 200 sign-ins at once against one hashing worker with a short queue: those beyond the queue
/// get 503 with `Retry-After` at once, the others their answer, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_hashing_pool_answers_503_at_once_and_memory_stays_bounded() {
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[
            ("OPENTRUSTY_ARGON2_WORKERS", "1"),
            ("OPENTRUSTY_ARGON2_QUEUE", "4"),
            ("OPENTRUSTY_ARGON2_MEMORY_KIB", "19456"),
            ("OPENTRUSTY_LOCKOUT_THRESHOLD", "0"),
            ("OPENTRUSTY_RATE_LIMIT_LOGIN", "off"),
        ],
    )
    .await;
    let before = idp.server.rss_kb();
    let client = http();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let (client, url) = (client.clone(), idp.url("/api/v1/auth/login"));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .post(url)
                .json(&json!({ "email": format!("nobody{n}@example.com"), "password": "wrong password" }))
                .send()
                .await
                .unwrap();
            let retry = r.headers().contains_key("retry-after");
            (r.status().as_u16(), retry, started.elapsed())
        }));
    }
    let mut peak = before;
    let mut answers = Vec::new();
    for t in tasks {
        peak = peak.max(idp.server.rss_kb());
        answers.push(t.await.unwrap());
    }
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!(refused.len() + checked, 200, "{answers:?}");
    assert!(
        checked >= 1 && !refused.is_empty(),
        "{checked} checked, {} refused",
        refused.len()
    );
    assert!(refused.iter().all(|(_, retry, _)| *retry));
    // Refusals do not wait for the hashing in front of them.
    let slowest_refusal = refused.iter().map(|(_, _, d)| *d).max().unwrap();
    assert!(
        slowest_refusal < Duration::from_secs(2),
        "{slowest_refusal:?}"
    );
    eprintln!(
        "hashing pool: {checked} checked, {} refused; RSS {before} kB before, {peak} kB peak",
        refused.len()
    );
    assert!(peak < 150 * 1024, "peak RSS {peak} kB");
}

/// Past the burst, sign-in and token requests from one client address get 429 with
/// `Retry-After` (a page for pages, JSON for APIs); another address behind the trusted proxy
/// still gets through.
#[tokio::test]
async fn rate_limits_answer_429_per_client_address() {
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[
            ("OPENTRUSTY_RATE_LIMIT_LOGIN", "3/60"),
            ("OPENTRUSTY_RATE_LIMIT_TOKEN", "2/60"),
            ("OPENTRUSTY_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let console_login = |from: &'static str| {
        http()
            .post(idp.url("/api/v1/auth/login"))
            .header("x-forwarded-for", from)
            .json(&json!({ "email": "nobody@example.com", "password": "wrong password" }))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(console_login("198.51.100.1").await.unwrap().status(), 401);
    }
    let r = console_login("198.51.100.1").await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    // The sign-in page shares the login budget of that address, and answers with a page.
    let r = http()
        .post(idp.url("/login"))
        .header("x-forwarded-for", "198.51.100.1")
        .form(&[("email", "x@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // Another client address has its own budget.
    assert_eq!(console_login("198.51.100.2").await.unwrap().status(), 401);

    let token = || {
        support::token_request(
            &idp,
            ClientAuth::of(SERVICE),
            &[("grant_type", "client_credentials")],
        )
    };
    token().await.expect_status(200);
    token().await.expect_status(200);
    let r = token().await;
    r.expect_status(429);
    assert!(r.header("retry-after").is_some());
}

/// The sign-in page carries the tenant's name, logo and accent colour; HSTS is sent when (and
/// only when) the issuer is https.
#[tokio::test]
async fn pages_carry_the_tenant_branding_and_https_issuers_send_hsts() {
    use opentrusty_core::tenant::TenantPatch;
    let idp = Idp::sqlite().await;
    idp.store
        .update_tenant(
            idp.seed.tenant_a,
            &TenantPatch {
                display_name: Some(Some("Acme Corporation".into())),
                logo_url: Some(Some("https://cdn.acme.example/logo.png".into())),
                accent_color: Some(Some("#0a7d3c".into())),
                ..TenantPatch::default()
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    let (challenge, _) = support::pkce();
    let url = idp.authorize_url(&support::code_params(
        support::CONFIDENTIAL,
        "openid",
        "st",
        &challenge,
    ));
    let browser = support::Browser::new(&idp);
    let r = browser.get(url.as_str()).await;
    let login = browser.resolve(r.location().unwrap());
    let page = browser.get(login.as_str()).await;
    page.expect_status(200);
    assert!(
        page.body.contains("Sign in to Acme Corporation"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("src=\"https://cdn.acme.example/logo.png\"")
    );
    assert!(page.body.contains("background:#0a7d3c"));
    assert!(page.header("strict-transport-security").is_none());
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"));

    let dir = tempfile::tempdir().unwrap();
    let mut https = Server::auth_with(
        dir.path(),
        idp.db.url(),
        free_port(),
        &[("OPENTRUSTY_ISSUER", "https://auth.example.com")],
    );
    https.wait_healthy().await;
    let r = http()
        .get(https.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
}
