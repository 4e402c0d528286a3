//! Races through the real binary: many clients at once on one authorization code, one refresh
//! token and one enrollment link, against `serve auth` on PostgreSQL (and SQLite). Exactly one
//! wins each race; a replayed code also revokes what the winner received.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use opentrusty_testkit::TestDb;
use serde_json::Value;
use support::{
    ALICE, Browser, CONFIDENTIAL, ClientAuth, Idp, PASSWORD, code_params, exchange_code,
    introspect, pkce, refresh,
};

const RACERS: usize = 50;

async fn races(db: TestDb) {
    let idp = Idp::start_with(db, &[("OPENTRUSTY_DB_MAX_CONNECTIONS", "20")]).await;
    let idp = std::sync::Arc::new(idp);

    // One code, fifty redemptions.
    let browser = Browser::new(&idp);
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(
        CONFIDENTIAL,
        "openid offline_access",
        "race",
        &challenge,
    ));
    let code = browser.journey(url, Some((ALICE, PASSWORD))).await.code();
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (idp, code, verifier) = (idp.clone(), code.clone(), verifier.clone());
        tasks.push(tokio::spawn(async move {
            exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => winners.push(r.json.clone()),
            400 => assert_eq!(r.json["error"], "invalid_grant", "{}", r.body),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption of the code");
    let won = &winners[0];
    // The losers were replays: what the code issued is revoked.
    let r = introspect(
        &idp,
        ClientAuth::of(CONFIDENTIAL),
        won["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        r.json["active"], false,
        "the replay revoked the winner's token"
    );

    // One refresh token, fifty rotations.
    let browser = Browser::new(&idp);
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(
        CONFIDENTIAL,
        "openid offline_access",
        "race2",
        &challenge,
    ));
    let code = browser.journey(url, Some((ALICE, PASSWORD))).await.code();
    let r = exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    r.expect_status(200);
    let refresh_token = r.json["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (idp, token) = (idp.clone(), refresh_token.clone());
        tasks.push(tokio::spawn(async move {
            refresh(&idp, CONFIDENTIAL, &token, None).await
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => rotated += 1,
            400 => assert_eq!(r.json["error"], "invalid_grant", "{}", r.body),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(rotated, 1, "exactly one rotation of the refresh token");

    // One enrollment link, fifty submissions.
    let (racer, token) = idp.invite("racer@acme.example", None).await;
    let mut tasks = Vec::new();
    for n in 0..RACERS {
        let (idp, token) = (idp.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let b = Browser::new(&idp);
            let page = b.get(&idp.url(&format!("/enroll?token={token}"))).await;
            if page.status != 200 {
                return page.status.as_u16();
            }
            let csrf = support::inputs(&page.body)["csrf_token"].clone();
            let password = format!("racer passphrase number {n}");
            b.post(
                &idp.url("/enroll"),
                &[
                    ("csrf_token", csrf.as_str()),
                    ("token", token.as_str()),
                    ("password", password.as_str()),
                    ("password_confirm", password.as_str()),
                ],
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut set = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => set += 1,
            400 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(set, 1, "exactly one password set through the link");
    let events: Vec<Value> = idp
        .store
        .list_audit(&opentrusty_store::AuditQuery {
            action: Some("user.password_set".into()),
            target: Some(racer.to_string()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.metadata)
        .collect();
    assert_eq!(events.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_racers_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        races(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_racers_on_sqlite() {
    races(TestDb::sqlite(true).await).await;
}

/// `opentrusty migrate` processes started at once on an empty database: all succeed and the
/// schema is applied exactly once.
async fn migrations_at_once(db: TestDb, processes: usize) {
    let dirs: Vec<_> = (0..processes)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            support::opentrusty(d.path())
                .arg("migrate")
                .env("OPENTRUSTY_DATABASE_URL", db.url())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            support::text(&out.stdout),
            support::text(&out.stderr)
        );
    }
    let store = db.store().await;
    let status = store.migration_status().await.unwrap();
    assert!(status.pending.is_empty());
    let mut versions: Vec<i64> = status.applied.iter().map(|m| m.version).collect();
    let applied = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), applied, "each migration recorded once");
    assert!(applied >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_processes_at_once_on_postgres() {
    if let Some(db) = TestDb::postgres(false).await {
        migrations_at_once(db, 2).await;
    }
}

/// Several rounds on new files: the processes opening a new SQLite file race to turn it to WAL,
/// and SQLite answers the losers "locked" at once; the store opens again
/// (`crates/store/tests/sqlite_open.rs` holds that moment on purpose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_processes_at_once_on_new_sqlite_files() {
    for _round in 0..10 {
        migrations_at_once(TestDb::sqlite(false).await, 3).await;
    }
}
