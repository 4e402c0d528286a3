//! The seeded world most integration tests share: two tenants, their users and clients (one of
//! each kind the protocol cares about), with the constants tests refer to them by.

use opentrusty_core::audit::Origin;
use opentrusty_core::client::{
    AccessTokenFormat, NewClient, TokenEndpointAuthMethod, client_secret_digest,
};
use opentrusty_core::tenant::TenantName;
use opentrusty_core::user::NewUser;
use opentrusty_core::{TenantId, UserId};
use opentrusty_password::{HashParams, PasswordHasher};
use opentrusty_store::Store;

pub const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The one redirect URI of every browser-flow client. Nothing listens there: tests read the
/// `Location` header and never follow it.
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";
/// The registered post-logout redirect URI of the confidential client.
pub const SIGNED_OUT: &str = "http://127.0.0.1:9/signed-out";

/// The password of every seeded user.
pub const PASSWORD: &str = "correct horse battery staple";
pub const ALICE: &str = "alice@acme.example";
pub const BOB: &str = "bob@globex.example";

/// A seeded OAuth client: its public id and, for confidential clients, its secret.
#[derive(Debug, Clone, Copy)]
pub struct TestClient {
    pub client_id: &'static str,
    pub secret: Option<&'static str>,
}

/// Tenant A: confidential, `client_secret_basic`, authorization_code + refresh_token.
pub const CONFIDENTIAL: TestClient = TestClient {
    client_id: "acme-web",
    secret: Some("acme-web-secret-4f1d8a0c2b7e"),
};
/// The web origin the public client registers (a single-page app).
pub const SPA_ORIGIN: &str = "https://spa.example";

/// Tenant A: public (auth method `none`), a single-page app at [`SPA_ORIGIN`].
pub const PUBLIC: TestClient = TestClient {
    client_id: "acme-spa",
    secret: None,
};
/// Tenant A: confidential, client_credentials only, scopes `api:read api:write`.
pub const SERVICE: TestClient = TestClient {
    client_id: "acme-batch",
    secret: Some("acme-batch-secret-9e3b71c5d2a4"),
};
/// Tenant A: confidential and first-party (no consent page).
pub const FIRST_PARTY: TestClient = TestClient {
    client_id: "acme-portal",
    secret: Some("acme-portal-secret-27c4e9b1f3d8"),
};
/// Tenant A: confidential, opaque access tokens.
pub const OPAQUE: TestClient = TestClient {
    client_id: "acme-legacy",
    secret: Some("acme-legacy-secret-c18f5e2a7b90"),
};
/// Tenant A: confidential, ID tokens signed ES256.
pub const ES256: TestClient = TestClient {
    client_id: "acme-mobile-backend",
    secret: Some("acme-es256-secret-5d0a9c3e81f2"),
};
/// Tenant B: confidential, `client_secret_basic`.
pub const OTHER_TENANT: TestClient = TestClient {
    client_id: "globex-web",
    secret: Some("globex-web-secret-b62e0f4d9a17"),
};

/// What the seed created.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub tenant_a: TenantId,
    pub tenant_b: TenantId,
    pub alice: UserId,
    pub bob: UserId,
}

/// A fast Argon2id hash (the server verifies with the parameters recorded in the hash).
pub fn fast_hash(password: &str) -> String {
    PasswordHasher::new(HashParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap()
    .hash(password)
}

/// Makes `email` the platform administrator, signing in with `password` (hashed quickly).
pub async fn bootstrap_platform_admin(
    store: &Store,
    email: &str,
    password: &str,
) -> opentrusty_store::BootstrapOutcome {
    store
        .bootstrap_platform_admin(
            &opentrusty_core::email::Email::parse(email).unwrap(),
            &fast_hash(password),
            &Origin::system(),
        )
        .await
        .unwrap()
}

pub fn new_client(tenant: TenantId, c: TestClient) -> NewClient {
    let method = if c.secret.is_some() {
        TokenEndpointAuthMethod::ClientSecretBasic
    } else {
        TokenEndpointAuthMethod::None
    };
    let mut new = NewClient::new(
        tenant,
        c.client_id,
        &format!("{} app", c.client_id),
        method,
        c.secret.map(client_secret_digest),
    );
    new.redirect_uris = vec![CALLBACK.to_owned()];
    new
}

/// Two tenants, a user in each, and the clients above.
pub async fn seed(store: &Store) -> Seed {
    let origin = Origin::system();
    let tenant_a = store
        .create_tenant(&TenantName::parse("acme").unwrap(), Some("ACME"), &origin)
        .await
        .unwrap()
        .id;
    let tenant_b = store
        .create_tenant(
            &TenantName::parse("globex").unwrap(),
            Some("Globex"),
            &origin,
        )
        .await
        .unwrap()
        .id;
    let hash = fast_hash(PASSWORD);
    let alice = store
        .create_user(
            &NewUser::new(Some(tenant_a), ALICE, Some("Alice"), Some("Liddell")).unwrap(),
            Some(&hash),
            &origin,
        )
        .await
        .unwrap()
        .id;
    let bob = store
        .create_user(
            &NewUser::new(Some(tenant_b), BOB, Some("Bob"), Some("Builder")).unwrap(),
            Some(&hash),
            &origin,
        )
        .await
        .unwrap()
        .id;

    let mut confidential = new_client(tenant_a, CONFIDENTIAL);
    confidential.post_logout_redirect_uris = vec![SIGNED_OUT.to_owned()];
    let mut public = new_client(tenant_a, PUBLIC);
    public.web_origins = vec![SPA_ORIGIN.to_owned()];
    let mut service = new_client(tenant_a, SERVICE);
    service.redirect_uris = Vec::new();
    service.grant_types = vec![opentrusty_core::client::GrantType::ClientCredentials];
    service.allowed_scopes = vec!["api:read".into(), "api:write".into()];
    let mut first_party = new_client(tenant_a, FIRST_PARTY);
    first_party.first_party = true;
    let mut opaque = new_client(tenant_a, OPAQUE);
    opaque.access_token_format = AccessTokenFormat::Opaque;
    let mut es256 = new_client(tenant_a, ES256);
    es256.id_token_signed_response_alg = opentrusty_core::signing::Algorithm::ES256;
    let other = new_client(tenant_b, OTHER_TENANT);
    for client in [
        confidential,
        public,
        service,
        first_party,
        opaque,
        es256,
        other,
    ] {
        store.create_client(&client, &origin).await.unwrap();
    }
    Seed {
        tenant_a,
        tenant_b,
        alice,
        bob,
    }
}
