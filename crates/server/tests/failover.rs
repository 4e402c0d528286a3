//! A PostgreSQL failover on the reference topology (docs/deployment.md, "High availability"):
//! etcd, Patroni managing three PostgreSQL members with synchronous replication, HAProxy
//! routing to the leader through Patroni's REST health check (the files under
//! `deploy/patroni/` and `deploy/haproxy/`), two `serve auth` processes and one `serve admin`
//! on it, all on the loopback. Under load on both planes the leader's postmaster is killed with
//! SIGKILL, then the leadership is switched over, then the leader is frozen (SIGSTOP of its
//! Patroni and PostgreSQL: its sockets stay open and nothing answers, as when the network to it
//! is cut) until another member leads, and thawed. During each only 200s, 503s with
//! `Retry-After` and refused connections may be seen; every process serves again without a
//! restart; and afterwards every token a client received with a 200 works and every user
//! created with a 201 exists with its audit row.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    ALICE, FIRST_PARTY, PASSWORD, SERVICE, Server, TestClient, code_params, free_port, inputs, pkce,
};

const ROOT: &str = "root@platform.example";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `program` run as the `postgres` user when the tests run as root (PostgreSQL refuses root).
fn as_postgres(program: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is missing: apt-get install {package} (.ci/run installs it)"
    );
}

struct Member {
    name: String,
    api_port: u16,
    data_dir: PathBuf,
    patroni: Child,
}

/// etcd, three Patroni members and HAProxy, in a temporary directory owned by `postgres`.
struct Cluster {
    dir: tempfile::TempDir,
    etcd: Child,
    members: Vec<Member>,
    haproxy: Child,
    port: u16,
}

