//! The authorization matrix and tenant isolation of the admin API, generated from two tables:
//! every route the router serves has exactly one row giving the status each actor gets, and
//! every action on a user or a client has one row per role its target may hold (the role
//! hierarchy), so a new route without its rows fails here. Every cell starts from fresh
//! resources.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::collections::BTreeSet;

use axum::http::Method;
use opentrusty_core::rbac::Role;
use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{ACTORS, Actor, Fresh, TargetKind, World};

/// Which tenant a row's `{tenant_id}` names.
#[derive(Clone, Copy)]
enum On {
    /// Tenant A, where the owner, admin, member and service account live.
    TenantA,
    /// A fresh tenant (for deleting one).
    FreshTenant,
}

struct Row {
    method: Method,
    path: &'static str,
    on: On,
    body: fn(&Fresh) -> Option<Value>,
    /// Statuses for: anonymous, platform admin, owner A, admin A, member A, owner B, service A.
    expect: [u16; 7],
}

const fn tenant_op(ok: u16) -> [u16; 7] {
    [401, ok, ok, ok, 403, 404, ok]
}

const fn platform_op(ok: u16) -> [u16; 7] {
    [401, ok, 403, 403, 403, 403, 403]
}

fn none(_: &Fresh) -> Option<Value> {
    None
}

fn row(
    method: Method,
    path: &'static str,
    body: fn(&Fresh) -> Option<Value>,
    expect: [u16; 7],
) -> Row {
    Row {
        method,
        path,
        on: On::TenantA,
        body,
        expect,
    }
}

fn table() -> Vec<Row> {
    vec![
        row(Method::GET, "/api/v1/openapi.json", none, [200; 7]),
        row(
            Method::GET,
            "/api/v1/auth/me",
            none,
            [401, 200, 200, 200, 403, 200, 200],
        ),
        row(Method::GET, "/api/v1/tenants", none, platform_op(200)),
        row(
            Method::POST,
            "/api/v1/tenants",
            |f| Some(json!({ "name": format!("new-{}", f.n) })),
            platform_op(201),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}",
            none,
            [401, 200, 200, 200, 403, 404, 200],
        ),
        row(
            Method::PATCH,
            "/api/v1/tenants/{tenant_id}",
            |_| Some(json!({ "display_name": "Acme, Inc." })),
            [401, 200, 200, 403, 403, 404, 403],
        ),
        Row {
            method: Method::DELETE,
            path: "/api/v1/tenants/{tenant_id}",
            on: On::FreshTenant,
            body: none,
            expect: platform_op(204),
        },
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/users",
            none,
            tenant_op(200),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users",
            |f| Some(json!({ "email": format!("new{}@a.example", f.n), "given_name": "New" })),
            tenant_op(201),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/users/{user_id}",
            none,
            tenant_op(200),
        ),
        row(
            Method::PATCH,
            "/api/v1/tenants/{tenant_id}/users/{user_id}",
            |_| Some(json!({ "given_name": "Renamed" })),
            tenant_op(200),
        ),
        row(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/users/{user_id}",
            none,
            tenant_op(204),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/password-reset",
            none,
            tenant_op(201),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/unlock",
            none,
            tenant_op(200),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/roles",
            |_| Some(json!({ "role": "tenant_admin" })),
            tenant_op(204),
        ),
        row(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/roles/{role}",
            none,
            tenant_op(204),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/sessions",
            none,
            tenant_op(200),
        ),
        row(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/sessions",
            none,
            tenant_op(200),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/clients",
            none,
            tenant_op(200),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/clients",
            |_| {
                Some(json!({
                    "client_name": "Shop",
                    "redirect_uris": ["https://shop.example/callback"],
                }))
            },
            tenant_op(201),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}",
            none,
            tenant_op(200),
        ),
        row(
            Method::PATCH,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}",
            |_| Some(json!({ "client_name": "Renamed" })),
            tenant_op(200),
        ),
        row(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}",
            none,
            tenant_op(204),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/secret",
            none,
            tenant_op(200),
        ),
        row(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles",
            |_| Some(json!({ "role": "tenant_admin" })),
            tenant_op(204),
        ),
        row(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles/{role}",
            none,
            tenant_op(204),
        ),
        row(
            Method::GET,
            "/api/v1/tenants/{tenant_id}/audit",
            none,
            tenant_op(200),
        ),
        row(Method::GET, "/api/v1/audit", none, platform_op(200)),
        row(Method::GET, "/api/v1/keys", none, platform_op(200)),
        row(Method::POST, "/api/v1/keys/rotate", none, platform_op(200)),
    ]
}

