//! A rolling upgrade across the newest migration, on PostgreSQL and SQLite: the release before
//! it (the commit before the newest migration was added, built from the repository's history
//! into `target/tmp/previous-release`) serves on its own schema under load; the current
//! `migrate` applies the newest migration while it serves; the old processes keep serving
//! beside new ones and then new ones alone, and nothing a client received is lost. A current
//! process started on the older schema refuses it and says what to run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentrusty_testkit::TestDb;
use reqwest::Url;
use serde_json::{Value, json};
use support::{
    ALICE, Browser, FIRST_PARTY, PASSWORD, SERVICE, Server, TestClient, code_params, free_port,
    http, pkce,
};

const ROOT: &str = "root@platform.example";

/// Runs `cmd`, failing with its output if it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The commit before the one that added the newest migration (HEAD when that migration is not
/// committed yet): the release whose processes are serving when the migration is applied.
fn previous_release_commit(repo: &Path) -> String {
    let newest = opentrusty_store::MIGRATIONS.last().unwrap().version;
    let dir = repo.join("crates/store/migrations/postgres");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(&format!("{newest:04}_")))
        .unwrap_or_else(|| panic!("no file for migration {newest} in {}", dir.display()));
    let git = |args: &[&str]| -> String {
        run(
            Command::new("git").arg("-C").arg(repo).args(args),
            "git (the upgrade test builds the previous release from the repository's history)",
        )
        .trim()
        .to_owned()
    };
    let added = git(&[
        "log",
        "-1",
        "--format=%H",
        "--diff-filter=A",
        "--",
        &format!("crates/store/migrations/postgres/{file}"),
    ]);
    if added.is_empty() {
        git(&["rev-parse", "HEAD"])
    } else {
        git(&["rev-parse", &format!("{added}^")])
    }
}

/// The previous release's server binary, built once (and kept between runs) in its own target
/// directory: a cargo inside this test cannot share the running build's.
fn previous_release() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let commit = previous_release_commit(&repo);
            let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("previous-release");
            let src = root.join(&commit[..12]);
            if !src.join("Cargo.toml").exists() {
                let _ = std::fs::remove_dir_all(&src);
                std::fs::create_dir_all(&src).unwrap();
                let archive = root.join("source.tar");
                run(
                    Command::new("git")
                        .arg("-C")
                        .arg(&repo)
                        .args(["archive", "--format=tar", "-o"])
                        .arg(&archive)
                        .arg(&commit),
                    "git archive of the previous release",
                );
                run(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(&archive)
                        .arg("-C")
                        .arg(&src),
                    "unpacking the previous release",
                );
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            eprintln!("building the previous release {commit} (kept for later runs)");
            run(
                Command::new(cargo)
                    .current_dir(&src)
                    .args(["build", "--locked", "--bin", "opentrusty"])
                    .env("CARGO_TARGET_DIR", root.join("target")),
                "building the previous release",
            );
            root.join("target/debug/opentrusty")
        })
        .clone()
}

/// What the clients received, and anything they should not have.
#[derive(Default)]
struct Ledger {
    access: Vec<(TestClient, String)>,
    /// Refresh tokens left unused, each the newest of its chain.
    refresh: Vec<String>,
    users: Vec<String>,
    requests: usize,
    failures: Vec<String>,
}

struct Fleet {
    auth: Mutex<Vec<String>>,
    admin: Mutex<Vec<String>>,
    session: String,
    csrf: String,
    tenant: String,
}

impl Fleet {
    fn auth(&self, n: usize) -> String {
        let auth = self.auth.lock().unwrap();
        auth[n % auth.len()].clone()
    }

    fn admin(&self, n: usize) -> String {
        let admin = self.admin.lock().unwrap();
        admin[n % admin.len()].clone()
    }
}

