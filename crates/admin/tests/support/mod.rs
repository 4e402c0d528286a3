//! A seeded installation for the admin API's tests: two tenants with an owner, an admin and a
//! member in A, an owner in B, a platform administrator, a service-account client of A, signing
//! keys, and signed-in sessions for each; fresh targets of tenant A holding a chosen role.
//! Requests go through the real router in process.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use opentrusty_admin::{AdminSettings, AdminState};
use opentrusty_core::audit::Origin;
use opentrusty_core::client::{NewClient, TokenEndpointAuthMethod, client_secret_digest};
use opentrusty_core::rbac::{Role, Scope};
use opentrusty_core::secret::{MasterKey, random_token, session_csrf_token, token_digest};
use opentrusty_core::session::NewSession;
use opentrusty_core::tenant::TenantName;
use opentrusty_core::user::NewUser;
use opentrusty_core::{ClientId, TenantId, UserId, now};
use opentrusty_store::{AuditQuery, NewAccessToken, NewSigningKey, Store, Subject};
use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const CONSOLE: &str = "https://console.example";
pub const AUTH_BASE: &str = "https://auth.example";

/// Who makes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Anonymous,
    PlatformAdmin,
    OwnerA,
    AdminA,
    MemberA,
    OwnerB,
    ServiceA,
}

pub const ACTORS: [Actor; 7] = [
    Actor::Anonymous,
    Actor::PlatformAdmin,
    Actor::OwnerA,
    Actor::AdminA,
    Actor::MemberA,
    Actor::OwnerB,
    Actor::ServiceA,
];

/// How a request proves who sends it.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    Cookie { value: String, csrf: String },
    Bearer(String),
}

/// A response, its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn field(&self) -> Option<&str> {
        self.body.get("field").and_then(Value::as_str)
    }
}

pub struct World {
    pub store: Store,
    pub app: Router,
    pub key: MasterKey,
    pub a: TenantId,
    pub b: TenantId,
    pub platform_admin: UserId,
    pub owner_a: UserId,
    pub admin_a: UserId,
    pub member_a: UserId,
    pub owner_b: UserId,
    pub service_a: ClientId,
    credentials: Vec<(Actor, Credential)>,
    counter: AtomicU32,
}

/// Resources made for one request, so that every cell of a table starts from the same state.
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    pub n: u32,
    /// A tenant nobody but platform administrators holds roles in.
    pub tenant: TenantId,
    /// A user of tenant A holding `tenant_member`.
    pub user: UserId,
    /// A client of tenant A holding `tenant_member` as a service account.
    pub client: ClientId,
}

/// What an action's `{user_id}` or `{client_id}` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    User,
    Client,
}

impl TargetKind {
    /// The kind of target a route's path names, if any.
    pub fn of_path(path: &str) -> Option<TargetKind> {
        if path.contains("{user_id}") {
            Some(TargetKind::User)
        } else if path.contains("{client_id}") {
            Some(TargetKind::Client)
        } else {
            None
        }
    }
}

pub fn dummy_key() -> NewSigningKey {
    let kid = random_token();
    NewSigningKey {
        public_jwk: json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": "AA" }),
        kid,
        alg: "RS256".to_owned(),
        private_key_ciphertext: vec![0; 16],
    }
}

impl World {
    pub async fn new(db: &TestDb) -> World {
        let store = db.store().await;
        let key = MasterKey::generate();
        let origin = Origin::system();
        let a = store
            .create_tenant(&TenantName::parse("Acme").unwrap(), None, &origin)
            .await
            .unwrap()
            .id;
        let b = store
            .create_tenant(&TenantName::parse("Globex").unwrap(), None, &origin)
            .await
            .unwrap()
            .id;
        let platform_admin = user(&store, None, "root@platform.example", None).await;
        store
            .assign_role(
                Subject::User(platform_admin),
                Role::PlatformAdmin,
                Scope::Platform,
                &origin,
            )
            .await
            .unwrap();
        let owner_a = user(&store, Some(a), "owner@a.example", Some(Role::TenantOwner)).await;
        let admin_a = user(&store, Some(a), "admin@a.example", Some(Role::TenantAdmin)).await;
        let member_a = user(
            &store,
            Some(a),
            "member@a.example",
            Some(Role::TenantMember),
        )
        .await;
        let owner_b = user(&store, Some(b), "owner@b.example", Some(Role::TenantOwner)).await;
        let service_a = client(&store, a, "robot", Some(Role::TenantAdmin)).await;
        store
            .install_first_signing_keys(&dummy_key(), &dummy_key(), &origin)
            .await
            .unwrap();
        let state = AdminState::new(
            store.clone(),
            key.clone(),
            AdminSettings {
                console_origins: vec![CONSOLE.to_owned()],
                session_idle_secs: 1800,
                auth_base_url: AUTH_BASE.to_owned(),
                enrollment_ttl_secs: 72 * 3600,
            },
        );
        let mut world = World {
            app: opentrusty_admin::router(state),
            store,
            key,
            a,
            b,
            platform_admin,
            owner_a,
            admin_a,
            member_a,
            owner_b,
            service_a,
            credentials: Vec::new(),
            counter: AtomicU32::new(0),
        };
        let mut credentials = vec![(Actor::Anonymous, Credential::None)];
        for (actor, id, tenant) in [
            (Actor::PlatformAdmin, platform_admin, None),
            (Actor::OwnerA, owner_a, Some(a)),
            (Actor::AdminA, admin_a, Some(a)),
            (Actor::MemberA, member_a, Some(a)),
            (Actor::OwnerB, owner_b, Some(b)),
        ] {
            credentials.push((actor, world.sign_in(id, tenant).await));
        }
        credentials.push((
            Actor::ServiceA,
            Credential::Bearer(world.access_token(a, service_a, None, 3600).await),
        ));
        world.credentials = credentials;
        world
    }

