//! A state and a seeded world for the grants' in-process tests: a real store, no HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use opentrusty_core::Timestamp;
use opentrusty_core::audit::Origin;
use opentrusty_core::client::OAuthClient;
use opentrusty_core::pkce::PkceMethod;
use opentrusty_core::secret::{MasterKey, token_digest};
use opentrusty_store::{CodeGrant, NewAuthorizationCode};
use opentrusty_testkit::world::{self, CALLBACK, OPAQUE};

use crate::AuthState;

pub(super) const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

pub(super) fn state(store: opentrusty_store::Store) -> AuthState {
    let settings = crate::AuthSettings {
        issuer: "http://localhost:8080".to_owned(),
        cookie_secure: false,
        cookie_domain: None,
        session_idle_secs: 1800,
        session_lifetime_secs: 86400,
        code_ttl_secs: 60,
        refresh_grace_secs: 0,
        access_token_alg: opentrusty_oidc::jose::Algorithm::ES256,
        console_origins: Vec::new(),
        lockout: Default::default(),
        hash_workers: 1,
        hash_queue: 1,
        rate_limits: Default::default(),
    };
    let hasher = opentrusty_password::PasswordHasher::new(opentrusty_password::HashParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    AuthState::new(
        store,
        MasterKey::parse(world::SECRET_KEY).unwrap(),
        settings,
        hasher,
    )
}

/// A code for `scope` for the seeded opaque-token client (no signing key needed), issued at
/// `at` for 60 seconds; its digest, its grant as the token endpoint reads it, and the client.
pub(super) async fn issued_code(
    state: &AuthState,
    scope: &str,
    at: Timestamp,
) -> ([u8; 32], Option<CodeGrant>, OAuthClient) {
    let store = state.store();
    let seed = world::seed(store).await;
    let access = store
        .find_client_for_request(OPAQUE.client_id)
        .await
        .unwrap()
        .unwrap();
    let digest = token_digest("the-code");
    let code = NewAuthorizationCode {
        code_digest: digest,
        tenant_id: seed.tenant_a,
        client_id: access.client.id,
        user_id: seed.alice,
        session_id: None,
        redirect_uri: CALLBACK.to_owned(),
        scope: scope.to_owned(),
        nonce: None,
        code_challenge: Some(challenge(VERIFIER)),
        code_challenge_method: Some(PkceMethod::S256),
        auth_time: at,
        expires_at: at + time::Duration::seconds(60),
        redirect_uri_given: true,
    };
    store
        .issue_authorization_code(&code, &Origin::system())
        .await
        .unwrap();
    let (_, grant) = store
        .find_client_with_code(OPAQUE.client_id, &digest)
        .await
        .unwrap()
        .unwrap();
    (digest, grant, access.client)
}