async fn token(base: &str, client: TestClient, form: &[(&str, &str)]) -> (u16, Value) {
    let r = support::token_request_to(base, client, form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A sign-in through the pages of `auth` and the code's exchange: access and refresh token.
async fn sign_in(auth: &str) -> Result<(String, String), String> {
    let browser = Browser::at(auth);
    let (challenge, verifier) = pkce();
    let params = code_params(FIRST_PARTY, "openid offline_access", "upgrade", &challenge);
    let start = Url::parse_with_params(&format!("{auth}/oauth2/authorize"), &params).unwrap();
    let code = browser.journey(start, Some((ALICE, PASSWORD))).await.code();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", support::CALLBACK),
        ("code_verifier", verifier.as_str()),
    ];
    match token(auth, FIRST_PARTY, &form).await {
        (200, body) => Ok((
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )),
        (status, body) => Err(format!("code exchange at {auth}: {status} {body}")),
    }
}

/// Requests on both planes until `stop`, spread over the fleet as it is at each request: client
/// credentials, a refresh chain, a sign-in now and then, and a user created by the admin plane.
async fn load(fleet: Arc<Fleet>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut chain: Option<String> = None;
    let mut n = 0usize;
    let failed = |what: String| ledger.lock().unwrap().failures.push(what);
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let auth = fleet.auth(n);
        let cc = [("grant_type", "client_credentials"), ("scope", "api:read")];
        match token(&auth, SERVICE, &cc).await {
            (200, body) => {
                let t = body["access_token"].as_str().unwrap().to_owned();
                ledger.lock().unwrap().access.push((SERVICE, t));
            }
            (s, body) => failed(format!("client_credentials at {auth}: {s} {body}")),
        }
        match chain.take() {
            None => match sign_in(&auth).await {
                Ok((access, refresh)) => {
                    ledger.lock().unwrap().access.push((FIRST_PARTY, access));
                    chain = Some(refresh);
                }
                Err(e) => failed(e),
            },
            Some(current) => {
                let form = [("grant_type", "refresh_token"), ("refresh_token", &current)];
                match token(&auth, FIRST_PARTY, &form).await {
                    (200, body) => {
                        let mut l = ledger.lock().unwrap();
                        let access = body["access_token"].as_str().unwrap().to_owned();
                        l.access.push((FIRST_PARTY, access));
                        let next = body["refresh_token"].as_str().unwrap().to_owned();
                        // Now and then a chain is left for a new sign-in; its newest token
                        // must still work at the end.
                        if n.is_multiple_of(10) {
                            l.refresh.push(next);
                        } else {
                            chain = Some(next);
                        }
                    }
                    (s, body) => failed(format!("refresh at {auth}: {s} {body}")),
                }
            }
        }
        let admin = fleet.admin(n);
        let email = format!("upgrade-{}@acme.example", uuid::Uuid::now_v7().simple());
        let r = http()
            .post(format!("{admin}/api/v1/tenants/{}/users", fleet.tenant))
            .header("cookie", format!("ot_session={}", fleet.session))
            .header("x-csrf-token", &fleet.csrf)
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 201 {
            ledger
                .lock()
                .unwrap()
                .users
                .push(body["id"].as_str().unwrap().to_owned());
        } else {
            failed(format!("create user at {admin}: {status} {body}"));
        }
        ledger.lock().unwrap().requests += 3;
    }
    if let Some(last) = chain {
        ledger.lock().unwrap().refresh.push(last);
    }
}

fn migrate_with(binary: &Path, dir: &Path, url: &str) -> String {
    run(
        support::opentrusty_at(binary, dir)
            .arg("migrate")
            .env("OPENTRUSTY_DATABASE_URL", url),
        &format!("{} migrate", binary.display()),
    )
}

fn auth_with(binary: &Path, dir: &Path, url: &str, issuer: &str) -> Server {
    Server::start_binary(
        binary,
        dir,
        "auth",
        url,
        free_port(),
        &[("OPENTRUSTY_ISSUER", issuer)],
    )
}

fn admin_with(binary: &Path, dir: &Path, url: &str, issuer: &str) -> Server {
    Server::start_binary(
        binary,
        dir,
        "admin",
        url,
        free_port(),
        &[
            ("OPENTRUSTY_ISSUER", issuer),
            ("OPENTRUSTY_CONSOLE_ORIGINS", "https://console.example"),
        ],
    )
}

