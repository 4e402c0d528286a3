//! Three `serve auth` and two `serve admin` processes on one database (PostgreSQL when
//! `OPENTRUSTY_TEST_DATABASE_URL` is set, and SQLite), each addressed directly so that every
//! change is made on one process and checked on the others: a revoked token, a signed-out
//! session, a locked account, a rotated key and a deleted client hold on every process at once.
//! The one allowance: several processes on one SQLite file hear of a key rotation only when
//! their copy of the key set ages out (10 s; PostgreSQL announces it as it commits).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::time::{Duration, Instant};

use opentrusty_core::audit::Origin;
use opentrusty_core::ids::UserId;
use opentrusty_core::rbac::{Role, Scope};
use opentrusty_core::user::NewUser;
use opentrusty_store::{Backend, Subject};
use opentrusty_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{SERVICE, Server, fast_hash, http};

const ROOT: &str = "root@platform.example";
const ROOT_PASSWORD: &str = "correct horse battery staple";
const LOCKED: &str = "locked-admin@acme.example";
const LOCKED_PASSWORD: &str = "the right passphrase";

struct Fleet {
    auth: Vec<Server>,
    admin: Vec<Server>,
    backend: Backend,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

/// The fleet, the seed, and the id of the tenant admin the lockout case locks.
async fn start(db: TestDb) -> (Fleet, support::Seed, UserId) {
    let store = db.store().await;
    let backend = store.backend();
    let seed = support::seed(&store).await;
    let origin = Origin::system();
    support::bootstrap_platform_admin(&store, ROOT, ROOT_PASSWORD).await;
    let locked = store
        .create_user(
            &NewUser::new(Some(seed.tenant_a), LOCKED, None, None).unwrap(),
            Some(&fast_hash(LOCKED_PASSWORD)),
            &origin,
        )
        .await
        .unwrap();
    store
        .assign_role(
            Subject::User(locked.id),
            Role::TenantAdmin,
            Scope::Tenant(seed.tenant_a),
            &origin,
        )
        .await
        .unwrap();
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    // One issuer for the whole plane, as behind a load balancer.
    let (auth, admin) = support::fleet(dir.path(), db.url(), 3, 2).await;
    let fleet = Fleet {
        auth,
        admin,
        backend,
        _db: db,
        _dir: dir,
    };
    (fleet, seed, locked.id)
}

/// A `client_credentials` token request to one process: status and body.
async fn client_token(server: &Server, client_id: &str, secret: &str) -> (StatusCode, Value) {
    let r = http()
        .post(server.url("/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "api:read")])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Introspection of `token` by the service client on one process: whether it is active.
async fn active(server: &Server, token: &str) -> bool {
    let (id, secret) = (SERVICE.client_id, SERVICE.secret.unwrap());
    let r = http()
        .post(server.url("/oauth2/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["active"].as_bool().unwrap()
}

async fn admin_call(
    server: &Server,
    method: Method,
    path: &str,
    cookie: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http()
        .request(method, server.url(path))
        .header("cookie", format!("ot_session={}", cookie.0))
        .header("x-csrf-token", cookie.1);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn login(server: &Server, email: &str, password: &str) -> (StatusCode, String) {
    let r = http()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn published_kids(server: &Server) -> Vec<String> {
    let r = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn changes_on_one_process_hold_on_every_other(db: TestDb) {
    let (fleet, seed, locked) = start(db).await;
    let (service_id, service_secret) = (SERVICE.client_id, SERVICE.secret.unwrap());

    // Revocation: a token issued on one process, revoked on another, is inactive on every one.
    let (status, issued) = client_token(&fleet.auth[0], service_id, service_secret).await;
    assert_eq!(status, 200, "{issued}");
    let token = issued["access_token"].as_str().unwrap().to_owned();
    for server in &fleet.auth {
        assert!(active(server, &token).await);
    }
    let r = http()
        .post(fleet.auth[1].url("/oauth2/revoke"))
        .basic_auth(service_id, Some(service_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for server in &fleet.auth {
        assert!(!active(server, &token).await, "revoked on another process");
    }

    // Sign-out: a session made on one auth process, ended on another, is refused by every
    // admin process.
    let (session, csrf) =
        support::console_sign_in(&fleet.auth[0].url(""), ROOT, ROOT_PASSWORD).await;
    let cookie = (session.as_str(), csrf.as_str());
    for server in &fleet.admin {
        let (status, _) = admin_call(server, Method::GET, "/api/v1/auth/me", cookie, None).await;
        assert_eq!(status, 200);
    }
    let r = http()
        .post(fleet.auth[2].url("/api/v1/auth/logout"))
        .header("cookie", format!("ot_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for server in &fleet.admin {
        let (status, problem) =
            admin_call(server, Method::GET, "/api/v1/auth/me", cookie, None).await;
        assert_eq!(status, 401, "signed out on another process: {problem}");
    }
    let (session, csrf) =
        support::console_sign_in(&fleet.auth[1].url(""), ROOT, ROOT_PASSWORD).await;
    let cookie = (session.as_str(), csrf.as_str());

    // Lockout: five wrong passwords spread over the three auth processes lock the account on
    // all of them; an unlock on one admin process lets the right password in on any.
    let (status, wrong_answer) = login(&fleet.auth[0], LOCKED, "wrong 0").await;
    assert_eq!(status, 401);
    for n in 1..5 {
        let (status, _) = login(&fleet.auth[n % 3], LOCKED, &format!("wrong {n}")).await;
        assert_eq!(status, 401);
    }
    for server in &fleet.auth {
        let (status, answer) = login(server, LOCKED, LOCKED_PASSWORD).await;
        assert_eq!(status, 401, "locked by failures on the other processes");
        assert_eq!(answer, wrong_answer);
    }
    let (status, body) = admin_call(
        &fleet.admin[1],
        Method::POST,
        &format!("/api/v1/tenants/{}/users/{}/unlock", seed.tenant_a, locked),
        cookie,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for server in &fleet.auth {
        let (status, _) = login(server, LOCKED, LOCKED_PASSWORD).await;
        assert_eq!(status, 200, "unlocked on another process");
    }

    // Key rotation: every process signs with the new key, and publishes it, as soon as the
    // rotation has committed. Each process first holds the key set from before.
    for server in &fleet.auth {
        let (status, _) = client_token(server, service_id, service_secret).await;
        assert_eq!(status, 200);
        published_kids(server).await;
    }
    let (status, rotated) = admin_call(
        &fleet.admin[0],
        Method::POST,
        "/api/v1/keys/rotate",
        cookie,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let promoted = rotated["rotated"][0]["active_kid"]
        .as_str()
        .unwrap()
        .to_owned();
    // PostgreSQL: the notification's own travel; SQLite: the copies' age limit.
    let allowed = match fleet.backend {
        Backend::Postgres => Duration::from_millis(500),
        Backend::Sqlite => Duration::from_secs(12),
    };
    let rotated_at = Instant::now();
    for (n, server) in fleet.auth.iter().enumerate() {
        loop {
            let (status, issued) = client_token(server, service_id, service_secret).await;
            assert_eq!(status, 200, "{issued}");
            let (header, _) = support::jwt_parts(issued["access_token"].as_str().unwrap());
            if header["kid"] == promoted.as_str()
                && published_kids(server).await.contains(&promoted)
            {
                break;
            }
            assert!(
                rotated_at.elapsed() < allowed,
                "auth process {n} still signs with {} after {:?}",
                header["kid"],
                rotated_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Client deletion: each process has just issued to the client (and remembers it); after
    // its deletion on one admin process, none issues to it.
    for server in &fleet.auth {
        let (status, _) = client_token(server, service_id, service_secret).await;
        assert_eq!(status, 200);
    }
    let store = fleet._db.store().await;
    let client = store.find_client(service_id).await.unwrap().unwrap();
    let (status, body) = admin_call(
        &fleet.admin[1],
        Method::DELETE,
        &format!("/api/v1/tenants/{}/clients/{}", seed.tenant_a, client.id),
        cookie,
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for server in &fleet.auth {
        let (status, refused) = client_token(server, service_id, service_secret).await;
        assert_eq!(status, 401, "deleted on another process: {refused}");
        assert_eq!(refused["error"], "invalid_client");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_per_plane_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        changes_on_one_process_hold_on_every_other(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_per_plane_on_sqlite() {
    changes_on_one_process_hold_on_every_other(TestDb::sqlite(true).await).await;
}
