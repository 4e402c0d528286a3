//! A bounded soak: `serve auth` and `serve admin` under mixed traffic (sign-ins with code
//! exchange, refreshes, introspection, userinfo, admin writes) at 80 % of the capacity measured
//! a moment before, for `OPENTRUSTY_TEST_SOAK_SECS` (default 60) seconds. Every answer must be the
//! expected one, resident memory flat within 10 % between the first and the last 10 seconds,
//! and the open descriptors (sockets to clients and to the database) must not grow.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{
    ALICE, Browser, FIRST_PARTY, Idp, PASSWORD, Server, code_params, exchange_code, free_port,
    http, introspect, pkce, refresh, userinfo,
};

const ROOT: &str = "root@platform.example";
const WORKERS: usize = 6;

struct Traffic {
    idp: Idp,
    admin: Server,
    session: String,
    csrf: String,
    ops: AtomicU64,
    requests: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Traffic {
    fn fail(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }

    /// A sign-in through the pages to a code, exchanged: the refresh and access token.
    async fn sign_in(&self) -> Option<(String, String)> {
        let browser = Browser::new(&self.idp);
        let (challenge, verifier) = pkce();
        let url = self.idp.authorize_url(&code_params(
            FIRST_PARTY,
            "openid offline_access",
            "soak",
            &challenge,
        ));
        let code = browser.journey(url, Some((ALICE, PASSWORD))).await.code();
        let r = exchange_code(&self.idp, FIRST_PARTY, &code, Some(&verifier)).await;
        self.requests.fetch_add(5, Ordering::Relaxed);
        if r.status != 200 {
            self.fail(format!("code exchange {}: {}", r.status, r.body));
            return None;
        }
        Some((
            r.json["refresh_token"].as_str()?.to_owned(),
            r.json["access_token"].as_str()?.to_owned(),
        ))
    }

    /// One admin write pair: create a user, delete it.
    async fn admin_write(&self, n: u64) {
        let tenant = self.idp.seed.tenant_a.0;
        let send = |method: reqwest::Method, path: String, body: Option<Value>| {
            let mut req = http()
                .request(method, self.admin.url(&path))
                .header("cookie", format!("ot_session={}", self.session))
                .header("x-csrf-token", &self.csrf);
            if let Some(b) = body {
                req = req.json(&b);
            }
            async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        self.requests.fetch_add(2, Ordering::Relaxed);
        let (status, user) = send(
            reqwest::Method::POST,
            format!("/api/v1/tenants/{tenant}/users"),
            Some(json!({ "email": format!("soak-{n}@acme.example"), "given_name": "Soak" })),
        )
        .await;
        if status != 201 {
            return self.fail(format!("create user {status}: {user}"));
        }
        let id = user["id"].as_str().unwrap_or_default();
        let (status, body) = send(
            reqwest::Method::DELETE,
            format!("/api/v1/tenants/{tenant}/users/{id}"),
            None,
        )
        .await;
        if status != 204 {
            self.fail(format!("delete user {status}: {body}"));
        }
    }

    /// A worker's round: sign in, then refresh, introspect, read userinfo and write on the
    /// admin plane in turn. Returns when `stop` is set; paces itself to `per_round` if given.
    async fn worker(self: Arc<Self>, id: usize, stop: Arc<AtomicBool>, per_op: Option<Duration>) {
        let mut n = 0u64;
        let mut next = Instant::now();
        let Some((mut refresh_token, mut access)) = self.sign_in().await else {
            return;
        };
        while !stop.load(Ordering::SeqCst) {
            if let Some(interval) = per_op {
                next += interval;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
            }
            n += 1;
            match n % 5 {
                0 => match self.sign_in().await {
                    Some((r, a)) => (refresh_token, access) = (r, a),
                    None => return,
                },
                1 => {
                    let r = refresh(&self.idp, FIRST_PARTY, &refresh_token, None).await;
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        return self.fail(format!("refresh {}: {}", r.status, r.body));
                    }
                    refresh_token = r.json["refresh_token"].as_str().unwrap().to_owned();
                    access = r.json["access_token"].as_str().unwrap().to_owned();
                }
                2 => {
                    let r =
                        introspect(&self.idp, support::ClientAuth::of(FIRST_PARTY), &access).await;
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 || r.json["active"] != true {
                        self.fail(format!("introspect {}: {}", r.status, r.body));
                    }
                }
                3 => {
                    let r = userinfo(&self.idp, &access).await;
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        self.fail(format!("userinfo {}: {}", r.status, r.body));
                    }
                }
                _ => self.admin_write(id as u64 * 1_000_000 + n).await,
            }
            self.ops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs the workers for `secs`, sampling both servers' RSS and descriptors every second.
async fn run(traffic: &Arc<Traffic>, secs: u64, per_op: Option<Duration>) -> (f64, Vec<[u64; 4]>) {
    let stop = Arc::new(AtomicBool::new(false));
    let before = traffic.ops.load(Ordering::Relaxed);
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| tokio::spawn(traffic.clone().worker(i, stop.clone(), per_op)))
        .collect();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (auth, admin) = (&traffic.idp.server, &traffic.admin);
        samples.push([
            auth.rss_kb(),
            admin.rss_kb(),
            open_fds(auth.pid()) as u64,
            open_fds(admin.pid()) as u64,
        ]);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let ops = traffic.ops.load(Ordering::Relaxed) - before;
    (ops as f64 / started.elapsed().as_secs_f64(), samples)
}

fn mean(xs: impl Iterator<Item = u64>) -> f64 {
    let v: Vec<u64> = xs.collect();
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

async fn soak(db: TestDb) {
    let secs: u64 = std::env::var("OPENTRUSTY_TEST_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(20);
    let idp = Idp::start_with(db, &[("OPENTRUSTY_LOG_LEVEL", "warn")]).await;
    support::bootstrap_platform_admin(&idp.store, ROOT, PASSWORD).await;
    let mut admin = Server::start(
        idp.dir.path(),
        "admin",
        idp.db.url(),
        free_port(),
        &[
            ("OPENTRUSTY_ISSUER", idp.issuer().as_str()),
            ("OPENTRUSTY_LOG_LEVEL", "warn"),
        ],
    );
    admin.wait_healthy().await;
    let (session, csrf) = support::console_sign_in(&idp.url(""), ROOT, PASSWORD).await;
    let traffic = Arc::new(Traffic {
        idp,
        admin,
        session,
        csrf,
        ops: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        errors: Default::default(),
    });

    // Capacity: as fast as the workers go, after a short warm-up.
    run(&traffic, 3, None).await;
    let (capacity, _) = run(&traffic, 6, None).await;
    let target = capacity * 0.8;
    let per_op = Duration::from_secs_f64(WORKERS as f64 / target);
    let requests_before = traffic.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let (achieved, samples) = run(&traffic, secs, Some(per_op)).await;
    let requests = traffic.requests.load(Ordering::Relaxed) - requests_before;
    let elapsed = started.elapsed().as_secs_f64();

    let errors = traffic.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let (first, last) = (&samples[..10], &samples[samples.len() - 10..]);
    let mut report = format!(
        "soak {secs} s: capacity {capacity:.0} ops/s, target {target:.0}, achieved {achieved:.0} ops/s \
         ({:.0} requests/s)",
        requests as f64 / elapsed
    );
    for (i, name) in [(0, "auth"), (1, "admin")] {
        let (a, b) = (
            mean(first.iter().map(|s| s[i])),
            mean(last.iter().map(|s| s[i])),
        );
        report.push_str(&format!(
            "; {name} RSS {:.1} → {:.1} MB ({:+.1} %)",
            a / 1024.0,
            b / 1024.0,
            (b - a) / a * 100.0
        ));
        assert!((b - a).abs() / a <= 0.10, "{name} RSS moved: {report}");
    }
    for (i, name) in [(2, "auth"), (3, "admin")] {
        let first_max = first.iter().map(|s| s[i]).max().unwrap();
        let last_max = last.iter().map(|s| s[i]).max().unwrap();
        report.push_str(&format!(
            "; {name} descriptors ≤ {first_max} → ≤ {last_max}"
        ));
        // Client connections come and go (each sign-in is a new browser, each admin call a
        // new client); a leak of one per operation would add thousands.
        assert!(
            last_max <= first_max + 2 * WORKERS as u64,
            "{name} descriptors grew: {report}"
        );
    }
    assert!(
        achieved >= target * 0.9,
        "the load fell behind its target: {report}"
    );
    eprintln!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_mixed_traffic_at_eighty_percent() {
    // On PostgreSQL when it is part of the run (the production backend), else on SQLite.
    match TestDb::postgres(true).await {
        Some(db) => soak(db).await,
        None => soak(TestDb::sqlite(true).await).await,
    }
}
