//! Behaviour of the admin API through its real router and a real database: authentication and
//! CSRF rules, CORS, problem documents, the role rules, an operator running a tenant from the API
//! alone, pagination under concurrent writes, key rotation, and the OpenAPI document.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::collections::{BTreeSet, HashSet};

use axum::body::Body;
use axum::http::{Method, Request, header};
use opentrusty_core::audit::Origin;
use opentrusty_core::client::client_secret_matches;
use opentrusty_core::now;
use opentrusty_core::rbac::Role;
use opentrusty_core::secret::token_digest;
use opentrusty_core::user::NewUser;
use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{AUTH_BASE, Actor, CONSOLE, Credential, World};

fn users_path(w: &World) -> String {
    format!("/api/v1/tenants/{}/users", w.a)
}

async fn session_writes_need_the_csrf_token_and_a_console_origin(db: &TestDb) {
    let w = World::new(db).await;
    let Credential::Cookie { value, csrf } = w.credential(Actor::OwnerA) else {
        unreachable!()
    };
    let path = users_path(&w);
    let body = |n: u32| Some(json!({ "email": format!("csrf{n}@a.example") }));
    let no_token = Credential::Cookie {
        value: value.clone(),
        csrf: String::new(),
    };
    let Credential::Cookie {
        csrf: other_sessions_token,
        ..
    } = w.credential(Actor::AdminA)
    else {
        unreachable!()
    };
    for (name, cred, headers) in [
        ("no token", no_token.clone(), vec![]),
        (
            "another session's token",
            Credential::Cookie {
                value: value.clone(),
                csrf: other_sessions_token,
            },
            vec![],
        ),
        (
            "foreign origin",
            w.credential(Actor::OwnerA),
            vec![("origin", "https://evil.example")],
        ),
        (
            "null origin",
            w.credential(Actor::OwnerA),
            vec![("origin", "null")],
        ),
    ] {
        let r = w
            .call_as(&cred, Method::POST, &path, body(w.next()), &headers)
            .await;
        assert_eq!(r.status, 403, "{name}: {}", r.body);
        assert_eq!(r.body["type"], "urn:opentrusty:problem:forbidden");
    }
    // A foreign origin is refused on reads too.
    let r = w
        .call_as(
            &w.credential(Actor::OwnerA),
            Method::GET,
            &path,
            None,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    // Nothing was created by the refused requests.
    let listed = w.call(Actor::OwnerA, Method::GET, &path, None).await;
    assert!(!listed.body.to_string().contains("csrf"), "{}", listed.body);

    let ok = w
        .call_as(
            &Credential::Cookie { value, csrf },
            Method::POST,
            &path,
            body(w.next()),
            &[("origin", CONSOLE)],
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // Reads with a session need no token; bearer writes need none either.
    assert_eq!(
        w.call_as(&no_token, Method::GET, &path, None, &[])
            .await
            .status,
        200
    );
    let bearer = w
        .call(Actor::ServiceA, Method::POST, &path, body(w.next()))
        .await;
    assert_eq!(bearer.status, 201, "{}", bearer.body);
}

async fn cors_admits_exactly_the_console_origins(db: &TestDb) {
    let w = World::new(db).await;
    let preflight = |origin: &'static str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/tenants")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-csrf-token",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = w.send(preflight(CONSOLE)).await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.headers["access-control-allow-origin"], CONSOLE);
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    assert!(
        ok.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-csrf-token")
    );
    let bad = w.send(preflight("https://evil.example")).await;
    assert_eq!(bad.status, 403);
    assert!(!bad.headers.contains_key("access-control-allow-origin"));

    let me = w
        .call_as(
            &w.credential(Actor::OwnerA),
            Method::GET,
            "/api/v1/auth/me",
            None,
            &[("origin", CONSOLE)],
        )
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.headers["access-control-allow-origin"], CONSOLE);
    assert_eq!(me.headers["cache-control"], "no-store");
    // Never a wildcard, whoever asks.
    for actor in support::ACTORS {
        let r = w
            .call_as(
                &w.credential(actor),
                Method::GET,
                "/api/v1/tenants",
                None,
                &[("origin", "https://evil.example")],
            )
            .await;
        assert!(!r.headers.contains_key("access-control-allow-origin"));
    }
}

async fn the_tenant_comes_from_the_credential_never_a_header(db: &TestDb) {
    let w = World::new(db).await;
    for actor in [Actor::OwnerA, Actor::ServiceA, Actor::PlatformAdmin] {
        let r = w
            .call_as(
                &w.credential(actor),
                Method::GET,
                "/api/v1/auth/me",
                None,
                &[("x-tenant-id", &w.b.to_string())],
            )
            .await;
        assert_eq!(r.status, 400, "{actor:?}");
        assert_eq!(r.body["type"], "urn:opentrusty:problem:bad-request");
    }
    let me = w
        .call(Actor::OwnerA, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(me.body["tenant"]["id"], w.a.to_string());
    assert_eq!(me.body["user"]["id"], w.owner_a.to_string());
    assert_eq!(me.body["roles"][0]["role"], "tenant_owner");
    assert!(me.body["csrf_token"].is_string());
    let me = w
        .call(Actor::ServiceA, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(me.body["kind"], "client");
    assert_eq!(me.body["client"]["id"], w.service_a.to_string());
    assert_eq!(me.body["csrf_token"], Value::Null);
    let me = w
        .call(Actor::PlatformAdmin, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(me.body["tenant"], Value::Null);
}

async fn credentials_are_checked_against_the_database_on_every_request(db: &TestDb) {
    let w = World::new(db).await;
    let me = "/api/v1/auth/me";
    // Logging out (the auth plane deletes the session row) ends admin access at once.
    let cred = w.sign_in(w.admin_a, Some(w.a)).await;
    assert_eq!(
        w.call_as(&cred, Method::GET, me, None, &[]).await.status,
        200
    );
    let Credential::Cookie { value, .. } = &cred else {
        unreachable!()
    };
    w.store
        .end_session(&token_digest(value), &Origin::system())
        .await
        .unwrap();
    let r = w.call_as(&cred, Method::GET, me, None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["type"], "urn:opentrusty:problem:unauthenticated");

    // Garbage cookies and bearer tokens, a user's token, an expired or revoked token.
    let bearer = |t: &str| Credential::Bearer(t.to_owned());
    let user_token = w
        .access_token(w.a, w.service_a, Some(w.owner_a), 3600)
        .await;
    let expired = w.access_token(w.a, w.service_a, None, -1).await;
    for (name, cred) in [
        (
            "unknown cookie",
            Credential::Cookie {
                value: "x".repeat(43),
                csrf: String::new(),
            },
        ),
        ("unknown token", bearer("not-a-token")),
        ("a token issued for a user", bearer(&user_token)),
        ("an expired token", bearer(&expired)),
    ] {
        let r = w.call_as(&cred, Method::GET, me, None, &[]).await;
        assert_eq!(r.status, 401, "{name}");
        assert!(r.headers.contains_key("www-authenticate"), "{name}");
    }
    let r = w
        .call_as(
            &Credential::None,
            Method::GET,
            me,
            None,
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    assert_eq!(r.status, 401);

    // Disabling a user through the API ends their sessions.
    let target = w.sign_in(w.member_a, Some(w.a)).await;
    let r = w
        .call(
            Actor::AdminA,
            Method::PATCH,
            &format!("{}/{}", users_path(&w), w.member_a),
            Some(json!({ "status": "disabled" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "disabled");
    assert!(
        w.store
            .list_sessions(w.a, w.member_a, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        w.call_as(&target, Method::GET, me, None, &[]).await.status,
        401
    );

    // A service account's tokens die with its client.
    let r = w
        .call(
            Actor::OwnerA,
            Method::DELETE,
            &format!("/api/v1/tenants/{}/clients/{}", w.a, w.service_a),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        w.call(Actor::ServiceA, Method::GET, me, None).await.status,
        401
    );

    // Suspending a tenant locks its console users out; reactivating lets them back.
    let tenant_a = format!("/api/v1/tenants/{}", w.a);
    let suspend = |status: &'static str| {
        w.call(
            Actor::PlatformAdmin,
            Method::PATCH,
            &tenant_a,
            Some(json!({ "status": status })),
        )
    };
    assert_eq!(suspend("suspended").await.status, 200);
    assert_eq!(
        w.call(Actor::OwnerA, Method::GET, me, None).await.status,
        401
    );
    assert_eq!(suspend("active").await.status, 200);
    assert_eq!(
        w.call(Actor::OwnerA, Method::GET, me, None).await.status,
        200
    );

    // An empty page of a live tenant is a page; of a deleted tenant, not found.
    let nobody = format!("{}?email_prefix=nobody-here", users_path(&w));
    let r = w
        .call(Actor::PlatformAdmin, Method::GET, &nobody, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"], json!([]));

    // Deleting the tenant ends its sessions.
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::DELETE,
            &format!("/api/v1/tenants/{}", w.a),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        w.call(Actor::OwnerA, Method::GET, me, None).await.status,
        401
    );
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            &format!("/api/v1/tenants/{}", w.a),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    for path in [users_path(&w), nobody] {
        let r = w.call(Actor::PlatformAdmin, Method::GET, &path, None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}

async fn role_rules_hold(db: &TestDb) {
    let w = World::new(db).await;
    let roles = |u: &dyn ToString| format!("{}/{}/roles", users_path(&w), u.to_string());
    let revoke_own = format!("{}/tenant_owner", roles(&w.owner_a));
    // The last owner keeps the owner role, whoever asks.
    for actor in [Actor::OwnerA, Actor::PlatformAdmin] {
        let r = w.call(actor, Method::DELETE, &revoke_own, None).await;
        assert_eq!(r.status, 409, "{actor:?}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("owner"));
    }
    // …and cannot be deleted or disabled.
    let owner = format!("{}/{}", users_path(&w), w.owner_a);
    assert_eq!(
        w.call(Actor::PlatformAdmin, Method::DELETE, &owner, None)
            .await
            .status,
        409
    );
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::PATCH,
            &owner,
            Some(json!({ "status": "disabled" })),
        )
        .await;
    assert_eq!(r.status, 409);
    // An admin cannot grant what they do not hold (owner), nor revoke it.
    let grant_owner = Some(json!({ "role": "tenant_owner" }));
    let r = w
        .call(
            Actor::AdminA,
            Method::POST,
            &roles(&w.member_a),
            grant_owner.clone(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        w.call(Actor::AdminA, Method::DELETE, &revoke_own, None)
            .await
            .status,
        403
    );
    // Platform roles are not tenant roles: the request is invalid.
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            &roles(&w.member_a),
            Some(json!({ "role": "platform_admin" })),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.field(), Some("role"));
    // With a second owner, the first may step down.
    let r = w
        .call(
            Actor::OwnerA,
            Method::POST,
            &roles(&w.member_a),
            grant_owner.clone(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = w
        .call(
            Actor::OwnerA,
            Method::POST,
            &roles(&w.member_a),
            grant_owner,
        )
        .await;
    assert_eq!(r.status, 409, "granting twice: {}", r.body);
    assert_eq!(
        w.call(Actor::OwnerA, Method::DELETE, &revoke_own, None)
            .await
            .status,
        204
    );
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            &format!("{}/{}", users_path(&w), w.owner_a),
            None,
        )
        .await;
    assert_eq!(r.body["roles"], json!([]));
    // A console role goes to one account per email: another tenant's console user is refused.
    let twin = support::user(&w.store, Some(w.b), "admin@a.example", None).await;
    let r = w
        .call(
            Actor::OwnerB,
            Method::POST,
            &format!("/api/v1/tenants/{}/users/{twin}/roles", w.b),
            Some(json!({ "role": "tenant_admin" })),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // A member role (no console access) is fine.
    let r = w
        .call(
            Actor::OwnerB,
            Method::POST,
            &format!("/api/v1/tenants/{}/users/{twin}/roles", w.b),
            Some(json!({ "role": "tenant_member" })),
        )
        .await;
    assert_eq!(r.status, 204);
}

/// The attacks the role hierarchy stops. A tenant admin (a user, or a service account holding
/// `tenant_admin`) asks for an owner's reset link (to set the owner's password, sign in as them
/// and grant itself `tenant_owner`), disables or deletes an owner, and rotates the secret of a
/// service account holding `tenant_owner` (to act with owner rights through its token), changes
/// or deletes it. Each is refused with the role-hierarchy problem and changes nothing; the owner
/// and the platform administrator still do all of it.
async fn admins_cannot_act_on_owners_or_owner_level_clients(db: &TestDb) {
    let w = World::new(db).await;
    let owner2 = support::user(
        &w.store,
        Some(w.a),
        "owner2@a.example",
        Some(Role::TenantOwner),
    )
    .await;
    let robot = support::client(&w.store, w.a, "owner-robot", Some(Role::TenantOwner)).await;
    let user = |u: &dyn ToString| format!("{}/{}", users_path(&w), u.to_string());
    let robot_path = format!("/api/v1/tenants/{}/clients/{robot}", w.a);
    let attacks = [
        (
            Method::POST,
            format!("{}/password-reset", user(&w.owner_a)),
            None,
        ),
        (
            Method::PATCH,
            user(&w.owner_a),
            Some(json!({ "status": "disabled" })),
        ),
        (Method::DELETE, user(&owner2), None),
        (Method::POST, format!("{robot_path}/secret"), None),
        (
            Method::PATCH,
            robot_path.clone(),
            Some(json!({ "client_name": "Mine now" })),
        ),
        (Method::DELETE, robot_path.clone(), None),
    ];
    let audited = [
        w.audit_rows_about(w.owner_a).await,
        w.audit_rows_about(owner2).await,
        w.audit_rows_about(robot).await,
    ];
    for actor in [Actor::AdminA, Actor::ServiceA] {
        for (method, path, body) in &attacks {
            let r = w.call(actor, method.clone(), path, body.clone()).await;
            let what = format!("{method} {path} as {actor:?}");
            assert_eq!(r.status, 403, "{what}: {}", r.body);
            assert_eq!(r.headers["content-type"], "application/problem+json");
            assert_eq!(
                r.body["type"], "urn:opentrusty:problem:role-hierarchy",
                "{what}"
            );
            assert_eq!(r.body["role"], "tenant_owner", "{what}");
            let detail = r.body["detail"].as_str().unwrap();
            assert!(
                detail.contains("every role") && detail.contains("tenant_owner"),
                "{what}: {detail}"
            );
        }
    }
    // Nothing happened: no link, both owners active, the robot keeps its name and secret.
    for u in [w.owner_a, owner2] {
        let owner = w.store.get_user(w.a, u).await.unwrap().unwrap();
        assert_eq!(owner.status, opentrusty_core::user::UserStatus::Active);
    }
    let now_audited = [
        w.audit_rows_about(w.owner_a).await,
        w.audit_rows_about(owner2).await,
        w.audit_rows_about(robot).await,
    ];
    assert_eq!(now_audited, audited, "a refused action left an audit row");
    let kept = w.store.get_client(w.a, robot).await.unwrap().unwrap();
    assert_eq!(kept.name, "owner-robot");
    let access = w
        .store
        .find_client_for_request(&kept.client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(client_secret_matches(
        "secret",
        access.secret_hash.as_deref().unwrap()
    ));

    // An owner and the platform administrator still can.
    let r = w
        .call(
            Actor::OwnerA,
            Method::POST,
            &format!("{}/password-reset", user(&owner2)),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = w
        .call(
            Actor::OwnerA,
            Method::POST,
            &format!("{robot_path}/secret"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::PATCH,
            &robot_path,
            Some(json!({ "client_name": "Renamed" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::PATCH,
            &user(&owner2),
            Some(json!({ "status": "disabled" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (actor, path) in [
        (Actor::OwnerA, user(&owner2)),
        (Actor::PlatformAdmin, robot_path),
    ] {
        let r = w.call(actor, Method::DELETE, &path, None).await;
        assert_eq!(r.status, 204, "{path}: {}", r.body);
    }
    // Granting a role the caller may not grant keeps its own rule, under the same problem type.
    let r = w
        .call(
            Actor::AdminA,
            Method::POST,
            &format!("{}/roles", user(&w.member_a)),
            Some(json!({ "role": "tenant_owner" })),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["type"], "urn:opentrusty:problem:role-hierarchy");
    assert_eq!(r.body["role"], "tenant_owner");
}

/// A reset link an admin obtained while its user was a member does not open the account once
/// an owner makes that user an owner: the grant voids it, and says so in its audit row.
async fn a_promotion_voids_the_users_pending_links(db: &TestDb) {
    let w = World::new(db).await;
    let path = format!("{}/{}", users_path(&w), w.member_a);
    let r = w
        .call(
            Actor::AdminA,
            Method::POST,
            &format!("{path}/password-reset"),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let url = r.body["enrollment_url"].as_str().unwrap();
    let digest = token_digest(url.split("token=").nth(1).unwrap());
    assert!(
        w.store
            .find_enrollment_link(&digest, now())
            .await
            .unwrap()
            .is_some()
    );
    let r = w
        .call(
            Actor::OwnerA,
            Method::POST,
            &format!("{path}/roles"),
            Some(json!({ "role": "tenant_owner" })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        w.store
            .find_enrollment_link(&digest, now())
            .await
            .unwrap()
            .is_none(),
        "the link outlived the promotion"
    );
    let r = w
        .call(
            Actor::OwnerA,
            Method::GET,
            &format!(
                "/api/v1/tenants/{}/audit?type=role.assigned&target={}",
                w.a, w.member_a
            ),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["metadata"]["role"], "tenant_owner");
    assert_eq!(
        r.body["items"][0]["metadata"]["voided_links"], 1,
        "{}",
        r.body
    );
    // Now an owner, the user is out of the admin's reach, links included.
    let r = w
        .call(
            Actor::AdminA,
            Method::POST,
            &format!("{path}/password-reset"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
}

async fn invalid_input_gets_a_problem_naming_the_field(db: &TestDb) {
    let w = World::new(db).await;
    let clients = format!("/api/v1/tenants/{}/clients", w.a);
    for (body, field) in [
        (
            json!({ "client_name": "x", "redirect_uris": ["http://app.example/cb"] }),
            "redirect_uris",
        ),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://app.example/cb#f"] }),
            "redirect_uris",
        ),
        (json!({ "client_name": "x" }), "redirect_uris"),
        (json!({ "client_name": 5 }), "client_name"),
        (
            json!({ "client_name": "x", "redirect_uris": "https://a.example" }),
            "redirect_uris",
        ),
        (json!({ "client_name": "x", "surprise": 1 }), "surprise"),
        (json!({ "redirect_uris": [] }), "client_name"),
        (json!([1, 2]), "body"),
        (json!({ "client_name": "a\u{0}b" }), "client_name"),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/\u{0}"] }),
            "redirect_uris[0]",
        ),
        (
            json!({ "client_name": "x", "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "none" }),
            "grant_types",
        ),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "token_endpoint_auth_method": "private_key_jwt" }),
            "token_endpoint_auth_method",
        ),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "access_token_ttl": 0 }),
            "access_token_ttl",
        ),
        // A grant type that does not exist is refused, not ignored.
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "grant_types": ["authorization_code", "password"] }),
            "grant_types",
        ),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "id_token_signed_response_alg": "HS256" }),
            "id_token_signed_response_alg",
        ),
        // A browser cannot keep a secret: only public clients have web origins.
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "web_origins": ["https://a.example"] }),
            "web_origins",
        ),
        (
            json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"],
                    "token_endpoint_auth_method": "none",
                    "web_origins": ["https://a.example/cb"] }),
            "web_origins",
        ),
    ] {
        let r = w
            .call(Actor::OwnerA, Method::POST, &clients, Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.field(), Some(field), "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        for key in ["type", "title", "status", "detail"] {
            assert!(r.body.get(key).is_some(), "{key} in {}", r.body);
        }
    }
    let users = users_path(&w);
    for (body, field) in [
        (json!({ "email": "not-an-email" }), "email"),
        (json!({ "email": "x@a.example", "role": "root" }), "role"),
        (
            json!({ "email": "x@a.example", "given_name": "a".repeat(101) }),
            "given_name",
        ),
    ] {
        let r = w
            .call(Actor::OwnerA, Method::POST, &users, Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.field(), Some(field), "{body}");
    }
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::PATCH,
            &format!("/api/v1/tenants/{}", w.a),
            Some(json!({ "logo_url": "javascript:alert(1)" })),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, Some("logo_url")));
    // Malformed JSON is a bad request; a body that is not JSON an unsupported media type.
    let raw = |content_type: &'static str, body: String| {
        let Credential::Cookie { value, csrf } = w.credential(Actor::OwnerA) else {
            unreachable!()
        };
        Request::builder()
            .method(Method::POST)
            .uri(users.clone())
            .header(header::COOKIE, format!("ot_session={value}"))
            .header("x-csrf-token", csrf)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    assert_eq!(
        w.send(raw("application/json", "{\"email\":".to_owned()))
            .await
            .status,
        400
    );
    assert_eq!(
        w.send(raw(
            "application/x-www-form-urlencoded",
            "email=a%40b.co".to_owned(),
        ))
        .await
        .status,
        415
    );
    // Query parameters are validated too.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bm9wZQ", "cursor"),
        ("status=gone", "status"),
        ("colour=blue", "colour"),
        ("limit=1&limit=2", "limit"),
        ("email_prefix=a%00b", "email_prefix"),
    ] {
        let r = w
            .call(
                Actor::OwnerA,
                Method::GET,
                &format!("{users}?{query}"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{query}: {}", r.body);
        assert_eq!(r.field(), Some(field), "{query}: {}", r.body);
    }
    // A body over the size limit is refused with a problem too.
    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(3 << 20));
    let r = w.send(raw("application/json", huge)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // Malformed ids name nothing; unknown paths and methods get problems as well.
    let r = w
        .call(
            Actor::OwnerA,
            Method::GET,
            "/api/v1/tenants/not-a-uuid",
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = w.call(Actor::OwnerA, Method::PUT, &users, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // No internals in any of them.
    for r in [r] {
        let text = r.body.to_string().to_lowercase();
        for leak in ["sql", "sqlx", "panic", "constraint", "database error"] {
            assert!(!text.contains(leak), "{text}");
        }
    }
}

/// An operator runs a tenant from the API alone: create the tenant, invite its owner, register
/// a client, rotate its secret, read the audit trail; deleting the client revokes its tokens.
async fn an_operator_runs_a_tenant_from_the_api(db: &TestDb) {
    let w = World::new(db).await;
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            "/api/v1/tenants",
            Some(json!({ "name": "Initech" })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["name"], "Initech");
    assert_eq!(r.body["status"], "active");
    let tenant = r.body["id"].as_str().unwrap().to_owned();
    let dup = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            "/api/v1/tenants",
            Some(json!({ "name": "INITECH" })),
        )
        .await;
    assert_eq!(dup.status, 409);

    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/users"),
            Some(json!({
                "email": "Peter@Initech.example",
                "given_name": "Peter",
                "family_name": "Gibbons",
                "role": "tenant_owner",
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let owner = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["email"], "Peter@Initech.example");
    let url = r.body["enrollment_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{AUTH_BASE}/enroll?token=")),
        "{url}"
    );
    let token = url.split("token=").nth(1).unwrap();
    assert!(token.len() >= 43);
    let expires = time::OffsetDateTime::parse(
        r.body["enrollment_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let hours = (expires - now()).whole_minutes() as f64 / 60.0;
    assert!((71.9..=72.0).contains(&hours), "{hours}");
    // A reset link replaces it.
    let reset = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/users/{owner}/password-reset"),
            None,
        )
        .await;
    assert_eq!(reset.status, 201);
    assert_ne!(reset.body["enrollment_url"], r.body["enrollment_url"]);
    let detail = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/users/{owner}"),
            None,
        )
        .await;
    assert_eq!(detail.body["roles"][0]["role"], "tenant_owner");

    // The owner (signed in, as the auth plane would do after enrollment) registers a client.
    let owner_id = opentrusty_core::UserId(uuid::Uuid::parse_str(&owner).unwrap());
    let tenant_id = opentrusty_core::TenantId(uuid::Uuid::parse_str(&tenant).unwrap());
    let owner_cred = w.sign_in(owner_id, Some(tenant_id)).await;
    let r = w
        .call_as(
            &owner_cred,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/clients"),
            Some(json!({
                "client_name": "Initech Portal",
                "redirect_uris": ["https://portal.initech.example/callback", "http://127.0.0.1:8765/cb"],
                "post_logout_redirect_uris": ["https://portal.initech.example/"],
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                "allowed_scopes": ["openid", "email"],
                "token_endpoint_auth_method": "client_secret_post",
                "access_token_format": "opaque",
                "id_token_signed_response_alg": "ES256",
                "first_party": true,
                "access_token_ttl": 600,
            })),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client = r.body["client"]["id"].as_str().unwrap().to_owned();
    let client_id = r.body["client"]["client_id"].as_str().unwrap().to_owned();
    let secret = r.body["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(r.body["client"]["access_token_format"], "opaque");
    assert_eq!(r.body["client"]["access_token_ttl"], 600);
    let stored = w
        .store
        .find_client_for_request(&client_id)
        .await
        .unwrap()
        .unwrap();
    let first_hash = stored.secret_hash.unwrap();
    assert!(client_secret_matches(&secret, &first_hash));
    assert!(!first_hash.contains(&secret));
    // The secret is never shown again.
    let shown = w
        .call_as(
            &owner_cred,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/clients/{client}"),
            None,
            &[],
        )
        .await;
    assert_eq!(shown.status, 200);
    assert!(!shown.body.to_string().contains(&secret));
    assert!(shown.body.get("client_secret").is_none());

    let r = w
        .call_as(
            &owner_cred,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/clients/{client}/secret"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = r.body["client_secret"].as_str().unwrap().to_owned();
    let hash = w
        .store
        .find_client_for_request(&client_id)
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(client_secret_matches(&rotated, &hash));
    assert!(!client_secret_matches(&secret, &hash));

    // PATCH changes only what it names and validates the result.
    let path = format!("/api/v1/tenants/{tenant}/clients/{client}");
    let r = w
        .call_as(
            &owner_cred,
            Method::PATCH,
            &path,
            Some(json!({ "client_name": "Portal", "allowed_scopes": ["openid"] })),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["client_name"], "Portal");
    assert_eq!(r.body["access_token_ttl"], 600);
    let r = w
        .call_as(
            &owner_cred,
            Method::PATCH,
            &path,
            Some(json!({ "redirect_uris": [] })),
            &[],
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, Some("redirect_uris")));

    // The audit trail tells the story, newest first, without secrets.
    let trail = w
        .call_as(
            &owner_cred,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/audit"),
            None,
            &[],
        )
        .await;
    assert_eq!(trail.status, 200);
    let types: Vec<&str> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "client.updated",
            "client.secret_rotated",
            "client.created",
            "login.succeeded",
            "enrollment_link.issued",
            "enrollment_link.issued",
            "role.assigned",
            "user.created",
            "tenant.created",
        ]
    );
    let text = trail.body.to_string();
    for secret in [&secret, &rotated, &token.to_owned()] {
        assert!(!text.contains(secret.as_str()));
    }
    let updated = &trail.body["items"][0];
    assert_eq!(updated["actor"]["id"], owner);
    assert_eq!(
        updated["metadata"]["changes"]["name"],
        json!({ "from": "Initech Portal", "to": "Portal" })
    );
    let filtered = w
        .call_as(
            &owner_cred,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/audit?type=client.created&target={client}"),
            None,
            &[],
        )
        .await;
    assert_eq!(filtered.body["items"].as_array().unwrap().len(), 1);

    // Deleting the client revokes its tokens and leaves the users alone.
    let client_uuid = opentrusty_core::ClientId(uuid::Uuid::parse_str(&client).unwrap());
    let issued = w
        .access_token(tenant_id, client_uuid, Some(owner_id), 600)
        .await;
    let r = w
        .call_as(&owner_cred, Method::DELETE, &path, None, &[])
        .await;
    assert_eq!(r.status, 204);
    let record = w
        .store
        .find_access_token_by_digest(&token_digest(&issued), now())
        .await
        .unwrap()
        .unwrap();
    assert!(!record.active);
    assert!(
        w.store
            .get_user(tenant_id, owner_id)
            .await
            .unwrap()
            .is_some()
    );
    let r = w.call_as(&owner_cred, Method::GET, &path, None, &[]).await;
    assert_eq!(r.status, 404);
}

/// Listing 1,000 users 50 at a time returns each exactly once while users are being added.
async fn pagination_is_stable_under_concurrent_inserts(db: &TestDb) {
    let w = World::new(db).await;
    let origin = Origin::system();
    let mut existing = HashSet::new();
    for n in 0..1000 {
        let u = w
            .store
            .create_user(
                &NewUser::new(Some(w.b), &format!("user{n:04}@b.example"), None, None).unwrap(),
                None,
                &origin,
            )
            .await
            .unwrap();
        existing.insert(u.id.to_string());
    }
    existing.insert(w.owner_b.to_string());
    let store = w.store.clone();
    let tenant = w.b;
    let writer = tokio::spawn(async move {
        for n in 0..200 {
            store
                .create_user(
                    &NewUser::new(Some(tenant), &format!("late{n}@b.example"), None, None).unwrap(),
                    None,
                    &Origin::system(),
                )
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("/api/v1/tenants/{}/users?limit=50", w.b),
            Some(c) => format!("/api/v1/tenants/{}/users?limit=50&cursor={c}", w.b),
        };
        let r = w.call(Actor::OwnerB, Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a user was listed twice");
    let missing: Vec<_> = existing.iter().filter(|id| !unique.contains(*id)).collect();
    assert!(missing.is_empty(), "{} users were skipped", missing.len());
    assert!(pages >= 21, "{pages} pages");
    // Filters page too.
    let r = w
        .call(
            Actor::OwnerB,
            Method::GET,
            &format!("/api/v1/tenants/{}/users?email_prefix=USER099&limit=5", w.b),
            None,
        )
        .await;
    let emails: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 5);
    assert!(
        emails.iter().all(|e| e.starts_with("user099")),
        "{emails:?}"
    );
    assert!(r.body["next_cursor"].is_string());
}

/// Audit pages are newest first and stay correct while new events arrive.
async fn audit_pages_stay_correct_while_events_arrive(db: &TestDb) {
    let w = World::new(db).await;
    let origin = Origin::system();
    for n in 0..120 {
        w.store
            .create_user(
                &NewUser::new(Some(w.a), &format!("a{n}@a.example"), None, None).unwrap(),
                None,
                &origin,
            )
            .await
            .unwrap();
    }
    let before = w
        .store
        .list_audit(&opentrusty_store::AuditQuery {
            tenant: Some(w.a),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut n = 0;
    loop {
        // New events arrive between pages.
        w.store
            .create_user(
                &NewUser::new(Some(w.a), &format!("late{n}@a.example"), None, None).unwrap(),
                None,
                &origin,
            )
            .await
            .unwrap();
        n += 1;
        let path = match &cursor {
            None => format!("/api/v1/tenants/{}/audit?limit=25", w.a),
            Some(c) => format!("/api/v1/tenants/{}/audit?limit=25&cursor={c}", w.a),
        };
        let r = w.call(Actor::OwnerA, Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for e in r.body["items"].as_array().unwrap() {
            seen.push((
                e["occurred_at"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
            ));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was listed twice");
    for e in &before {
        assert!(
            unique.contains(e.id.to_string().as_str()),
            "event {} skipped",
            e.id
        );
    }
    // Newest first.
    let times: Vec<time::OffsetDateTime> = seen
        .iter()
        .map(|(t, _)| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]));
    // Time filters.
    let until = (now() - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = w
        .call(
            Actor::OwnerA,
            Method::GET,
            &format!("/api/v1/tenants/{}/audit?until={until}", w.a),
            None,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));
    let r = w
        .call(
            Actor::OwnerA,
            Method::GET,
            &format!("/api/v1/tenants/{}/audit?since=yesterday", w.a),
            None,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, Some("since")));
    // The platform trail sees every tenant.
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            "/api/v1/audit?limit=200",
            None,
        )
        .await;
    let tenants: HashSet<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["tenant_id"].as_str())
        .collect();
    assert!(tenants.contains(w.a.to_string().as_str()));
}

async fn keys_rotate_to_the_published_next_key(db: &TestDb) {
    let w = World::new(db).await;
    let keys = w
        .call(Actor::PlatformAdmin, Method::GET, "/api/v1/keys", None)
        .await;
    assert_eq!(keys.status, 200);
    let items = keys.body["items"].as_array().unwrap();
    let status_of = |items: &[Value], s: &str| -> Vec<String> {
        items
            .iter()
            .filter(|k| k["status"] == s)
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let active = status_of(items, "active");
    let next = status_of(items, "next");
    assert_eq!((active.len(), next.len()), (1, 1));
    assert!(!keys.body.to_string().contains("ciphertext"));
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            "/api/v1/keys/rotate",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rotated"][0]["active_kid"], next[0]);
    assert_eq!(r.body["rotated"][0]["retired_kid"], active[0]);
    // No next key yet: a second rotation waits for an auth process to prepare one.
    let again = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            "/api/v1/keys/rotate",
            Some(json!({ "alg": "RS256" })),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let keys = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            "/api/v1/keys?limit=1",
            None,
        )
        .await;
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1);
    assert!(keys.body["next_cursor"].is_string());
    let bad = w
        .call(
            Actor::PlatformAdmin,
            Method::POST,
            "/api/v1/keys/rotate",
            Some(json!({ "alg": "HS256" })),
        )
        .await;
    assert_eq!((bad.status.as_u16(), bad.field()), (422, Some("alg")));
    let r = w
        .call(
            Actor::PlatformAdmin,
            Method::GET,
            "/api/v1/audit?type=signing_key.rotated",
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
}

opentrusty_testkit::each_backend!(
    session_writes_need_the_csrf_token_and_a_console_origin,
    cors_admits_exactly_the_console_origins,
    the_tenant_comes_from_the_credential_never_a_header,
    credentials_are_checked_against_the_database_on_every_request,
    role_rules_hold,
    admins_cannot_act_on_owners_or_owner_level_clients,
    a_promotion_voids_the_users_pending_links,
    invalid_input_gets_a_problem_naming_the_field,
    an_operator_runs_a_tenant_from_the_api,
    pagination_is_stable_under_concurrent_inserts,
    audit_pages_stay_correct_while_events_arrive,
    keys_rotate_to_the_published_next_key,
);

/// The problem documents (RFC 9457) the admin API answers with, as a client sees them: a
/// refused field, a missing credential, a forbidden action, an unknown resource. A change to
/// any of them shows as a snapshot to review.
#[tokio::test]
async fn problem_bodies_are_as_published() {
    let db = TestDb::sqlite(true).await;
    let w = World::new(&db).await;
    let clients = format!("/api/v1/tenants/{}/clients", w.a);
    let calls = [
        (
            "a refused field",
            Actor::OwnerA,
            Method::POST,
            clients.clone(),
            Some(json!({ "client_name": "x", "grant_types": ["password"],
                         "redirect_uris": ["https://a.example/cb"] })),
        ),
        (
            "no credential",
            Actor::Anonymous,
            Method::GET,
            clients.clone(),
            None,
        ),
        (
            "forbidden",
            Actor::MemberA,
            Method::POST,
            clients.clone(),
            Some(json!({ "client_name": "x", "redirect_uris": ["https://a.example/cb"] })),
        ),
        (
            "unknown resource",
            Actor::OwnerA,
            Method::GET,
            format!("{clients}/{}", uuid::Uuid::nil()),
            None,
        ),
    ];
    let mut seen = Vec::new();
    for (what, actor, method, path, body) in calls {
        let r = w.call(actor, method, &path, body).await;
        seen.push(json!({
            "request": what,
            "status": r.status.as_u16(),
            "content-type": r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            "body": r.body,
        }));
    }
    insta::assert_json_snapshot!(seen);
}

/// The OpenAPI document as published: a change to the admin API's surface shows here as a
/// snapshot to review.
#[test]
fn the_openapi_document_is_as_published() {
    let doc: Value = serde_json::from_str(opentrusty_admin::openapi_json()).unwrap();
    insta::assert_json_snapshot!(doc);
}

/// The OpenAPI document is 3.1, its operations are the route table, and each documents its
/// errors as problem documents.
#[test]
fn openapi_document_lists_every_route() {
    let doc: Value = serde_json::from_str(opentrusty_admin::openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> = opentrusty_admin::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    assert_eq!(documented, table);
    assert_eq!(
        table.len(),
        30,
        "the admin API's routes (a new one needs its matrix rows)"
    );
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if path.ends_with("openapi.json") {
                continue;
            }
            for status in ["401", "403", "404", "422"] {
                let content = &op["responses"][status]["content"]["application/problem+json"];
                assert!(content.is_object(), "{method} {path} lacks {status}");
            }
        }
    }
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// The router answers exactly the declared methods of each path: every other method gets 405
/// with a problem document (the authorization matrix shows each declared one is served).
#[tokio::test]
async fn the_router_answers_only_the_declared_methods() {
    let db = TestDb::sqlite(true).await;
    let w = World::new(&db).await;
    let table = opentrusty_admin::route_table();
    let paths: BTreeSet<&String> = table.iter().map(|(_, p)| p).collect();
    let mut wrong = Vec::new();
    for path in paths {
        let concrete = path
            .replace("{tenant_id}", &w.a.to_string())
            .replace("{user_id}", &uuid::Uuid::nil().to_string())
            .replace("{client_id}", &uuid::Uuid::nil().to_string())
            .replace("{role}", "tenant_member");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if table.iter().any(|(m, p)| *m == method && p == path) {
                continue;
            }
            let r = w.call(Actor::OwnerA, method.clone(), &concrete, None).await;
            if r.status != 405 || r.headers["content-type"] != "application/problem+json" {
                wrong.push(format!("{method} {path}: {} {}", r.status, r.body));
            }
        }
    }
    assert!(wrong.is_empty(), "undeclared methods answered: {wrong:#?}");
}

/// The document validates against the OpenAPI 3.1 schema (checked by `openapi-spec-validator`).
#[test]
fn openapi_document_is_valid_openapi_3_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, opentrusty_admin::openapi_json()).unwrap();
    let validator = opentrusty_testkit::python_tool("openapi-spec-validator");
    let out = std::process::Command::new(validator)
        .arg("--schema")
        .arg("3.1")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it can fail: a broken document is refused.
    let mut broken: Value = serde_json::from_str(opentrusty_admin::openapi_json()).unwrap();
    broken["paths"]["/api/v1/keys"]["get"]["responses"] = json!("none");
    std::fs::write(&file, broken.to_string()).unwrap();
    let out = std::process::Command::new(opentrusty_testkit::python_tool("openapi-spec-validator"))
        .arg("--schema")
        .arg("3.1")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
