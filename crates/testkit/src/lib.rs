//! Test support: throwaway databases, and the seeded world most tests share (`world`). SQLite
//! databases are files in a temporary directory. PostgreSQL databases are created per test from
//! a template migrated once per schema version (keyed by the migrations' fingerprint), on the
//! server named by `OPENTRUSTY_TEST_DATABASE_URL`, and dropped when the test ends. With the
//! variable set and the server unreachable, tests panic: a PostgreSQL run never silently turns
//! into an SQLite-only run.

pub mod world;

use std::time::Duration;

use opentrusty_store::{ConnectOptions, Store, schema_fingerprint};
use sqlx::{Connection, Executor, PgConnection};

/// Names the PostgreSQL server tests use (any database on it the user may connect to).
pub const TEST_DATABASE_URL_VAR: &str = "OPENTRUSTY_TEST_DATABASE_URL";

/// What a PostgreSQL test that could not run prints, whatever the test harness captures; the
/// test script fails a run that asked for PostgreSQL when this appears.
pub const SKIPPED_MARKER: &str = "SKIPPED (no PostgreSQL):";

/// The PostgreSQL server to test against, or `None` after saying that the calling test's
/// PostgreSQL variant did not run.
pub fn postgres_url() -> Option<String> {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) => Some(url),
        Err(_) => {
            use std::io::Write as _;
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            // Written to the process's stderr, not through eprintln!, which the harness keeps
            // to itself for a test that passes.
            let _ = writeln!(
                std::io::stderr(),
                "{SKIPPED_MARKER} {test}: {TEST_DATABASE_URL_VAR} is not set"
            );
            None
        }
    }
}

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    url: String,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// The URL to hand to `Store::connect` or to the binary as `OPENTRUSTY_DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh SQLite file, migrated when `migrated` is true.
    pub async fn sqlite(migrated: bool) -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("opentrusty.db").display());
        if migrated {
            let store = connect(&url).await;
            store
                .migrate()
                .await
                .expect("migrate the SQLite test database");
            store.close().await;
        }
        TestDb {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` when `OPENTRUSTY_TEST_DATABASE_URL` is not set.
    pub async fn postgres(migrated: bool) -> Option<TestDb> {
        let admin_url = postgres_url()?;
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{TEST_DATABASE_URL_VAR} is set but PostgreSQL is unreachable: {e}")
        });
        let name = format!("ot_test_{}", uuid::Uuid::now_v7().simple());
        if migrated {
            let template = ensure_template(&mut admin, &admin_url).await;
            create_from_template(&mut admin, &name, &template).await;
        } else {
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .await
                .expect("create a PostgreSQL test database");
        }
        let _ = admin.close().await;
        Some(TestDb {
            url: with_database(&admin_url, &name),
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// Both backends: SQLite always, PostgreSQL when configured.
    pub async fn all(migrated: bool) -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite(migrated).await];
        dbs.extend(TestDb::postgres(migrated).await);
        dbs
    }

    /// Connects a store to this database.
    pub async fn store(&self) -> Store {
        connect(&self.url).await
    }
}

async fn connect(url: &str) -> Store {
    Store::connect(url, &ConnectOptions::default())
        .await
        .expect("connect to the test database")
}

/// Creates the migrated template for the current schema once; concurrent test processes wait
/// on an advisory lock and reuse it.
async fn ensure_template(admin: &mut PgConnection, admin_url: &str) -> String {
    let template = format!("ot_template_{}", &schema_fingerprint()[..16]);
    sqlx::query("SELECT pg_advisory_lock(7261626)")
        .execute(&mut *admin)
        .await
        .expect("take the template lock");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&template)
        .fetch_optional(&mut *admin)
        .await
        .expect("look for the template database");
    if exists.is_none() {
        // Build under a temporary name and rename, so a crash never leaves a half-built template.
        let building = format!("{template}_building");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{building}\""
            )))
            .await
            .expect("drop a stale template build");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{building}\""
            )))
            .await
            .expect("create the template database");
        let store = connect(&with_database(admin_url, &building)).await;
        store
            .migrate()
            .await
            .expect("migrate the template database");
        store.close().await;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            )))
            .await
            .expect("publish the template database");
    }
    sqlx::query("SELECT pg_advisory_unlock(7261626)")
        .execute(&mut *admin)
        .await
        .expect("release the template lock");
    template
}

async fn create_from_template(admin: &mut PgConnection, name: &str, template: &str) {
    // Copies from one template serialise inside PostgreSQL and fail while another copy holds
    // it ("being accessed by other users"); retry for a while.
    let mut attempt = 0;
    loop {
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
        match admin.execute(sqlx::AssertSqlSafe(sql)).await {
            Ok(_) => return,
            Err(e) if attempt < 200 => {
                attempt += 1;
                if attempt % 50 == 0 {
                    eprintln!("still waiting to copy the template database: {e}");
                }
                tokio::time::sleep(Duration::from_millis(25 + (attempt % 7) * 10)).await;
            }
            Err(e) => panic!("create a PostgreSQL test database: {e}"),
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let admin_url = admin_url.clone();
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            // Drop runs outside async context: use a private runtime on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async move {
                    let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                    admin.execute(sqlx::AssertSqlSafe(sql)).await.ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
        }
    }
}

/// Declares each `async fn name(db: &TestDb)` listed as two tests, `sqlite::name` and
/// `postgres::name`; the PostgreSQL one does nothing unless `OPENTRUSTY_TEST_DATABASE_URL` is set.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDb::sqlite(true).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::TestDb::postgres(true).await {
                        super::$name(&db).await;
                    }
                }
            )*
        }
    };
}

/// The path of command-line tool `name` from PyPI, installed on first use into a virtual
/// environment under the workspace's target directory, at the versions pinned in
/// `tests/python-requirements.txt`. Concurrent callers (several test binaries) wait for one
/// installation.
pub fn python_tool(name: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    use std::process::Command;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let requirements = root.join("tests/python-requirements.txt");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let tools = target.join("test-tools");
    let venv = tools.join("python");
    let tool = venv.join("bin").join(name);
    let wanted =
        std::fs::read_to_string(&requirements).expect("read tests/python-requirements.txt");
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && tool.exists() {
        return tool;
    }
    std::fs::create_dir_all(&tools).expect("create target/test-tools");
    let lock = tools.join("python.lock");
    let started = std::time::Instant::now();
    // A directory is created atomically: whoever creates it installs, the others wait.
    while std::fs::create_dir(&lock).is_err() {
        let stale = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if stale {
            let _ = std::fs::remove_dir(&lock);
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "waited too long for {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = (|| {
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        let run = |cmd: &mut Command| {
            let out = cmd.output().map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?} failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements))?;
        std::fs::write(&marker, &wanted).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        panic!("cannot install the Python test tools: {e}");
    }
    tool
}

/// Feeds `target` inputs derived from `seeds` by random mutation (bit flips, byte insertions
/// and deletions, splices of two seeds, runs of interesting bytes) for `OPENTRUSTY_TEST_FUZZ_SECS`
/// seconds (default 2, at most 60), deterministically from a fixed start. A panic is reported
/// with the input that caused it. A lightweight, dependency-free property test for parsers of
/// untrusted input: they must never panic.
pub fn fuzz(name: &str, seeds: &[&[u8]], target: impl Fn(&[u8])) -> u64 {
    let secs = std::env::var("OPENTRUSTY_TEST_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(2)
        .min(60);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const INTERESTING: &[&[u8]] = &[
        b"\0",
        b"%",
        b"%00",
        b"%zz",
        b"=",
        b"&",
        b";",
        b",",
        b".",
        b"..",
        b":",
        b"/",
        b"\\",
        b"\"",
        b"'",
        b"<",
        b"\xff",
        b"\xc3",
        b"\xe2\x80\xae",
        b" ",
        b"\t",
        b"\r\n",
        b"+",
        b"[",
        b"]",
        b"{",
        b"}",
        b"eyJ",
        b"==",
        b"-",
        b"_",
        b"#",
        b"?",
        b"@",
    ];
    let mut runs = 0u64;
    while std::time::Instant::now() < deadline {
        for _ in 0..256 {
            let seed = seeds[(next() as usize) % seeds.len().max(1)];
            let mut input = seed.to_vec();
            for _ in 0..=(next() % 8) {
                let at = if input.is_empty() {
                    0
                } else {
                    (next() as usize) % (input.len() + 1)
                };
                match next() % 6 {
                    0 if !input.is_empty() => {
                        let i = at.min(input.len() - 1);
                        input[i] ^= 1 << (next() % 8);
                    }
                    1 => input.insert(at, next() as u8),
                    2 if !input.is_empty() => {
                        input.remove(at.min(input.len() - 1));
                    }
                    3 => {
                        let piece = INTERESTING[(next() as usize) % INTERESTING.len()];
                        input.splice(at..at, piece.iter().copied());
                    }
                    4 => {
                        let other = seeds[(next() as usize) % seeds.len().max(1)];
                        let from = if other.is_empty() {
                            0
                        } else {
                            (next() as usize) % other.len()
                        };
                        input.truncate(at);
                        input.extend_from_slice(&other[from..]);
                    }
                    _ => {
                        let n = (next() % 16) as usize;
                        input.splice(at..at, std::iter::repeat_n(next() as u8, n));
                    }
                }
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
            if result.is_err() {
                panic!(
                    "{name}: panicked on input {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
            runs += 1;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