async fn a_rolling_upgrade_loses_nothing(db: TestDb) {
    let previous = previous_release();
    let current = PathBuf::from(env!("CARGO_BIN_EXE_opentrusty"));
    let dir = tempfile::tempdir().unwrap();
    let url = db.url().to_owned();

    // Release N on its own schema, serving.
    migrate_with(&previous, dir.path(), &url);
    // The fixtures are written by the current store: only tables both releases share.
    let store = db.store().await;
    let seed = support::seed(&store).await;
    support::bootstrap_platform_admin(&store, ROOT, PASSWORD).await;
    store.close().await;
    // One issuer for the plane, as behind a load balancer: the first process's address.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut old_auth = Server::start_binary(
        &previous,
        dir.path(),
        "auth",
        &url,
        port,
        &[("OPENTRUSTY_ISSUER", issuer.as_str())],
    );
    old_auth.wait_healthy().await;
    let mut old_admin = admin_with(&previous, dir.path(), &url, &issuer);
    old_admin.wait_healthy().await;

    // A process of release N+1 started before the migration refuses the older schema.
    let mut early = auth_with(&current, dir.path(), &url, &issuer);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = early.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a current process served an older schema:\n{}",
            early.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let said = early.output();
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("the database schema is not current")
            && said.contains("run `opentrusty migrate` first"),
        "the refusal says what to run:\n{said}"
    );

    let (session, csrf) = support::console_sign_in(&old_auth.url(""), ROOT, PASSWORD).await;
    let fleet = Arc::new(Fleet {
        auth: Mutex::new(vec![old_auth.url("")]),
        admin: Mutex::new(vec![old_admin.url("")]),
        session,
        csrf,
        tenant: seed.tenant_a.0.to_string(),
    });
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(fleet.clone(), ledger.clone(), stop.clone()));

    // N+1's migration while N serves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let (current_for_migrate, dir_path, url_for_migrate) =
        (current.clone(), dir.path().to_owned(), url.clone());
    let migrated = tokio::task::spawn_blocking(move || {
        migrate_with(&current_for_migrate, &dir_path, &url_for_migrate)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let newest = opentrusty_store::MIGRATIONS.last().unwrap().version;
    assert!(
        migrated.contains(&newest.to_string()),
        "the newest migration was applied: {migrated}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ledger.lock().unwrap().requests;

    // N and N+1 side by side, then N+1 alone.
    let mut new_auth = auth_with(&current, dir.path(), &url, &issuer);
    new_auth.wait_healthy().await;
    let mut new_admin = admin_with(&current, dir.path(), &url, &issuer);
    new_admin.wait_healthy().await;
    fleet.auth.lock().unwrap().push(new_auth.url(""));
    fleet.admin.lock().unwrap().push(new_admin.url(""));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let side_by_side = ledger.lock().unwrap().requests - before;
    *fleet.auth.lock().unwrap() = vec![new_auth.url("")];
    *fleet.admin.lock().unwrap() = vec![new_admin.url("")];
    tokio::time::sleep(Duration::from_millis(200)).await;
    old_auth.kill();
    old_admin.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap();
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "migration applied in {:.2} s while the previous release served; {} requests in all, \
         {side_by_side} with both releases serving; {} access tokens, {} refresh tokens, {} \
         users received",
        took.as_secs_f64(),
        ledger.requests,
        ledger.access.len(),
        ledger.refresh.len(),
        ledger.users.len()
    );
    assert!(
        ledger.failures.is_empty(),
        "every request was served: {:#?}",
        ledger.failures
    );
    assert!(side_by_side > 0 && !ledger.users.is_empty());

    // Nothing received is lost, checked on the new release.
    for (client, access) in &ledger.access {
        let r = http()
            .post(new_auth.url("/oauth2/introspect"))
            .basic_auth(client.client_id, client.secret)
            .form(&[("token", access.as_str())])
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["active"], true, "an access token received: {body}");
    }
    for refresh in &ledger.refresh {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let (status, body) = token(&new_auth.url(""), FIRST_PARTY, &form).await;
        assert_eq!(
            status, 200,
            "a refresh token received still refreshes: {body}"
        );
    }
    let store = db.store().await;
    for id in &ledger.users {
        let r = http()
            .get(new_admin.url(&format!("/api/v1/tenants/{}/users/{id}", fleet.tenant)))
            .header("cookie", format!("ot_session={}", fleet.session))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a user created with a 201 exists");
    }
    let audited = store
        .list_audit(&opentrusty_store::AuditQuery {
            action: Some(opentrusty_core::audit::action::USER_CREATED.to_owned()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.target
                .as_ref()
                .is_some_and(|t| ledger.users.contains(&t.id))
        })
        .count();
    assert_eq!(audited, ledger.users.len(), "each with its audit row");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_across_the_newest_migration_loses_nothing_on_postgres() {
    let Some(db) = TestDb::postgres(false).await else {
        return;
    };
    a_rolling_upgrade_loses_nothing(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_across_the_newest_migration_loses_nothing_on_sqlite() {
    a_rolling_upgrade_loses_nothing(TestDb::sqlite(false).await).await;
}
