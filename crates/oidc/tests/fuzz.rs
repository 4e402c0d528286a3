//! Bounded fuzzing of the protocol parsers that take untrusted input (see
//! `opentrusty_testkit::fuzz`): none may panic, whatever the bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use opentrusty_oidc::authorize::{AuthorizeParams, validate};
use opentrusty_oidc::jose::{self, Algorithm, SigningKey};
use opentrusty_oidc::pkce;
use opentrusty_oidc::redirect::is_registrable;
use opentrusty_oidc::scope::Scopes;
use opentrusty_testkit::fuzz;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn jwt_parsing_never_panics() {
    let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let token = key
        .sign(Some("JWT"), &serde_json::json!({ "sub": "x", "aud": "y" }))
        .unwrap();
    let keys = [key.verifying_key()];
    let runs = fuzz(
        "jwt",
        &[token.as_bytes(), b"eyJhbGciOiJub25lIn0.e30.", b"a.b.c", b""],
        |b| {
            let t = text(b);
            let _ = jose::decode_header(&t);
            let _ = jose::verify(&t, &keys);
        },
    );
    eprintln!("jwt: {runs} inputs");
}

#[test]
fn redirect_uris_scopes_and_pkce_never_panic() {
    let runs = fuzz(
        "redirect+scope+pkce",
        &[
            b"https://app.example/cb?x=1",
            b"http://[::1]:8080/cb",
            b"openid profile email",
            b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ],
        |b| {
            let t = text(b);
            let _ = is_registrable(&t);
            let _ = Scopes::parse(&t);
            let _ = pkce::is_valid_verifier(&t);
            let _ = pkce::is_valid_challenge(&t);
            let _ = pkce::verify_s256(&t, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        },
    );
    eprintln!("redirect+scope+pkce: {runs} inputs");
}

#[test]
fn authorization_requests_never_panic() {
    let mut client = opentrusty_core::client::NewClient::new(
        opentrusty_core::TenantId::new(),
        "app",
        "App",
        opentrusty_core::client::TokenEndpointAuthMethod::ClientSecretBasic,
        None,
    );
    client.redirect_uris = vec!["https://app.example/cb".into()];
    let client = opentrusty_core::client::OAuthClient {
        id: opentrusty_core::ClientId::new(),
        client_id: client.client_id,
        tenant_id: client.tenant_id,
        name: client.name,
        token_endpoint_auth_method: client.token_endpoint_auth_method,
        redirect_uris: client.redirect_uris,
        post_logout_redirect_uris: vec![],
        web_origins: vec![],
        grant_types: client.grant_types,
        allowed_scopes: client.allowed_scopes,
        first_party: false,
        access_token_format: client.access_token_format,
        id_token_signed_response_alg: client.id_token_signed_response_alg,
        require_pkce: true,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 900,
        id_token_ttl_secs: 900,
        active: true,
        created_at: opentrusty_core::now(),
    };
    let runs = fuzz(
        "authorize",
        &[
            b"client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&max_age=10&prompt=none",
            b"client_id=app&client_id=x&response_mode=fragment&nonce=n",
        ],
        |b| {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(b).into_owned().collect();
            let params = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let _ = validate(&params, Some(&client), true);
            let _ = validate(&params, None, false);
        },
    );
    eprintln!("authorize: {runs} inputs");
}
