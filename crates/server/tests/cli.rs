//! End-to-end tests of the real `opentrusty` binary: start-up on an empty directory, migrations,
//! bootstrap, configuration errors, probes and signals. Database-backed cases run on SQLite and,
//! when `OPENTRUSTY_TEST_DATABASE_URL` is set, on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opentrusty_core::audit::{AuditEvent, action};
use opentrusty_core::rbac::{Permission, Scope, allows};
use opentrusty_password::{PasswordHasher, Verification};
use opentrusty_store::{AuditQuery, Store, Subject};
use opentrusty_testkit::TestDb;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The binary with a clean `OPENTRUSTY_*` environment, run in `dir`.
fn opentrusty(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opentrusty"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPENTRUSTY_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run opentrusty")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process, killed if the test ends without stopping it. Its output goes to a
/// file: a pipe nobody reads while it serves would fill up with request logs and stall it.
struct Server {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    fn start(mut cmd: Command, port: u16) -> Server {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = cmd
            .env("OPENTRUSTY_BIND_ADDRESS", "127.0.0.1")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn opentrusty");
        Server {
            child: Some(child),
            port,
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits for the process to exit: its status and everything it printed.
    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.take().unwrap().wait().unwrap();
        (status, self.output())
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/health` answers, failing with the server's output if it exits first.
    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(self.url("/health")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "server exited with {status} before answering:\n{}",
                    self.output()
                );
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends `signal` and returns the exit status and combined output.
    fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        self.signal(signal);
        self.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn first_serve_all_on_an_empty_directory_is_healthy_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = opentrusty(dir.path());
    cmd.args(["serve", "all"])
        .env("OPENTRUSTY_AUTH_PORT", port.to_string());
    let mut server = Server::start(cmd, port);
    server.wait_healthy().await;

    let (status, health) = get_json(&server.url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "pass");
    let (status, ready) = get_json(&server.url("/ready")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    let (status, missing) = get_json(&server.url("/no/such/path")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "not_found");

    let key = dir.path().join("opentrusty.db.secret-key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let db = dir.path().join("opentrusty.db");
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, output) = server.stop("TERM");
    assert!(status.success(), "{status}: {output}");
    assert!(output.contains("development secret key"), "{output}");

    // A second start reuses the key and the migrated database.
    let before = std::fs::read_to_string(&key).unwrap();
    let mut cmd = opentrusty(dir.path());
    cmd.arg("server")
        .env("OPENTRUSTY_AUTH_PORT", port.to_string());
    let mut server = Server::start(cmd, port);
    server.wait_healthy().await;
    assert_eq!(get_json(&server.url("/ready")).await.0, 200);
    let (status, _) = server.stop("INT");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);
}

#[tokio::test]
async fn sigterm_drains_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = opentrusty(dir.path());
    cmd.args(["serve", "all"])
        .env("OPENTRUSTY_AUTH_PORT", port.to_string());
    let mut server = Server::start(cmd, port);
    server.wait_healthy().await;

    let url = server.url("/ready");
    let mut load = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut bad) = (0u32, 0u32);
            let until = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < until {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(_) => bad += 1,
                    // Refused or closed before a response: the server had stopped accepting.
                    Err(_) => break,
                }
            }
            (ok, bad)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.signal("TERM");
    let mut total_ok = 0;
    for task in load {
        let (ok, bad) = task.await.unwrap();
        assert_eq!(bad, 0, "a request that was answered failed");
        total_ok += ok;
    }
    assert!(total_ok > 0);
    let (status, output) = server.wait();
    assert!(status.success(), "{output}");
    assert!(output.contains("SIGTERM"));
}

#[tokio::test]
async fn migrate_twice_is_a_no_op_the_second_time() {
    for db in [TestDb::sqlite(false).await]
        .into_iter()
        .chain(TestDb::postgres(false).await)
    {
        let dir = tempfile::tempdir().unwrap();
        let migrate = |args: &[&str]| {
            let out = run(opentrusty(dir.path())
                .env("OPENTRUSTY_DATABASE_URL", db.url())
                .arg("migrate")
                .args(args));
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout)
        };
        let known = opentrusty_store::MIGRATIONS;
        let status = migrate(&["--status"]);
        assert!(
            status.contains(&format!("0 applied, {} pending", known.len())),
            "{status}"
        );
        let applied = migrate(&[]);
        for m in known {
            assert!(
                applied.contains(&format!("applied migration {} ({})", m.version, m.name)),
                "{applied}"
            );
        }
        assert!(migrate(&[]).contains("up to date"));
        let status = migrate(&["--status"]);
        assert!(
            status.contains(&format!("{} applied, 0 pending", known.len())),
            "{status}"
        );
        for m in known {
            assert!(status.contains(m.name), "{status}");
        }
    }
}

#[tokio::test]
async fn migrate_dry_run_lists_what_would_lock_and_changes_nothing() {
    for db in [TestDb::sqlite(false).await]
        .into_iter()
        .chain(TestDb::postgres(false).await)
    {
        let dir = tempfile::tempdir().unwrap();
        let migrate = |args: &[&str]| {
            let out = run(opentrusty(dir.path())
                .env("OPENTRUSTY_DATABASE_URL", db.url())
                .arg("migrate")
                .args(args));
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout)
        };
        let known = opentrusty_store::MIGRATIONS;
        let plan = migrate(&["--dry-run"]);
        for m in known {
            assert!(
                plan.contains(&format!("would apply migration {} ({})", m.version, m.name)),
                "{plan}"
            );
        }
        assert!(
            plan.contains("token_families (created by this run): writes to it wait for one scan"),
            "{plan}"
        );
        // Migration 5 adds a column to token_families, then updates it: the exclusive lock of
        // the first is held across the second.
        let fifth = plan
            .split("would apply migration 5")
            .nth(1)
            .and_then(|rest| rest.split("would apply migration 6").next())
            .unwrap();
        assert!(
            fifth.contains("token_families (created by this run): every statement on it, reads too, waits until the migration commits"),
            "{plan}"
        );
        let status = migrate(&["--status"]);
        assert!(
            status.contains(&format!("0 applied, {} pending", known.len())),
            "nothing was changed: {status}"
        );

        // One migration behind, with rows in the table it indexes: the plan names the size
        // and an estimate.
        migrate(&[]);
        let undo_six = [
            "DELETE FROM schema_migrations WHERE version = 6",
            "DROP TABLE grant_writers",
            "DROP INDEX token_families_session_id",
        ];
        if db.url().starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
            for sql in undo_six {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            for sql in undo_six {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let plan = migrate(&["--dry-run"]);
        assert!(
            plan.contains("would apply migration 6 (settled grant writes)"),
            "{plan}"
        );
        assert!(!plan.contains("migration 5"), "{plan}");
        assert!(
            plan.contains("token_families (about 0 rows): writes to it wait for one scan of the table; expected 1 ms"),
            "{plan}"
        );
        assert!(migrate(&["--status"]).contains("1 pending"));
        assert!(migrate(&[]).contains("applied migration 6"));
        assert!(migrate(&["--dry-run"]).contains("nothing would be applied"));
    }
}

#[tokio::test]
async fn planes_refuse_to_start_with_pending_migrations() {
    for db in [TestDb::sqlite(false).await]
        .into_iter()
        .chain(TestDb::postgres(false).await)
    {
        for mode in ["admin", "auth"] {
            let dir = tempfile::tempdir().unwrap();
            let out = run(opentrusty(dir.path())
                .args(["serve", mode])
                .env("OPENTRUSTY_DATABASE_URL", db.url())
                .env("OPENTRUSTY_SECRET_KEY", SECRET_KEY)
                .env("OPENTRUSTY_ADMIN_PORT", free_port().to_string())
                .env("OPENTRUSTY_AUTH_PORT", free_port().to_string()));
            assert_eq!(out.status.code(), Some(1), "{mode}");
            let err = text(&out.stderr);
            assert!(
                err.contains("pending") && err.contains("run `opentrusty migrate`"),
                "{err}"
            );
        }
    }
}

#[tokio::test]
async fn bootstrap_twice_creates_one_admin_and_one_audit_row() {
    for db in TestDb::all(true).await {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = || {
            run(opentrusty(dir.path())
                .arg("bootstrap")
                .env("OPENTRUSTY_DATABASE_URL", db.url())
                .env("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "Root@Example.com")
                .env("OPENTRUSTY_ARGON2_MEMORY_KIB", "8192"))
        };
        let first = bootstrap();
        assert!(first.status.success(), "{}", text(&first.stderr));
        let stdout = text(&first.stdout);
        assert!(
            stdout.contains("created platform administrator Root@Example.com"),
            "{stdout}"
        );
        let password = stdout
            .lines()
            .find_map(|l| l.strip_prefix("generated password, shown only this once: "))
            .expect("the generated password is printed")
            .to_owned();
        assert!(password.chars().count() >= 20);

        let second = bootstrap();
        assert!(second.status.success());
        assert!(text(&second.stdout).contains("already exists; nothing was changed"));
        assert!(!text(&second.stdout).contains("password"));

        let store = db.store().await;
        let events: Vec<AuditEvent> = store
            .list_audit(&AuditQuery {
                tenant: None,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let bootstrapped: Vec<_> = events
            .iter()
            .filter(|e| e.action == action::PLATFORM_ADMIN_BOOTSTRAPPED)
            .collect();
        assert_eq!(bootstrapped.len(), 1);
        let admin = store
            .find_user_for_sign_in(None, "root@example.com")
            .await
            .unwrap()
            .map(|(user, _)| user)
            .expect("the admin exists");
        assert_eq!(admin.tenant_id, None);
        let grants = store.grants_of(Subject::User(admin.id)).await.unwrap();
        assert!(allows(
            &grants,
            Permission::PlatformManageTenants,
            &Scope::Platform
        ));
        let hash = store.password_hash(admin.id).await.unwrap().unwrap();
        let hasher = PasswordHasher::new(Default::default()).unwrap();
        assert!(matches!(
            hasher.verify(&password, &hash),
            Verification::Match { .. }
        ));
        assert_eq!(
            hasher.verify("wrong password", &hash),
            Verification::Mismatch
        );
    }
}

#[tokio::test]
async fn bootstrap_uses_the_given_password_and_never_prints_it() {
    let db = TestDb::sqlite(true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(opentrusty(dir.path())
        .args(["bootstrap", "--email", "ops@example.com"])
        .env("OPENTRUSTY_DATABASE_URL", db.url())
        .env(
            "OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD",
            "a long operator passphrase",
        )
        .env("OPENTRUSTY_ARGON2_MEMORY_KIB", "8192"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("a long operator passphrase"));
    let store = db.store().await;
    let admin = store
        .find_user_for_sign_in(None, "ops@example.com")
        .await
        .unwrap()
        .map(|(user, _)| user)
        .unwrap();
    let hash = store.password_hash(admin.id).await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"), "{hash}");
}

#[tokio::test]
async fn configuration_errors_name_the_variable_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // (arguments, environment, the flag or variable the error must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["serve", "all"],
            &[("OPENTRUSTY_AUTH_PORT", "abc")],
            "OPENTRUSTY_AUTH_PORT",
        ),
        (
            &["serve", "all", "--admin-port", "70000"],
            &[],
            "--admin-port",
        ),
        (&["serve", "auth"], &[], "OPENTRUSTY_SECRET_KEY"),
        (
            &["serve", "admin"],
            &[("OPENTRUSTY_SECRET_KEY", "c2hvcnQ=")],
            "OPENTRUSTY_SECRET_KEY",
        ),
        (
            &["serve"],
            &[("OPENTRUSTY_MODE", "everything")],
            "OPENTRUSTY_MODE",
        ),
        (&["serve"], &[], "OPENTRUSTY_MODE"),
        (
            &["migrate"],
            &[("OPENTRUSTY_DATABASE_URL", "mysql://db")],
            "OPENTRUSTY_DATABASE_URL",
        ),
        (&["bootstrap"], &[], "OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL"),
        (
            &["bootstrap"],
            &[
                ("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "a@example.com"),
                ("OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD", "short"),
            ],
            "OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD",
        ),
        (
            &["serve", "all"],
            &[("OPENTRUSTY_ARGON2_ITERATIONS", "0")],
            "OPENTRUSTY_ARGON2_ITERATIONS",
        ),
    ];
    for (args, vars, named) in cases {
        let mut cmd = opentrusty(dir.path());
        cmd.args(*args);
        for (k, v) in *vars {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {vars:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(named), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert!(!err.contains("c2hvcnQ="), "the secret is never echoed");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn auth_and_admin_serve_their_own_ports_and_report_readiness() {
    let db = match TestDb::postgres(true).await {
        Some(pg) => pg,
        None => TestDb::sqlite(true).await,
    };
    let dir = tempfile::tempdir().unwrap();
    let (auth_port, admin_port) = (free_port(), free_port());
    let start = |mode: Option<&str>, port: u16| {
        let mut cmd = opentrusty(dir.path());
        match mode {
            Some(m) => cmd.args(["serve", m]),
            None => cmd.arg("serve").env("OPENTRUSTY_MODE", "admin"),
        };
        cmd.env("OPENTRUSTY_DATABASE_URL", db.url())
            .env("OPENTRUSTY_SECRET_KEY", SECRET_KEY)
            .env("OPENTRUSTY_AUTH_PORT", auth_port.to_string())
            .env("OPENTRUSTY_ADMIN_PORT", admin_port.to_string());
        Server::start(cmd, port)
    };
    let mut auth = start(Some("auth"), auth_port);
    let mut admin = start(None, admin_port);
    auth.wait_healthy().await;
    admin.wait_healthy().await;
    assert_eq!(
        get_json(&auth.url("/health")).await.1["service"],
        "opentrusty-auth"
    );
    assert_eq!(
        get_json(&admin.url("/health")).await.1["service"],
        "opentrusty-admin"
    );
    for server in [&auth, &admin] {
        let (status, body) = get_json(&server.url("/ready")).await;
        assert_eq!(status, 200, "{body}");
    }

    // Forget the applied migration behind the servers' backs: readiness must notice.
    let store = db.store().await;
    forget_migrations(&store, db.url()).await;
    for server in [&auth, &admin] {
        let r = reqwest::get(server.url("/ready")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "not_ready");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("opentrusty migrate"),
            "{body}"
        );
        // Liveness is unaffected.
        assert_eq!(get_json(&server.url("/health")).await.0, 200);
    }
    for server in [auth, admin] {
        let (status, output) = server.stop("TERM");
        assert!(status.success(), "{output}");
        assert!(
            output.contains("\"level\":\"INFO\""),
            "JSON logs by default: {output}"
        );
    }
}

async fn forget_migrations(store: &Store, url: &str) {
    use sqlx::Connection as _;
    match store.backend() {
        opentrusty_store::Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("DELETE FROM schema_migrations")
                .execute(&mut c)
                .await
                .unwrap();
        }
        opentrusty_store::Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("DELETE FROM schema_migrations")
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn serve_bootstraps_the_first_admin_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = opentrusty(dir.path());
    cmd.args(["serve", "all"])
        .env("OPENTRUSTY_AUTH_PORT", port.to_string())
        .env("OPENTRUSTY_BOOTSTRAP_ADMIN_EMAIL", "first@example.com")
        .env(
            "OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD",
            "first admin passphrase",
        )
        .env("OPENTRUSTY_ARGON2_MEMORY_KIB", "8192");
    let mut server = Server::start(cmd, port);
    server.wait_healthy().await;
    let (status, output) = server.stop("TERM");
    assert!(status.success(), "{output}");
    assert!(
        output.contains("created platform administrator first@example.com"),
        "{output}"
    );
    assert!(!output.contains("first admin passphrase"));
    let url = format!("sqlite://{}", dir.path().join("opentrusty.db").display());
    let store = Store::connect(&url, &Default::default()).await.unwrap();
    assert!(store.platform_admin_exists().await.unwrap());
}

/// A misspelt `OPENTRUSTY_*` variable is named in a warning with the setting it meant, its value
/// never shown, before the command goes on as if it were absent.
#[test]
fn an_unknown_variable_is_named_with_the_setting_it_meant() {
    let dir = tempfile::tempdir().unwrap();
    let misspelt = concat!("OPENTRUSTY_", "ISUER");
    let out = run(opentrusty(dir.path())
        .args(["serve", "all"])
        .env(misspelt, "https://value-never-shown.example")
        .env("OPENTRUSTY_AUTH_PORT", "abc"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("warning: ")
            && lines[0].contains(misspelt)
            && lines[0].contains("did you mean OPENTRUSTY_ISSUER?"),
        "{err}"
    );
    assert!(lines[1].contains("OPENTRUSTY_AUTH_PORT"), "{err}");
    assert!(!err.contains("value-never-shown"), "{err}");
    // The test suite's own variables are not settings, and not reported.
    let out = run(opentrusty(dir.path())
        .arg("cleanup")
        .env("OPENTRUSTY_TEST_ANYTHING", "1")
        .env("OPENTRUSTY_DATABASE_URL", "mysql://db"));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_explains_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(opentrusty(dir.path()).arg("--help"));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "serve",
        "server",
        "migrate",
        "bootstrap",
        "OPENTRUSTY_DATABASE_URL",
        "Exit codes",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let out = run(opentrusty(dir.path()).args(["serve", "--help"]));
    let help = text(&out.stdout);
    for word in [
        "OPENTRUSTY_AUTH_PORT",
        "OPENTRUSTY_ADMIN_PORT",
        "OPENTRUSTY_MODE",
        "auth",
        "admin",
        "all",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}