/// The statuses of an action on a target only owners may act on: an admin and a service account
/// holding `tenant_admin` cannot grant `tenant_owner`, so they may not act on its holder.
const fn owners_only(ok: u16) -> [u16; 7] {
    [401, ok, ok, 403, 403, 404, 403]
}

/// The roles a target of an action may hold; each action route has one row per role.
const TARGET_ROLES: [Role; 3] = [Role::TenantOwner, Role::TenantAdmin, Role::TenantMember];

/// The body of an action's request, given the role its target holds.
type TargetBody = fn(Role) -> Option<Value>;

/// One action (a non-GET route naming a user or a client) on a target holding `held`.
struct TargetRow {
    method: Method,
    path: &'static str,
    held: Role,
    body: TargetBody,
    /// Statuses for: anonymous, platform admin, owner A, admin A, member A, owner B, service A.
    expect: [u16; 7],
}

/// The rows of one action: owners and platform administrators act on every target, admins and
/// the service account (`tenant_admin`) on admins and members only.
fn on_targets(method: Method, path: &'static str, body: TargetBody, ok: u16) -> Vec<TargetRow> {
    [
        (Role::TenantOwner, owners_only(ok)),
        (Role::TenantAdmin, tenant_op(ok)),
        (Role::TenantMember, tenant_op(ok)),
    ]
    .into_iter()
    .map(|(held, expect)| TargetRow {
        method: method.clone(),
        path,
        held,
        body,
        expect,
    })
    .collect()
}

fn no_body(_: Role) -> Option<Value> {
    None
}

fn rename_user(_: Role) -> Option<Value> {
    Some(json!({ "given_name": "Renamed" }))
}

fn rename_client(_: Role) -> Option<Value> {
    Some(json!({ "client_name": "Renamed" }))
}

/// A role the target does not hold yet, so that granting it is a change.
fn another_role(held: Role) -> Option<Value> {
    let role = if held == Role::TenantMember {
        "tenant_admin"
    } else {
        "tenant_member"
    };
    Some(json!({ "role": role }))
}