    /// A session for `user`, as the auth plane's sign-in would create it.
    pub async fn sign_in(&self, user: UserId, tenant: Option<TenantId>) -> Credential {
        let value = random_token();
        let digest = token_digest(&value);
        self.store
            .create_session(
                &NewSession {
                    user_id: user,
                    tenant_id: tenant,
                    token_digest: digest,
                    expires_at: now() + time::Duration::hours(1),
                    ip: None,
                    user_agent: None,
                },
                None,
                &Origin::system(),
            )
            .await
            .unwrap();
        Credential::Cookie {
            csrf: session_csrf_token(&self.key, &digest),
            value,
        }
    }

    /// An access token as the auth plane records it.
    pub async fn access_token(
        &self,
        tenant: TenantId,
        client: ClientId,
        user: Option<UserId>,
        ttl_secs: i64,
    ) -> String {
        let token = random_token();
        self.store
            .issue_tokens(
                &NewAccessToken {
                    jti: uuid::Uuid::now_v7(),
                    token_digest: Some(token_digest(&token)),
                    tenant_id: tenant,
                    client_id: client,
                    user_id: user,
                    scope: String::new(),
                    expires_at: now() + time::Duration::seconds(ttl_secs),
                },
                None,
                &Origin::system(),
            )
            .await
            .unwrap();
        token
    }

    pub fn credential(&self, actor: Actor) -> Credential {
        self.credentials
            .iter()
            .find(|(a, _)| *a == actor)
            .map(|(_, c)| c.clone())
            .expect("every actor has a credential")
    }

    pub fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Fresh resources for one request (and a next signing key, so a rotation can succeed).
    pub async fn fresh(&self) -> Fresh {
        let n = self.next();
        let origin = Origin::system();
        let tenant = self
            .store
            .create_tenant(
                &TenantName::parse(&format!("fresh-{n}")).unwrap(),
                None,
                &origin,
            )
            .await
            .unwrap()
            .id;
        let user = user(
            &self.store,
            Some(self.a),
            &format!("fresh{n}@a.example"),
            Some(Role::TenantMember),
        )
        .await;
        let client = client(
            &self.store,
            self.a,
            &format!("fresh-{n}"),
            Some(Role::TenantMember),
        )
        .await;
        self.store
            .install_next_signing_key(&dummy_key(), &origin)
            .await
            .unwrap();
        Fresh {
            n,
            tenant,
            user,
            client,
        }
    }

    /// A new user or service-account client of tenant A holding `role` at tenant A.
    pub async fn fresh_target(&self, kind: TargetKind, role: Role) -> uuid::Uuid {
        let n = self.next();
        match kind {
            TargetKind::User => {
                let email = format!("target{n}@a.example");
                user(&self.store, Some(self.a), &email, Some(role)).await.0
            }
            TargetKind::Client => {
                client(&self.store, self.a, &format!("target-{n}"), Some(role))
                    .await
                    .0
            }
        }
    }

    /// How many audit events of tenant A name `target`.
    pub async fn audit_rows_about(&self, target: impl ToString) -> usize {
        self.store
            .list_audit(&AuditQuery {
                tenant: Some(self.a),
                target: Some(target.to_string()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }

    pub async fn call(
        &self,
        actor: Actor,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.call_as(&self.credential(actor), method, path, body, &[])
            .await
    }

    pub async fn call_as(
        &self,
        credential: &Credential,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        match credential {
            Credential::None => {}
            Credential::Cookie { value, csrf } => {
                req = req
                    .header(header::COOKIE, format!("ot_session={value}"))
                    .header("x-csrf-token", csrf);
            }
            Credential::Bearer(token) => {
                req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A user with an optional tenant role (or none), without a password.
pub async fn user(
    store: &Store,
    tenant: Option<TenantId>,
    email: &str,
    role: Option<Role>,
) -> UserId {
    let origin = Origin::system();
    let id = store
        .create_user(
            &NewUser::new(tenant, email, None, None).unwrap(),
            None,
            &origin,
        )
        .await
        .unwrap()
        .id;
    if let (Some(role), Some(t)) = (role, tenant) {
        store
            .assign_role(Subject::User(id), role, Scope::Tenant(t), &origin)
            .await
            .unwrap();
    }
    id
}

/// A confidential client_credentials client of `tenant`, optionally holding a tenant role.
pub async fn client(store: &Store, tenant: TenantId, name: &str, role: Option<Role>) -> ClientId {
    let origin = Origin::system();
    let mut new = NewClient::new(
        tenant,
        &format!("{name}-{}", random_token()),
        name,
        TokenEndpointAuthMethod::ClientSecretBasic,
        Some(client_secret_digest("secret")),
    );
    new.grant_types = vec![opentrusty_core::client::GrantType::ClientCredentials];
    let id = store.create_client(&new, &origin).await.unwrap().id;
    if let Some(role) = role {
        store
            .assign_role(Subject::Client(id), role, Scope::Tenant(tenant), &origin)
            .await
            .unwrap();
    }
    id
}
