//! The two planes as separate processes on one database (PostgreSQL when
//! `OPENTRUSTY_TEST_DATABASE_URL` is set, and SQLite): a console user signs in on the auth plane
//! and uses the cookie on the admin plane; signing out on the auth plane ends admin access at
//! once; a service-account client gets a token from the auth plane and manages its tenant on
//! the admin plane.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use opentrusty_core::audit::Origin;
use opentrusty_testkit::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, fast_hash, free_port, http};

const ROOT: &str = "root@platform.example";
const ROOT_PASSWORD: &str = "correct horse battery staple";

struct Planes {
    auth: Server,
    admin: Server,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn start(db: TestDb) -> Planes {
    let store = db.store().await;
    support::bootstrap_platform_admin(&store, ROOT, ROOT_PASSWORD).await;
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let mut auth = Server::auth(dir.path(), db.url(), free_port());
    auth.wait_healthy().await;
    let mut admin = Server::admin(dir.path(), db.url(), free_port(), &auth.issuer());
    admin.wait_healthy().await;
    Planes {
        auth,
        admin,
        _db: db,
        _dir: dir,
    }
}

/// Signs in on the auth plane: the session cookie value and the CSRF token.
async fn sign_in(planes: &Planes, email: &str, password: &str) -> (String, String) {
    support::console_sign_in(&planes.auth.url(""), email, password).await
}

/// An access token from the auth plane's token endpoint, `client_credentials` grant.
async fn client_credentials(planes: &Planes, client_id: &str, secret: &str) -> String {
    let r = http()
        .post(planes.auth.url("/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn admin_call(
    planes: &Planes,
    method: reqwest::Method,
    path: &str,
    cookie: Option<(&str, &str)>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http().request(method, planes.admin.url(path));
    if let Some((session, csrf)) = cookie {
        req = req
            .header("cookie", format!("ot_session={session}"))
            .header("x-csrf-token", csrf);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a tenant on the admin plane; its id.
async fn create_tenant(planes: &Planes, cookie: Option<(&str, &str)>, name: &str) -> String {
    let (status, tenant) = admin_call(
        planes,
        reqwest::Method::POST,
        "/api/v1/tenants",
        cookie,
        None,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    tenant["id"].as_str().unwrap().to_owned()
}

async fn sign_in_on_auth_use_on_admin_sign_out_on_auth(db: TestDb) {
    let planes = start(db).await;
    let (session, csrf) = sign_in(&planes, ROOT, ROOT_PASSWORD).await;
    let cookie = Some((session.as_str(), csrf.as_str()));
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, me) =
        admin_call(&planes, get.clone(), "/api/v1/auth/me", cookie, None, None).await;
    assert_eq!(status, 200, "{me}\n{}", planes.admin.output());
    assert_eq!(me["user"]["email"], ROOT);

    // The admin plane provisions a tenant, a service-account client and its role.
    let t = create_tenant(&planes, cookie, "Acme").await;
    let mut tokens = Vec::new();
    for format in ["jwt", "opaque"] {
        let (status, created) = admin_call(
            &planes,
            post.clone(),
            &format!("/api/v1/tenants/{t}/clients"),
            cookie,
            None,
            Some(json!({
                "client_name": format!("robot-{format}"),
                "grant_types": ["client_credentials"],
                "allowed_scopes": ["admin"],
                "access_token_format": format,
            })),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["client"]["id"].as_str().unwrap();
        let client_id = created["client"]["client_id"].as_str().unwrap().to_owned();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        let (status, _) = admin_call(
            &planes,
            post.clone(),
            &format!("/api/v1/tenants/{t}/clients/{id}/roles"),
            cookie,
            None,
            Some(json!({ "role": "tenant_admin" })),
        )
        .await;
        assert_eq!(status, 204);

        // The auth plane issues the token; the admin plane accepts it without any key.
        let token = client_credentials(&planes, &client_id, &secret).await;
        assert_eq!(token.contains('.'), format == "jwt");
        let (status, me) = admin_call(
            &planes,
            get.clone(),
            "/api/v1/auth/me",
            None,
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{format}: {me}");
        assert_eq!(me["kind"], "client");
        assert_eq!(me["tenant"]["id"], t.as_str());
        let (status, user) = admin_call(
            &planes,
            post.clone(),
            &format!("/api/v1/tenants/{t}/users"),
            None,
            Some(&token),
            Some(json!({ "email": format!("{format}@acme.example") })),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        assert!(
            user["enrollment_url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/enroll?token=", planes.auth.issuer()))
        );
        // The service account cannot leave its tenant.
        let (status, _) = admin_call(
            &planes,
            get.clone(),
            "/api/v1/tenants",
            None,
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 403);
        tokens.push((token, client_id, secret));
    }

    // Revoking a token on the auth plane ends it on the admin plane at once.
    let (token, client_id, secret) = &tokens[1];
    let r = http()
        .post(planes.auth.url("/oauth2/revoke"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = admin_call(
        &planes,
        get.clone(),
        "/api/v1/auth/me",
        None,
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A rotation on the admin plane (no key material there): the auth plane signs with the
    // promoted key within its cache period and prepares the next one by itself.
    let jwks_kids = || async {
        let doc: Value = http()
            .get(planes.auth.url("/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(jwks_kids().await.len(), 2, "active and next are published");
    let (status, rotated) = admin_call(
        &planes,
        post.clone(),
        "/api/v1/keys/rotate",
        cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let promoted = rotated["rotated"][0]["active_kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let kids = jwks_kids().await;
        if kids.len() == 3 {
            assert!(kids.contains(&promoted));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no next key after the rotation: {kids:?}\n{}",
            planes.auth.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (_, jwt_client, jwt_secret) = &tokens[0];
    let token = client_credentials(&planes, jwt_client, jwt_secret).await;
    let (header, _) = support::jwt_parts(&token);
    assert_eq!(header["kid"], promoted.as_str());
    let (status, _) = admin_call(
        &planes,
        post.clone(),
        "/api/v1/keys/rotate",
        cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "the prepared next key allows another rotation");

    // Both planes write to the one audit trail: the auth plane's sign-in and token issuance,
    // the admin plane's changes.
    let (status, trail) = admin_call(
        &planes,
        get.clone(),
        "/api/v1/audit?limit=200",
        cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let types: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for expected in [
        "login.succeeded",
        "token.issued",
        "tenant.created",
        "client.created",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }

    // Signing out on the auth plane: the next admin request is 401.
    let r = http()
        .post(planes.auth.url("/api/v1/auth/logout"))
        .header("cookie", format!("ot_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, problem) =
        admin_call(&planes, get.clone(), "/api/v1/auth/me", cookie, None, None).await;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "urn:opentrusty:problem:unauthenticated");

    // Each plane serves only its own routes.
    let r = http()
        .post(planes.admin.url("/api/v1/auth/login"))
        .json(&json!({ "email": ROOT, "password": ROOT_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for path in [
        "/oauth2/token",
        "/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        assert_eq!(
            http()
                .get(planes.admin.url(path))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    for path in ["/api/v1/tenants", "/api/v1/openapi.json", "/api/v1/auth/me"] {
        assert_eq!(
            http()
                .get(planes.auth.url(path))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    let r = http()
        .get(planes.admin.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Each process survives the other's death: with the admin process gone, the auth plane
    // still signs in and issues tokens.
    let Planes {
        auth,
        admin,
        _db,
        _dir,
    } = planes;
    drop(admin);
    let r = http()
        .post(auth.url("/api/v1/auth/login"))
        .json(&json!({ "email": ROOT, "password": ROOT_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        http()
            .get(auth.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        sign_in_on_auth_use_on_admin_sign_out_on_auth(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_sqlite() {
    sign_in_on_auth_use_on_admin_sign_out_on_auth(TestDb::sqlite(true).await).await;
}

/// Failed passwords spread over two auth processes lock the account at the threshold; the
/// answer for a locked account is the answer for a wrong password; the admin plane's unlock
/// lets the right password in again.
async fn lockout_holds_across_processes(db: TestDb) {
    use opentrusty_core::rbac::{Role, Scope};
    use opentrusty_core::tenant::TenantName;
    use opentrusty_core::user::NewUser;
    use opentrusty_store::Subject;
    let store = db.store().await;
    let origin = Origin::system();
    let tenant = store
        .create_tenant(&TenantName::parse("Locks").unwrap(), None, &origin)
        .await
        .unwrap();
    let email = "locked-admin@locks.example";
    let password = "the right passphrase";
    let user = store
        .create_user(
            &NewUser::new(Some(tenant.id), email, None, None).unwrap(),
            Some(&fast_hash(password)),
            &origin,
        )
        .await
        .unwrap();
    store
        .assign_role(
            Subject::User(user.id),
            Role::TenantAdmin,
            Scope::Tenant(tenant.id),
            &origin,
        )
        .await
        .unwrap();
    let planes = start(db).await;
    let dir = tempfile::tempdir().unwrap();
    let mut second = Server::auth(dir.path(), planes._db.url(), free_port());
    second.wait_healthy().await;
    let login = |server: &Server, password: &str| {
        let url = server.url("/api/v1/auth/login");
        let body = json!({ "email": email, "password": password });
        async move {
            let r = http().post(url).json(&body).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, wrong_answer) = login(&planes.auth, "wrong 1").await;
    assert_eq!(status, 401);
    for n in 2..=5 {
        let server = if n % 2 == 0 { &second } else { &planes.auth };
        let (status, _) = login(server, &format!("wrong {n}")).await;
        assert_eq!(status, 401);
    }
    for server in [&planes.auth, &second] {
        let (status, answer) = login(server, password).await;
        assert_eq!(status, 401, "locked after 5 failures over two processes");
        assert_eq!(
            answer, wrong_answer,
            "a locked account answers like a wrong password"
        );
    }
    let (session, csrf) = sign_in(&planes, ROOT, ROOT_PASSWORD).await;
    let (status, body) = admin_call(
        &planes,
        reqwest::Method::POST,
        &format!("/api/v1/tenants/{}/users/{}/unlock", tenant.id, user.id),
        Some((session.as_str(), csrf.as_str())),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = login(&second, password).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_across_processes_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        lockout_holds_across_processes(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_across_processes_on_sqlite() {
    lockout_holds_across_processes(TestDb::sqlite(true).await).await;
}

/// A `client_credentials` request: status, and the body's `error`, `scope` and `expires_in`.
async fn token_request(
    planes: &Planes,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let r = http()
        .post(planes.auth.url("/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// The auth process remembers the clients it issues `client_credentials` tokens to; every change
/// the admin process makes to a client or its tenant still takes effect on the next request.
async fn client_changes_on_admin_reach_a_warm_auth_process(db: TestDb) {
    let planes = start(db).await;
    let (session, csrf) = sign_in(&planes, ROOT, ROOT_PASSWORD).await;
    let cookie = Some((session.as_str(), csrf.as_str()));
    let (post, patch) = (reqwest::Method::POST, reqwest::Method::PATCH);
    let t = create_tenant(&planes, cookie, "Remembered").await;
    let (status, created) = admin_call(
        &planes,
        post.clone(),
        &format!("/api/v1/tenants/{t}/clients"),
        cookie,
        None,
        Some(json!({
            "client_name": "robot",
            "grant_types": ["client_credentials"],
            "allowed_scopes": ["reports.read", "reports.write"],
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["client"]["id"].as_str().unwrap().to_owned();
    let client_id = created["client"]["client_id"].as_str().unwrap().to_owned();
    let old_secret = created["client_secret"].as_str().unwrap().to_owned();
    let client_path = format!("/api/v1/tenants/{t}/clients/{id}");
    let refused = |(status, body): (StatusCode, Value), error: &str| {
        assert_eq!(body["error"], error, "{body}");
        assert!(status.is_client_error(), "{status}");
    };

    // Warm: the second request is decided on the remembered client.
    for _ in 0..2 {
        let (status, body) = token_request(&planes, &client_id, &old_secret, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "reports.read reports.write");
    }

    // A rotated secret: the old one is refused at once, the new one works at once.
    let (status, rotated) = admin_call(
        &planes,
        post.clone(),
        &format!("{client_path}/secret"),
        cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let secret = rotated["client_secret"].as_str().unwrap().to_owned();
    refused(
        token_request(&planes, &client_id, &old_secret, None).await,
        "invalid_client",
    );
    let (status, body) = token_request(&planes, &client_id, &secret, None).await;
    assert_eq!(status, 200, "{body}");

    // A narrowed scope is refused at once; a widened one granted at once.
    let set_scopes = |scopes: Value| {
        admin_call(
            &planes,
            patch.clone(),
            &client_path,
            cookie,
            None,
            Some(json!({ "allowed_scopes": scopes })),
        )
    };
    let (status, _) = set_scopes(json!(["reports.read"])).await;
    assert_eq!(status, 200);
    refused(
        token_request(&planes, &client_id, &secret, Some("reports.write")).await,
        "invalid_scope",
    );
    let (status, body) = token_request(&planes, &client_id, &secret, None).await;
    assert_eq!(
        (status, &body["scope"]),
        (StatusCode::OK, &json!("reports.read"))
    );
    let (status, _) = set_scopes(json!(["reports.read", "reports.admin"])).await;
    assert_eq!(status, 200);
    let (status, body) = token_request(&planes, &client_id, &secret, Some("reports.admin")).await;
    assert_eq!(status, 200, "{body}");

    // Any other change too: a shorter lifetime applies to the next token.
    let (status, _) = admin_call(
        &planes,
        patch.clone(),
        &client_path,
        cookie,
        None,
        Some(json!({ "access_token_ttl": 60 })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = token_request(&planes, &client_id, &secret, None).await;
    assert_eq!((status, &body["expires_in"]), (StatusCode::OK, &json!(60)));

    // A suspended tenant's clients get nothing; reactivated, they do again.
    for (state, expected) in [
        ("suspended", StatusCode::UNAUTHORIZED),
        ("active", StatusCode::OK),
    ] {
        let (status, _) = admin_call(
            &planes,
            patch.clone(),
            &format!("/api/v1/tenants/{t}"),
            cookie,
            None,
            Some(json!({ "status": state })),
        )
        .await;
        assert_eq!(status, 200);
        let (status, body) = token_request(&planes, &client_id, &secret, None).await;
        assert_eq!(status, expected, "{state}: {body}");
    }

    // A deleted client gets nothing.
    let (status, _) = admin_call(
        &planes,
        reqwest::Method::DELETE,
        &client_path,
        cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, 204);
    refused(
        token_request(&planes, &client_id, &secret, None).await,
        "invalid_client",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_changes_reach_a_warm_auth_process_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        client_changes_on_admin_reach_a_warm_auth_process(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_changes_reach_a_warm_auth_process_on_sqlite() {
    client_changes_on_admin_reach_a_warm_auth_process(TestDb::sqlite(true).await).await;
}