fn log_file(dir: &Path, name: &str) -> (Stdio, Stdio) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    (f.try_clone().unwrap().into(), f.into())
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("ot-failover")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        // What the postgres user reads or writes is its own: the directory (where etcd, Patroni
        // and PostgreSQL create their files) and each member's configuration. Not recursive: a
        // walk over running members' files races with their renames.
        let chown = |path: &Path| {
            if running_as_root() {
                let ok = Command::new("chown")
                    .args(["postgres", &path.display().to_string()])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        };
        chown(root);
        let (client_port, peer_port) = (free_port(), free_port());
        let (out, err) = log_file(root, "etcd.log");
        let etcd = as_postgres("etcd")
            .args([
                "--name",
                "e1",
                "--data-dir",
                &root.join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("e1=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/patroni/patroni.yml"),
        )
        .unwrap();
        let mut members = Vec::new();
        let mut specs = Vec::new();
        for i in 1..=3 {
            specs.push((format!("pg{i}"), free_port(), free_port()));
        }
        for (name, pg_port, api_port) in &specs {
            let data_dir = root.join(name);
            let own = |port: u16| format!("127.0.0.1:{port}");
            let config = template
                .replace("name: pg1", &format!("name: {name}"))
                .replace("10.0.0.1:8008", &own(*api_port))
                .replace("10.0.0.1:5432", &own(*pg_port))
                .replace(
                    "10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379",
                    &own(client_port),
                )
                .replace("10.0.0.0/24", "127.0.0.1/32")
                .replace(
                    "/var/lib/postgresql/15/patroni",
                    &data_dir.display().to_string(),
                )
                .replace(
                    "/var/lib/postgresql/patroni.pgpass",
                    &root.join(format!("{name}.pgpass")).display().to_string(),
                )
                .replace("/var/run/postgresql", &root.display().to_string())
                // The test's members trust the loopback and skip checksums (initdb time).
                .replace("scram-sha-256", "trust")
                .replace("    - data-checksums\n", "");
            let path = root.join(format!("{name}.yml"));
            std::fs::write(&path, config).unwrap();
            chown(&path);
            let (out, err) = log_file(root, &format!("{name}.log"));
            let patroni = as_postgres("patroni")
                .arg(&path)
                .env("PATH", format!("{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"))
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap();
            members.push(Member {
                name: name.clone(),
                api_port: *api_port,
                data_dir,
                patroni,
            });
        }
        let port = free_port();
        let haproxy_template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg"),
        )
        .unwrap();
        let mut haproxy_config = haproxy_template.replace("*:5000", &format!("127.0.0.1:{port}"));
        for (i, (_, pg_port, api_port)) in specs.iter().enumerate() {
            haproxy_config = haproxy_config
                .replace(
                    &format!("10.0.0.{}:5432", i + 1),
                    &format!("127.0.0.1:{pg_port}"),
                )
                .replace(
                    &format!("check port 8008 # pg{}", i + 1),
                    &format!("check port {api_port}"),
                );
        }
        for (name, _, _) in &specs {
            assert!(
                !haproxy_config.contains(&format!("# {name}")),
                "deploy/haproxy/haproxy.cfg changed shape"
            );
        }
        let cfg = root.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config).unwrap();
        let (out, err) = log_file(root, "haproxy.log");
        let haproxy = Command::new("haproxy")
            .args(["-db", "-f", &cfg.display().to_string()])
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let cluster = Cluster {
            dir,
            etcd,
            members,
            haproxy,
            port,
        };
        cluster.wait_healthy(Duration::from_secs(90)).await;
        cluster
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Each member's view from its REST API: (name, role, state).
    async fn members(&self) -> Vec<(String, String, String)> {
        // A frozen member accepts the connection and never answers.
        let rest = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        for m in &self.members {
            let url = format!("http://127.0.0.1:{}/cluster", m.api_port);
            let Ok(r) = rest.get(url).send().await else {
                continue;
            };
            let Ok(body) = r.json::<Value>().await else {
                continue;
            };
            return body["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or("").to_owned(),
                        m["role"].as_str().unwrap_or("").to_owned(),
                        m["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
        }
        Vec::new()
    }

    async fn leader(&self) -> Option<String> {
        self.members()
            .await
            .into_iter()
            .find(|(_, role, state)| role == "leader" && state == "running")
            .map(|(name, _, _)| name)
    }

    /// Waits for a running leader, a synchronous standby and every member streaming, with the
    /// leader reachable through HAProxy.
    async fn wait_healthy(&self, within: Duration) {
        self.wait_until(within, true).await
    }

    /// Waits for a running leader reachable through HAProxy, and with `whole`, a synchronous
    /// standby and every member streaming too.
    async fn wait_until(&self, within: Duration, whole: bool) {
        let deadline = Instant::now() + within;
        loop {
            let members = self.members().await;
            let leader = members
                .iter()
                .any(|(_, r, s)| r == "leader" && s == "running");
            let sync = members.iter().any(|(_, r, _)| r == "sync_standby");
            let streaming = members
                .iter()
                .filter(|(_, r, s)| r != "leader" && (s == "streaming" || s == "running"))
                .count();
            if leader && (!whole || (sync && streaming == 2)) && self.answers().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy: {members:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether the leader answers a write through HAProxy.
    async fn answers(&self) -> bool {
        use sqlx::Connection as _;
        let Ok(Ok(mut c)) = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::PgConnection::connect(&self.url("postgres")),
        )
        .await
        else {
            return false;
        };
        let read_only: Result<String, _> =
            sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
                .fetch_one(&mut c)
                .await;
        let _ = c.close().await;
        read_only.is_ok_and(|r| r == "off")
    }

    fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap()
    }

    fn kill_postmaster(&self, name: &str) {
        let pid_file =
            std::fs::read_to_string(self.member(name).data_dir.join("postmaster.pid")).unwrap();
        let pid = pid_file.lines().next().unwrap().trim();
        let ok = Command::new("kill").args(["-9", pid]).status().unwrap();
        assert!(ok.success());
    }

    /// Stops (SIGSTOP) a member's Patroni and every PostgreSQL process of it: sockets stay
    /// open, nothing answers. The processes stopped.
    fn freeze(&self, name: &str) -> Vec<String> {
        // Patroni (under runuser when root) and the PostgreSQL it started: the whole tree.
        let mut pids = vec![self.member(name).patroni.id().to_string()];
        let mut i = 0;
        while i < pids.len() {
            let children = Command::new("pgrep")
                .args(["-P", &pids[i]])
                .output()
                .unwrap();
            pids.extend(
                String::from_utf8_lossy(&children.stdout)
                    .split_whitespace()
                    .map(str::to_owned),
            );
            i += 1;
        }
        let ok = Command::new("kill")
            .arg("-STOP")
            .args(&pids)
            .status()
            .unwrap();
        assert!(ok.success());
        pids
    }

    fn thaw(pids: &[String]) {
        let _ = Command::new("kill").arg("-CONT").args(pids).status();
    }

    fn switchover(&self, leader: &str) {
        let config = self.dir.path().join(format!("{leader}.yml"));
        let out = as_postgres("patronictl")
            .args([
                "-c",
                &config.display().to_string(),
                "switchover",
                "--leader",
                leader,
            ])
            .arg("--force")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["etcd.log", "pg1.log", "pg2.log", "pg3.log", "haproxy.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {name} ---\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        // Patroni itself, not only the runuser wrapper that started it as root.
        for m in &mut self.members {
            let wrapper = m.patroni.id().to_string();
            let _ = Command::new("pkill")
                .args(["-TERM", "-P", &wrapper])
                .status();
            let _ = Command::new("kill").args(["-TERM", &wrapper]).status();
        }
        for m in &mut self.members {
            let deadline = Instant::now() + Duration::from_secs(15);
            while m.patroni.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = m.patroni.kill();
            let _ = m.patroni.wait();
            // A postmaster Patroni left behind.
            if let Ok(pid) = std::fs::read_to_string(m.data_dir.join("postmaster.pid"))
                && let Some(pid) = pid.lines().next()
            {
                let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
            }
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the clients of one phase saw and received.
#[derive(Default)]
struct Ledger {
    /// Access tokens answered with 200, with their client.
    access: Vec<(TestClient, String)>,
    /// Refresh tokens answered with 200 and not spent since.
    refresh: Vec<(TestClient, String)>,
    users: Vec<String>,
    ok: u64,
    unavailable: u64,
    refused: u64,
    unexpected: Vec<String>,
    /// Refresh tokens received with a 200 and later refused with a final answer.
    refused_refresh: Vec<String>,
    /// When an answer other than 200 came, and when a 200 did.
    last_failure: Option<Instant>,
    successes: Vec<Instant>,
}

impl Ledger {
    fn success(&mut self) {
        self.ok += 1;
        self.successes.push(Instant::now());
    }
}

/// One answer: 200 is counted as a success by the caller; 503 with `Retry-After` and a refused
/// connection are what a failover may cause; anything else is a defect.
fn outcome(ledger: &Mutex<Ledger>, what: &str, status: Option<(u16, bool)>, body: &str) -> bool {
    let mut l = ledger.lock().unwrap();
    match status {
        Some((200 | 201 | 303, _)) => return true,
        Some((503, true)) => l.unavailable += 1,
        None => l.refused += 1,
        Some((s, retry_after)) => l
            .unexpected
            .push(format!("{what}: {s} (Retry-After: {retry_after}) {body}")),
    }
    l.last_failure = Some(Instant::now());
    false
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(req: reqwest::RequestBuilder) -> (Option<(u16, bool)>, Value, Option<String>) {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = r.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (Some((status, retry_after)), body, location)
        }
        Err(e) if e.is_connect() => (None, Value::Null, None),
        Err(e) => (Some((0, false)), json!(e.to_string()), None),
    }
}

async fn token(
    base: &str,
    client: TestClient,
    form: &[(&str, &str)],
) -> (Option<(u16, bool)>, Value) {
    let (status, body, _) =
        send(support::token_request_to(base, client, form).timeout(Duration::from_secs(20))).await;
    (status, body)
}

/// A sign-in through the pages and its code exchange, tolerating unavailability at any step:
/// the tokens, or `None` if a step was refused (counted in `ledger`).
async fn sign_in(auth: &str, other_auth: &str, ledger: &Mutex<Ledger>) -> Option<(String, String)> {
    let browser = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let (challenge, verifier) = pkce();
    let issuer = auth.to_owned();
    let params = code_params(FIRST_PARTY, "openid offline_access", "failover", &challenge);
    let url =
        reqwest::Url::parse_with_params(&format!("{issuer}/oauth2/authorize"), &params).unwrap();
    let (status, body, location) = send(browser.get(url)).await;
    if !outcome(ledger, "authorize", status, &body.to_string()) {
        return None;
    }
    let login = format!("{issuer}{}", location?);
    let (status, body, _) = send(browser.get(&login)).await;
    if !outcome(ledger, "sign-in page", status, &body.to_string()) {
        return None;
    }
    let fields = inputs(body.as_str().unwrap_or_default());
    let form = [
        ("email", ALICE),
        ("password", PASSWORD),
        ("csrf_token", fields.get("csrf_token")?.as_str()),
        ("return_to", fields.get("return_to")?.as_str()),
    ];
    let (status, body, location) = send(browser.post(format!("{issuer}/login")).form(&form)).await;
    if !outcome(ledger, "sign-in", status, &body.to_string()) {
        return None;
    }
    let mut next = location?;
    // Through the authorization endpoint again to the client's callback.
    for _ in 0..3 {
        if next.starts_with(support::CALLBACK) {
            break;
        }
        let url = if next.starts_with('/') {
            format!("{issuer}{next}")
        } else {
            next.clone()
        };
        let (status, body, location) = send(browser.get(url)).await;
        if !outcome(ledger, "authorize after sign-in", status, &body.to_string()) {
            return None;
        }
        next = location?;
    }
    let callback = reqwest::Url::parse(&next).ok()?;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")?
        .1
        .into_owned();
    // The exchange goes to the other auth process: the load balancer picks any.
    let (status, body) = token(
        other_auth,
        FIRST_PARTY,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", support::CALLBACK),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    if !outcome(ledger, "code exchange", status, &body.to_string()) {
        return None;
    }
    Some((
        body["access_token"].as_str()?.to_owned(),
        body["refresh_token"].as_str()?.to_owned(),
    ))
}

struct Planes {
    auth: Vec<Server>,
    admin: Server,
    session: String,
    csrf: String,
    tenant: String,
}

impl Planes {
    fn auth_url(&self, i: usize) -> String {
        self.auth[i % self.auth.len()].url("")
    }
}

/// Load on both planes until `stop`: client credentials, refresh chains, sign-ins with code
/// exchange, and user creation on the admin plane.
async fn load(planes: Arc<Planes>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut tasks = tokio::task::JoinSet::new();
    // Client credentials, on both auth processes.
    for w in 0..2 {
        let (planes, ledger, stop) = (planes.clone(), ledger.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = token(
                    &planes.auth_url(w),
                    SERVICE,
                    &[("grant_type", "client_credentials")],
                )
                .await;
                if outcome(&ledger, "client_credentials", status, &body.to_string()) {
                    let mut l = ledger.lock().unwrap();
                    l.success();
                    l.access
                        .push((SERVICE, body["access_token"].as_str().unwrap().to_owned()));
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    // A refresh chain per auth process, and sign-ins, alternating processes.
    for w in 0..2 {
        let (planes, ledger, stop) = (planes.clone(), ledger.clone(), stop.clone());
        tasks.spawn(async move {
            let mut chain: Option<String> = None;
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let Some(current) = chain.clone() else {
                    match sign_in(&planes.auth_url(w), &planes.auth_url(w + 1), &ledger).await {
                        Some((access, refresh)) => {
                            let mut l = ledger.lock().unwrap();
                            l.success();
                            l.access.push((FIRST_PARTY, access));
                            chain = Some(refresh);
                        }
                        None => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                    continue;
                };
                let (status, body) = token(
                    &planes.auth_url(w + n),
                    FIRST_PARTY,
                    &[("grant_type", "refresh_token"), ("refresh_token", &current)],
                )
                .await;
                if outcome(&ledger, "refresh", status, &body.to_string()) {
                    let mut l = ledger.lock().unwrap();
                    l.success();
                    l.access.push((
                        FIRST_PARTY,
                        body["access_token"].as_str().unwrap().to_owned(),
                    ));
                    chain = body["refresh_token"].as_str().map(str::to_owned);
                    // Now and then the chain is left for a new sign-in; its token must still
                    // work at the end.
                    if n.is_multiple_of(25) {
                        l.refresh.push((FIRST_PARTY, chain.take().unwrap()));
                    }
                } else {
                    if !matches!(status, None | Some((503, true))) {
                        ledger.lock().unwrap().refused_refresh.push(current.clone());
                    }
                    // The same token again: a retry must never be taken for reuse.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if let Some(last) = chain {
                ledger.lock().unwrap().refresh.push((FIRST_PARTY, last));
            }
        });
    }
    // Admin writes.
    {
        let (planes, ledger, stop) = (planes.clone(), ledger.clone(), stop.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let email = format!(
                    "failover-{}-{n}@acme.example",
                    uuid::Uuid::now_v7().simple()
                );
                let req = http()
                    .post(
                        planes
                            .admin
                            .url(&format!("/api/v1/tenants/{}/users", planes.tenant)),
                    )
                    .header("cookie", format!("ot_session={}", planes.session))
                    .header("x-csrf-token", &planes.csrf)
                    .json(&json!({ "email": email, "given_name": "Failover" }));
                let (status, body, _) = send(req).await;
                if outcome(&ledger, "create user", status, &body.to_string()) {
                    let mut l = ledger.lock().unwrap();
                    l.success();
                    l.users.push(body["id"].as_str().unwrap().to_owned());
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs the load, makes `event` happen after 3 s, waits until the cluster is healthy and every
/// kind of request has been served again, then 3 s more. The window from the event to the
/// last failure's following success, and what the clients received.
async fn through(
    name: &str,
    cluster: &Cluster,
    planes: &Arc<Planes>,
    event: impl std::future::Future<Output = ()>,
    heals: bool,
) -> (Duration, Ledger) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(planes.clone(), ledger.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = Instant::now();
    event.await;
    cluster.wait_until(Duration::from_secs(90), heals).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap();
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let back = match ledger.last_failure {
        Some(failed) => ledger
            .successes
            .iter()
            .find(|s| **s > failed)
            .map_or(Duration::MAX, |s| s.duration_since(at)),
        None => Duration::ZERO,
    };
    eprintln!(
        "{name}: served again {:.2} s after the event; {} answered 200/201, {} answered 503, \
         {} connections refused; {} access tokens, {} refresh tokens, {} users received",
        back.as_secs_f64(),
        ledger.ok,
        ledger.unavailable,
        ledger.refused,
        ledger.access.len(),
        ledger.refresh.len(),
        ledger.users.len()
    );
    (back, ledger)
}

/// A request sent again, as a client honouring `Retry-After` would, while it is answered 503 or
/// refused: a member that changes role after the cluster looked healthy cuts its sessions, and
/// the check that follows an event must not take that for a lost write.
async fn as_a_client<F, Fut>(cluster: &Cluster, request: F) -> (Option<(u16, bool)>, Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Option<(u16, bool)>, Value)>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = request().await;
        let unavailable = matches!(status, None | Some((503, true)));
        if !unavailable || Instant::now() > deadline {
            return (status, body);
        }
        eprintln!(
            "answered {status:?} after the event, sent again; members: {:?}",
            cluster.members().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The test's own query, sent again for the same reason while the connection to the leader is cut.
async fn queried<T, F, Fut>(query: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match query().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("the check's query failed ({e}), sent again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("the check's query failed for a minute: {e}"),
        }
    }
}

/// Nothing a client received with a 200 or 201 is lost.
async fn nothing_lost(cluster: &Cluster, planes: &Planes, ledger: &Ledger, database: &str) {
    if !ledger.unexpected.is_empty() {
        for server in planes.auth.iter().chain([&planes.admin]) {
            let out = server.output();
            let notable: Vec<&str> = out
                .lines()
                .filter(|l| !l.contains("\"level\":\"INFO\"") || l.contains("\"status\":400"))
                .collect();
            eprintln!("--- port {} ---\n{}", server.port, notable.join("\n"));
        }
        let pool = sqlx::PgPool::connect(&cluster.url(database)).await.unwrap();
        let actions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT action, COUNT(*) FROM audit_events GROUP BY action ORDER BY action",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let revoked: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT revoked_reason, COUNT(*) FROM token_families GROUP BY revoked_reason",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        eprintln!(
            "audit: {actions:?}\nfamilies by revocation: {revoked:?}\n{}",
            cluster.logs()
        );
        let mut seen = std::collections::HashSet::new();
        for token in ledger.refused_refresh.iter().filter(|t| seen.insert(*t)) {
            let state: Option<String> = sqlx::query_scalar(
                "SELECT concat_ws(' ', 'created:', r.created_at, 'rotated:', r.rotated_at, \
                 'family revoked:', f.revoked_at, f.revoked_reason) \
                 FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
                 WHERE r.token_hash = sha256(convert_to($1, 'UTF8'))",
            )
            .bind(token)
            .fetch_optional(&pool)
            .await
            .unwrap_or_default();
            eprintln!(
                "refused refresh token: {}",
                state.as_deref().unwrap_or("no such row")
            );
        }
    }
    assert!(ledger.unexpected.is_empty(), "{:#?}", ledger.unexpected);
    let pool = sqlx::PgPool::connect(&cluster.url(database)).await.unwrap();
    let mut inactive = Vec::new();
    for (client, access) in &ledger.access {
        let (_, body) = as_a_client(cluster, || async {
            let req = http()
                .post(format!("{}/oauth2/introspect", planes.auth_url(0)))
                .basic_auth(client.client_id, client.secret)
                .form(&[("token", access.as_str())]);
            let (status, body, _) = send(req).await;
            (status, body)
        })
        .await;
        if body["active"] != true {
            let jti = support::jwt_parts(access).1["jti"]
                .as_str()
                .unwrap()
                .to_owned();
            let why: Option<String> = queried(|| {
                sqlx::query_scalar(
                    "SELECT concat_ws(' ', 'revoked:', a.revoked_at, 'family revoked:', \
                     f.revoked_at, f.revoked_reason, 'expires:', a.expires_at, 'now:', now()) \
                     FROM access_token_records a \
                     LEFT JOIN token_families f ON f.id = a.family_id WHERE a.jti = $1::uuid",
                )
                .bind(&jti)
                .fetch_optional(&pool)
            })
            .await;
            inactive.push(format!("{} {jti}: {body} {why:?}", client.client_id));
        }
    }
    assert!(
        inactive.is_empty(),
        "every access token received is active: {inactive:#?}"
    );
    for (i, (client, refresh)) in ledger.refresh.iter().enumerate() {
        let base = planes.auth_url(i);
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ];
        let (status, body) = as_a_client(cluster, || token(&base, *client, &form)).await;
        assert_eq!(
            status.map(|s| s.0),
            Some(200),
            "a refresh token received still refreshes: {body}"
        );
    }
    let ids: Vec<uuid::Uuid> = ledger.users.iter().map(|u| u.parse().unwrap()).collect();
    let users: i64 = queried(|| {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&pool)
    })
    .await;
    let texts: Vec<String> = ledger.users.clone();
    let audited: i64 = queried(|| {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT target_id) FROM audit_events \
             WHERE action = 'user.created' AND target_id = ANY($1)",
        )
        .bind(&texts)
        .fetch_one(&pool)
    })
    .await;
    pool.close().await;
    assert_eq!(
        users as usize,
        ids.len(),
        "every user created with a 201 exists"
    );
    assert_eq!(audited as usize, ids.len(), "with its audit row");
}

/// An outage is said once per process, not once per refused request: after the three events at
/// most six ERROR lines (a switchover is two short outages: the old leader stops, then the new
/// one takes over), and its end is logged.
fn said_once(planes: &Planes) {
    for server in planes.auth.iter().chain([&planes.admin]) {
        let out = server.output();
        let errors: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .collect();
        assert!(
            errors.len() <= 6,
            "{} ERROR lines:\n{}",
            errors.len(),
            errors.join("\n")
        );
        assert!(out.contains("database available again"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patroni_failover_and_switchover_lose_nothing_acknowledged() {
    // Only where PostgreSQL is part of the run: its server binaries come with it.
    if opentrusty_testkit::postgres_url().is_none() {
        return;
    }
    require("patroni", "patroni");
    require("etcd", "etcd-server");
    require("haproxy", "haproxy");
    let cluster = Cluster::start().await;
    {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&cluster.url("postgres"))
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE opentrusty")
            .execute(&mut c)
            .await
            .unwrap();
        let _ = c.close().await;
    }
    let url = cluster.url("opentrusty");
    let store = opentrusty_store::Store::connect(&url, &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let seed = support::seed(&store).await;
    support::bootstrap_platform_admin(&store, ROOT, PASSWORD).await;
    store.close().await;

    let dir = tempfile::tempdir().unwrap();
    // Behind one load balancer, every auth process has the same issuer.
    let ports = [free_port(), free_port()];
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut auth = Vec::new();
    for port in ports {
        auth.push(Server::start(
            dir.path(),
            "auth",
            &url,
            port,
            &[("OPENTRUSTY_ISSUER", issuer.as_str())],
        ));
    }
    for a in &mut auth {
        a.wait_healthy().await;
    }
    let mut admin = Server::admin(dir.path(), &url, free_port(), &auth[0].issuer());
    admin.wait_healthy().await;
    let (session, csrf) = support::console_sign_in(&auth[0].url(""), ROOT, PASSWORD).await;
    let planes = Arc::new(Planes {
        auth,
        admin,
        session,
        csrf,
        tenant: seed.tenant_a.0.to_string(),
    });

    let leader = cluster.leader().await.unwrap();
    let (window, ledger) = through(
        "SIGKILL of the leader's postmaster",
        &cluster,
        &planes,
        async { cluster.kill_postmaster(&leader) },
        true,
    )
    .await;
    assert!(window < Duration::from_secs(60), "{window:?}");
    nothing_lost(&cluster, &planes, &ledger, "opentrusty").await;

    let leader = cluster.leader().await.unwrap();
    let switch = async { cluster.switchover(&leader) };
    let (window, ledger) = through("switchover", &cluster, &planes, switch, true).await;
    assert!(window < Duration::from_secs(60), "{window:?}");
    assert_ne!(
        cluster.leader().await.unwrap(),
        leader,
        "the leadership moved"
    );
    nothing_lost(&cluster, &planes, &ledger, "opentrusty").await;

    // A leader that stops answering without closing anything (frozen; to its peers, as if the
    // network to it were cut): no process may hang on its dead connections. The thawed member
    // may need a rewind before it follows again: the test ends at a serving leader.
    let leader = cluster.leader().await.unwrap();
    let freeze = async {
        let frozen = cluster.freeze(&leader);
        let deadline = Instant::now() + Duration::from_secs(60);
        while cluster.leader().await.is_none_or(|l| l == leader) {
            assert!(
                Instant::now() < deadline,
                "no new leader\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Cluster::thaw(&frozen);
    };
    let (window, ledger) = through("the leader frozen", &cluster, &planes, freeze, false).await;
    assert!(window < Duration::from_secs(60), "{window:?}");
    nothing_lost(&cluster, &planes, &ledger, "opentrusty").await;

    said_once(&planes);
}