fn target_table() -> Vec<TargetRow> {
    let user = "/api/v1/tenants/{tenant_id}/users/{user_id}";
    let client = "/api/v1/tenants/{tenant_id}/clients/{client_id}";
    [
        on_targets(Method::PATCH, user, rename_user, 200),
        on_targets(Method::DELETE, user, no_body, 204),
        on_targets(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/password-reset",
            no_body,
            201,
        ),
        on_targets(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/unlock",
            no_body,
            200,
        ),
        on_targets(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/roles",
            another_role,
            204,
        ),
        on_targets(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/roles/{role}",
            no_body,
            204,
        ),
        on_targets(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/users/{user_id}/sessions",
            no_body,
            200,
        ),
        on_targets(Method::PATCH, client, rename_client, 200),
        on_targets(Method::DELETE, client, no_body, 204),
        on_targets(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/secret",
            no_body,
            200,
        ),
        on_targets(
            Method::POST,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles",
            another_role,
            204,
        ),
        on_targets(
            Method::DELETE,
            "/api/v1/tenants/{tenant_id}/clients/{client_id}/roles/{role}",
            no_body,
            204,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `path` with its placeholders filled: the tenant, the fresh user and client, and the role
/// they hold.
fn fill(path: &str, tenant: impl ToString, f: &Fresh) -> String {
    path.replace("{tenant_id}", &tenant.to_string())
        .replace("{user_id}", &f.user.to_string())
        .replace("{client_id}", &f.client.to_string())
        .replace("{role}", "tenant_member")
}

#[test]
fn every_route_has_exactly_one_row() {
    let routes: BTreeSet<(String, String)> = opentrusty_admin::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    let rows: Vec<(String, String)> = table()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let unique: BTreeSet<_> = rows.iter().cloned().collect();
    assert_eq!(unique.len(), rows.len(), "a route has two rows");
    let missing: Vec<_> = routes.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without a row: {missing:?}; rows without a route: {extra:?}"
    );
}

/// Every action on a user or a client (a non-GET route naming one) has a row for a target holding
/// each tenant role, and nothing else has such rows.
#[test]
fn every_action_route_has_a_row_per_target_role() {
    let actions: BTreeSet<(String, String)> = opentrusty_admin::route_table()
        .into_iter()
        .filter(|(m, p)| *m != Method::GET && TargetKind::of_path(p).is_some())
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    assert!(!actions.is_empty());
    let rows = target_table();
    let mut seen = BTreeSet::new();
    for r in &rows {
        let key = (r.method.to_string(), r.path.to_owned());
        assert!(
            actions.contains(&key),
            "{} {} is not an action on a user or a client",
            r.method,
            r.path
        );
        assert!(
            seen.insert((key, r.held.as_str())),
            "{} {} has two rows for {}",
            r.method,
            r.path,
            r.held.as_str()
        );
    }
    let mut missing = Vec::new();
    for (m, p) in &actions {
        for role in TARGET_ROLES {
            if !seen.contains(&((m.clone(), p.clone()), role.as_str())) {
                missing.push(format!("{m} {p} on a {} target", role.as_str()));
            }
        }
    }
    assert!(missing.is_empty(), "rows missing: {missing:?}");
}

/// Each action on a target holding each role, as each actor: the status, the problem type of a
/// refusal (the role hierarchy's own for callers that hold the route's permission), and no
/// audit row about the target when the action was refused.
async fn role_hierarchy_matrix(db: &TestDb) {
    let world = World::new(db).await;
    let mut wrong = Vec::new();
    for row in target_table() {
        let kind = TargetKind::of_path(row.path).expect("an action names its target");
        for (i, actor) in ACTORS.into_iter().enumerate() {
            let target = world.fresh_target(kind, row.held).await;
            let path = row
                .path
                .replace("{tenant_id}", &world.a.to_string())
                .replace("{user_id}", &target.to_string())
                .replace("{client_id}", &target.to_string())
                .replace("{role}", row.held.as_str());
            let audited = world.audit_rows_about(target).await;
            let reply = world
                .call(actor, row.method.clone(), &path, (row.body)(row.held))
                .await;
            let cell = format!(
                "{} {} on a {} {kind:?} as {actor:?}",
                row.method,
                row.path,
                row.held.as_str()
            );
            if reply.status.as_u16() != row.expect[i] {
                wrong.push(format!(
                    "{cell}: {} (expected {}) {}",
                    reply.status, row.expect[i], reply.body
                ));
                continue;
            }
            if reply.status == 403 {
                let (problem, role) = if actor == Actor::MemberA {
                    ("urn:opentrusty:problem:forbidden", Value::Null)
                } else {
                    (
                        "urn:opentrusty:problem:role-hierarchy",
                        json!(row.held.as_str()),
                    )
                };
                if reply.body["type"] != problem
                    || reply.body.get("role").cloned().unwrap_or_default() != role
                {
                    wrong.push(format!("{cell}: 403 {}", reply.body));
                }
            }
            if !reply.status.is_success() && world.audit_rows_about(target).await != audited {
                wrong.push(format!("{cell}: refused, yet audited"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

async fn authorization_matrix(db: &TestDb) {
    let world = World::new(db).await;
    let mut wrong = Vec::new();
    for row in table() {
        for (i, actor) in ACTORS.into_iter().enumerate() {
            let f = world.fresh().await;
            let tenant = match row.on {
                On::TenantA => world.a,
                On::FreshTenant => f.tenant,
            };
            let path = fill(row.path, tenant, &f);
            let reply = world
                .call(actor, row.method.clone(), &path, (row.body)(&f))
                .await;
            if reply.status.as_u16() != row.expect[i] {
                wrong.push(format!(
                    "{} {} as {actor:?}: {} (expected {}) {}",
                    row.method, row.path, reply.status, row.expect[i], reply.body
                ));
            }
            if reply.status.is_client_error() {
                assert_eq!(
                    reply.headers["content-type"], "application/problem+json",
                    "{} {} as {actor:?}",
                    row.method, row.path
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Nothing of tenant B is readable, listable, writable or even confirmed to exist by tenant A's
/// actors: every tenant-scoped route answers with B's ids exactly as it does for ids that exist
/// nowhere, and A's lists and filters never return B's rows.
async fn tenant_b_is_invisible_from_tenant_a(db: &TestDb) {
    let world = World::new(db).await;
    let b_user = support::user(
        &world.store,
        Some(world.b),
        "member@b.example",
        Some(opentrusty_core::rbac::Role::TenantMember),
    )
    .await;
    let b_client = support::client(
        &world.store,
        world.b,
        "b-app",
        Some(opentrusty_core::rbac::Role::TenantMember),
    )
    .await;
    let of_b = |path: &str| {
        path.replace("{tenant_id}", &world.b.to_string())
            .replace("{user_id}", &b_user.to_string())
            .replace("{client_id}", &b_client.to_string())
            .replace("{role}", "tenant_member")
    };
    let nowhere = |path: &str| {
        path.replace("{tenant_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{user_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{client_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{role}", "tenant_member")
    };
    // A's own tenant in the path with B's users and clients: not found either.
    let mixed = |path: &str| {
        path.replace("{tenant_id}", &world.a.to_string())
            .replace("{user_id}", &b_user.to_string())
            .replace("{client_id}", &b_client.to_string())
            .replace("{role}", "tenant_member")
    };
    let bodies: std::collections::HashMap<(String, &str), Option<Value>> = table()
        .into_iter()
        .map(|r| {
            (
                (r.method.to_string(), r.path),
                (r.body)(&Fresh {
                    n: 9999,
                    tenant: world.b,
                    user: b_user,
                    client: b_client,
                }),
            )
        })
        .collect();
    let mut wrong = Vec::new();
    for (method, path) in opentrusty_admin::route_table() {
        let path = path.as_str();
        if !path.contains("{tenant_id}") {
            continue;
        }
        let body = bodies[&(method.to_string(), path)].clone();
        for actor in [
            Actor::OwnerA,
            Actor::AdminA,
            Actor::MemberA,
            Actor::ServiceA,
        ] {
            let seen = world
                .call(actor, method.clone(), &of_b(path), body.clone())
                .await;
            let unknown = world
                .call(actor, method.clone(), &nowhere(path), body.clone())
                .await;
            if seen.status != unknown.status || seen.body != unknown.body {
                wrong.push(format!(
                    "{method} {path} as {actor:?}: B's ids give {} {}, unknown ids {} {}",
                    seen.status, seen.body, unknown.status, unknown.body
                ));
            }
            // Deleting a tenant is a platform permission: refused before any lookup.
            let expected = if method == Method::DELETE && path == "/api/v1/tenants/{tenant_id}" {
                403
            } else {
                404
            };
            if seen.status.as_u16() != expected {
                wrong.push(format!("{method} {path} as {actor:?}: {}", seen.status));
            }
            if path.contains("{user_id}") || path.contains("{client_id}") {
                let m = world
                    .call(actor, method.clone(), &mixed(path), body.clone())
                    .await;
                if m.status != 404 && !(actor == Actor::MemberA && m.status == 403) {
                    wrong.push(format!(
                        "{method} {path} as {actor:?} with B's ids under A: {} {}",
                        m.status, m.body
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // B's rows are still there: nothing above changed them.
    assert!(
        world
            .store
            .get_user(world.b, b_user)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        world
            .store
            .get_client(world.b, b_client)
            .await
            .unwrap()
            .is_some()
    );

    // Lists and filters of A never return B's rows.
    let a = world.a;
    for (path, b_ids) in [
        (
            format!("/api/v1/tenants/{a}/users?email_prefix=member%40b"),
            vec![b_user.to_string()],
        ),
        (
            format!("/api/v1/tenants/{a}/users?limit=200"),
            vec![b_user.to_string(), world.owner_b.to_string()],
        ),
        (
            format!("/api/v1/tenants/{a}/clients?limit=200"),
            vec![b_client.to_string()],
        ),
        (
            format!("/api/v1/tenants/{a}/audit?limit=200"),
            vec![world.b.to_string(), b_user.to_string()],
        ),
        (
            format!("/api/v1/tenants/{a}/audit?target={b_user}"),
            vec![b_user.to_string()],
        ),
        (
            format!("/api/v1/tenants/{a}/audit?actor={}", world.owner_b),
            vec![world.owner_b.to_string()],
        ),
    ] {
        let r = world.call(Actor::OwnerA, Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let text = r.body.to_string();
        for id in b_ids {
            assert!(!text.contains(&id), "{path} shows {id}: {text}");
        }
    }
    let r = world
        .call(
            Actor::OwnerA,
            Method::GET,
            &format!("/api/v1/tenants/{a}/users?email_prefix=member%40b"),
            None,
        )
        .await;
    assert_eq!(r.body["items"], json!([]));
    // A's actors cannot list tenants or read the platform trail.
    for actor in [Actor::OwnerA, Actor::AdminA, Actor::ServiceA] {
        for path in ["/api/v1/tenants", "/api/v1/audit"] {
            assert_eq!(world.call(actor, Method::GET, path, None).await.status, 403);
        }
    }
}

opentrusty_testkit::each_backend!(
    authorization_matrix,
    role_hierarchy_matrix,
    tenant_b_is_invisible_from_tenant_a
);
