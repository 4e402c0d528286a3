//! End-to-end tests of the auth plane against its contract (docs/oidc.md): the real
//! `opentrusty serve auth` binary on a seeded throwaway database, a relying party built on the
//! `openidconnect` crate, and a cookie-keeping "browser" that walks the sign-in and consent pages.
//! The happy paths run on SQLite and, when `OPENTRUSTY_TEST_DATABASE_URL` is set, on PostgreSQL;
//! each rule of the contract has its own test, on SQLite. Every test has its own database and
//! its own server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use openidconnect as oidc;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGrantType, CoreIdToken, CoreIdTokenClaims,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    CoreTokenResponse,
};
use openidconnect::{
    EndpointMaybeSet, EndpointNotSet, EndpointSet, OAuth2TokenResponse as _,
    TokenIntrospectionResponse as _, TokenResponse as _,
};
use opentrusty_core::audit::Origin;
use opentrusty_core::rbac::{Role, Scope as RbacScope};
use opentrusty_core::user::NewUser;
use opentrusty_store::{Backend, BootstrapOutcome, Subject};
use opentrusty_testkit::TestDb;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use support::{
    ALICE, BOB, Browser, CALLBACK, CONFIDENTIAL, ClientAuth, ES256, FIRST_PARTY, Idp, OPAQUE,
    OTHER_TENANT, PASSWORD, PUBLIC, Reply, SERVICE, SIGNED_OUT, Server, TestClient, code_params,
    exchange_code, fast_hash, free_port, http, introspect, jwt_parts, pkce, query, refresh,
    token_request, userinfo,
};

// =============================================================================================
// The relying party

/// Discovery members beyond OpenID Connect Discovery 1.0 that the relying party uses.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct OAuthEndpoints {
    revocation_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
}

impl oidc::AdditionalProviderMetadata for OAuthEndpoints {}

type Metadata = oidc::ProviderMetadata<
    OAuthEndpoints,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A client built from discovery: authorization, token, userinfo and introspection endpoints
/// known. (Revocation is not set on it: the oauth2 crate refuses a revocation URL that is not
/// https, per RFC 7009 §2, and the test issuer is plain http on loopback; `Rp::revoke` posts the
/// RFC 7009 request itself to discovery's `revocation_endpoint`.)
type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A relying party configured from the provider's discovery document.
struct Rp {
    client: RpClient,
    http: oidc::reqwest::Client,
    metadata: Metadata,
    registered: TestClient,
    revocation_endpoint: String,
}

/// A completed authorization code flow.
struct SignIn {
    journey: support::Journey,
    token: CoreTokenResponse,
    nonce: oidc::Nonce,
    claims: CoreIdTokenClaims,
}

impl Rp {
    /// Discovery (and the JWKS with it), then a client with PKCE-capable endpoints.
    async fn discover(idp: &Idp, registered: TestClient) -> Rp {
        let http = oidc::reqwest::ClientBuilder::new()
            .redirect(oidc::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let issuer = oidc::IssuerUrl::new(idp.issuer()).unwrap();
        let metadata = Metadata::discover_async(issuer, &http)
            .await
            .expect("discovery and JWKS");
        let extra = metadata.additional_metadata().clone();
        let revocation = extra
            .revocation_endpoint
            .expect("discovery names revocation_endpoint");
        let introspection = extra
            .introspection_endpoint
            .expect("discovery names introspection_endpoint");
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            oidc::ClientId::new(registered.client_id.to_owned()),
            registered
                .secret
                .map(|s| oidc::ClientSecret::new(s.to_owned())),
        )
        .set_redirect_uri(oidc::RedirectUrl::new(CALLBACK.to_owned()).unwrap())
        .set_introspection_url(oidc::IntrospectionUrl::new(introspection).unwrap());
        Rp {
            client,
            http,
            metadata,
            registered,
            revocation_endpoint: revocation,
        }
    }

    /// Authorization request (PKCE S256, nonce, state) → browser journey as Alice → callback
    /// checks (state, iss) → code exchange with the verifier → ID token verification.
    async fn sign_in(
        &self,
        idp: &Idp,
        browser: &Browser,
        scopes: &[&str],
        extra: &[(&str, &str)],
    ) -> SignIn {
        let (challenge, verifier) = oidc::PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            oidc::CsrfToken::new_random,
            oidc::Nonce::new_random,
        );
        for s in scopes {
            request = request.add_scope(oidc::Scope::new((*s).to_owned()));
        }
        for (k, v) in extra {
            request = request.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let journey = browser
            .journey(Url::parse(url.as_str()).unwrap(), Some((ALICE, PASSWORD)))
            .await;
        assert!(
            journey.callback.as_str().starts_with(CALLBACK),
            "{}",
            journey.callback
        );
        let params = journey.params();
        assert_eq!(
            params.get("state"),
            Some(state.secret()),
            "state comes back"
        );
        assert_eq!(params.get("iss"), Some(&idp.issuer()), "iss (RFC 9207)");
        assert!(!params.contains_key("error"), "{params:?}");
        let code = oidc::AuthorizationCode::new(journey.code());
        let token = self
            .client
            .exchange_code(code)
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .expect("code exchange");
        let id_token = token.id_token().expect("an id_token for scope openid");
        let claims = self.verify(id_token, Some(token.access_token()), &nonce);
        SignIn {
            journey,
            token,
            nonce,
            claims,
        }
    }

    /// Verifies an ID token with openidconnect (signature against the JWKS from discovery, iss,
    /// aud, nonce, exp, allowed algorithms) and, given the access token, its at_hash.
    fn verify(
        &self,
        id_token: &CoreIdToken,
        access_token: Option<&oidc::AccessToken>,
        nonce: &oidc::Nonce,
    ) -> CoreIdTokenClaims {
        let verifier = self.client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, nonce)
            .expect("the ID token verifies")
            .clone();
        if let Some(access_token) = access_token {
            let alg = id_token.signing_alg().unwrap();
            let key = id_token.signing_key(&verifier).unwrap();
            let expected = oidc::AccessTokenHash::from_token(access_token, alg, key).unwrap();
            assert_eq!(
                claims.access_token_hash(),
                Some(&expected),
                "at_hash matches the access token"
            );
        }
        claims
    }

    async fn introspect(
        &self,
        token: &oidc::AccessToken,
    ) -> oidc::core::CoreTokenIntrospectionResponse {
        self.client
            .introspect(token)
            .request_async(&self.http)
            .await
            .expect("introspection")
    }

    async fn refresh(
        &self,
        token: &oidc::RefreshToken,
    ) -> Result<CoreTokenResponse, CoreTokenError> {
        self.client
            .exchange_refresh_token(token)
            .unwrap()
            .request_async(&self.http)
            .await
    }

    /// RFC 7009 revocation at discovery's `revocation_endpoint`, authenticated as the client
    /// is registered.
    async fn revoke(&self, token: &str, hint: &str) {
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut request = http().post(&self.revocation_endpoint);
        match self.registered.secret {
            Some(secret) => request = request.basic_auth(self.registered.client_id, Some(secret)),
            None => form.push(("client_id", self.registered.client_id)),
        }
        let r = Reply::read(request.form(&form).send().await.unwrap()).await;
        r.expect_status(200);
    }
}

type CoreTokenError = oidc::RequestTokenError<
    oidc::HttpClientError<oidc::reqwest::Error>,
    oidc::StandardErrorResponse<CoreErrorResponseType>,
>;

/// Asserts that a token request failed with this OAuth error code.
#[track_caller]
fn assert_token_error<T: std::fmt::Debug>(
    result: Result<T, CoreTokenError>,
    expected: CoreErrorResponseType,
) {
    match result {
        Err(oidc::RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), expected, "{e:?}")
        }
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

fn scope_set(s: &str) -> BTreeSet<String> {
    s.split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn granted_scopes(token: &CoreTokenResponse) -> BTreeSet<String> {
    token
        .scopes()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

/// Whether a JSON `aud` (string or array) names `client_id`.
fn audience_includes(aud: &Value, client_id: &str) -> bool {
    match aud {
        Value::String(s) => s == client_id,
        Value::Array(a) => a.iter().any(|v| v == client_id),
        _ => false,
    }
}

/// Checks an RFC 9068 access token issued to `client_id` for `sub`.
fn assert_jwt_access_token(idp: &Idp, token: &str, client_id: &str, sub: &str) {
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "RS256", "{header}");
    assert!(header["kid"].is_string(), "{header}");
    assert_eq!(claims["iss"], idp.issuer(), "{claims}");
    assert_eq!(claims["sub"], sub, "{claims}");
    assert!(audience_includes(&claims["aud"], client_id), "{claims}");
    assert_eq!(claims["client_id"], client_id, "{claims}");
    assert!(
        scope_set(claims["scope"].as_str().unwrap_or_default()).contains("openid"),
        "{claims}"
    );
    for member in ["jti", "iat", "exp"] {
        assert!(!claims[member].is_null(), "{member} missing: {claims}");
    }
}

// =============================================================================================
// Happy paths, on both backends

/// Declares each scenario once per backend: `sqlite::name` always runs, `postgres::name` runs
/// when `OPENTRUSTY_TEST_DATABASE_URL` is set.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::Idp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = opentrusty_testkit::TestDb::postgres(true).await else {
                        return;
                    };
                    super::$name(crate::support::Idp::start(db).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    confidential_client_code_flow_with_pkce_refresh_revoke_and_introspect,
    public_client_code_flow_with_pkce_refresh_revoke_and_introspect,
    client_credentials_grant_issues_an_access_token_only,
    userinfo_answers_for_live_users_only,
    rp_logout_ends_the_session_at_once_only_for_a_hint_of_that_session,
    refresh_tokens_follow_the_session_unless_offline_access_was_granted,
    ending_every_session_revokes_every_refresh_family_of_the_user,
    a_password_change_revokes_every_refresh_family_but_the_sessions_own,
    a_refresh_grants_only_scopes_the_client_may_still_ask_for,
    the_token_request_repeats_redirect_uri_only_if_the_authorization_request_carried_it,
    introspection_answers_only_the_tokens_client_or_a_resource_server,
    request_objects_are_refused_at_the_redirect_uri,
    prompt_consent_shows_the_consent_page_to_first_party_clients_too,
    cors_admits_only_the_origins_a_public_client_registers,
);

async fn confidential_client_code_flow_with_pkce_refresh_revoke_and_introspect(idp: Idp) {
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    assert_eq!(rp.metadata.issuer().as_str(), idp.issuer());
    let browser = Browser::new(&idp);
    let signed_in = rp
        .sign_in(&idp, &browser, &["profile", "email", "offline_access"], &[])
        .await;
    assert!(signed_in.journey.saw_login, "a new browser signs in");
    assert!(
        signed_in.journey.saw_consent,
        "a third-party client asks consent"
    );
    let token = &signed_in.token;
    let claims = &signed_in.claims;

    // The token response.
    assert_eq!(*token.token_type(), oidc::core::CoreTokenType::Bearer);
    assert!(token.expires_in().is_some_and(|d| d > Duration::ZERO));
    let granted = granted_scopes(token);
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(granted.contains(s), "{s} granted: {granted:?}");
    }

    // The ID token.
    assert_eq!(claims.issuer().as_str(), idp.issuer());
    assert_eq!(
        claims.audiences(),
        &[oidc::Audience::new(CONFIDENTIAL.client_id.to_owned())]
    );
    assert_eq!(
        claims.authorized_party().map(|a| a.as_str()),
        Some(CONFIDENTIAL.client_id)
    );
    assert!(claims.auth_time().is_some(), "auth_time");
    assert_eq!(claims.email().map(|e| e.as_str()), Some(ALICE));
    assert!(
        claims.email_verified().is_some(),
        "email_verified with scope email"
    );
    assert_eq!(
        claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("Alice")
    );
    assert_eq!(
        claims
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("Liddell")
    );
    let (_, raw_id_claims) = jwt_parts(&token.id_token().unwrap().to_string());
    assert!(raw_id_claims["sid"].is_string(), "sid: {raw_id_claims}");
    let sub = claims.subject().as_str().to_owned();

    // The access token is an RFC 9068 JWT.
    assert_jwt_access_token(
        &idp,
        token.access_token().secret(),
        CONFIDENTIAL.client_id,
        &sub,
    );

    // UserInfo, checked against the ID token's subject.
    let info: oidc::core::CoreUserInfoClaims = rp
        .client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&rp.http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(ALICE));
    assert_eq!(
        info.given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("Alice")
    );

    // Introspection of the live access token.
    let live = rp.introspect(token.access_token()).await;
    assert!(live.active());
    assert_eq!(
        live.client_id().map(|c| c.as_str()),
        Some(CONFIDENTIAL.client_id)
    );
    assert_eq!(live.sub(), Some(sub.as_str()));

    // Refresh rotates the refresh token.
    let first_refresh = token.refresh_token().expect("a refresh token").clone();
    let refreshed = rp.refresh(&first_refresh).await.expect("refresh");
    let second_refresh = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_ne!(
        refreshed.access_token().secret(),
        token.access_token().secret()
    );
    assert!(rp.introspect(refreshed.access_token()).await.active());

    // Revoking the refresh token revokes its family's access tokens.
    rp.revoke(second_refresh.secret(), "refresh_token").await;
    assert!(!rp.introspect(refreshed.access_token()).await.active());
    assert_token_error(
        rp.refresh(&second_refresh).await,
        CoreErrorResponseType::InvalidGrant,
    );
}

async fn public_client_code_flow_with_pkce_refresh_revoke_and_introspect(idp: Idp) {
    let rp = Rp::discover(&idp, PUBLIC).await;
    // Introspection needs client authentication: a public client has none to offer, so the
    // tenant's confidential client, holding the resource-server role, introspects.
    let resource_server = Rp::discover(&idp, CONFIDENTIAL).await;
    idp.store
        .assign_role(
            Subject::Client(client_id_of(&idp, CONFIDENTIAL).await),
            Role::TenantResourceServer,
            RbacScope::Tenant(idp.seed.tenant_a),
            &Origin::system(),
        )
        .await
        .unwrap();
    let browser = Browser::new(&idp);
    let signed_in = rp
        .sign_in(&idp, &browser, &["email", "offline_access"], &[])
        .await;
    assert!(signed_in.journey.saw_consent);
    let token = &signed_in.token;
    assert_eq!(
        signed_in.claims.audiences(),
        &[oidc::Audience::new(PUBLIC.client_id.to_owned())]
    );
    assert_eq!(signed_in.claims.email().map(|e| e.as_str()), Some(ALICE));
    let sub = signed_in.claims.subject().as_str().to_owned();
    assert_jwt_access_token(&idp, token.access_token().secret(), PUBLIC.client_id, &sub);

    let info: oidc::core::CoreUserInfoClaims = rp
        .client
        .user_info(
            token.access_token().clone(),
            Some(signed_in.claims.subject().clone()),
        )
        .unwrap()
        .request_async(&rp.http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(ALICE));

    let first_refresh = token.refresh_token().expect("a refresh token").clone();
    let refreshed = rp.refresh(&first_refresh).await.expect("refresh");
    let second_refresh = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert!(
        resource_server
            .introspect(refreshed.access_token())
            .await
            .active()
    );

    rp.revoke(second_refresh.secret(), "refresh_token").await;
    assert!(
        !resource_server
            .introspect(refreshed.access_token())
            .await
            .active()
    );
    assert_token_error(
        rp.refresh(&second_refresh).await,
        CoreErrorResponseType::InvalidGrant,
    );
}

async fn client_credentials_grant_issues_an_access_token_only(idp: Idp) {
    let rp = Rp::discover(&idp, SERVICE).await;
    let token = rp
        .client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(oidc::Scope::new("api:read".to_owned()))
        .request_async(&rp.http)
        .await
        .expect("client credentials");
    assert!(token.id_token().is_none(), "no id_token");
    assert!(token.refresh_token().is_none(), "no refresh_token");
    assert_eq!(granted_scopes(&token), scope_set("api:read"));
    let (header, claims) = jwt_parts(token.access_token().secret());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["client_id"], SERVICE.client_id);
    assert_eq!(claims["iss"], idp.issuer());

    let live = rp.introspect(token.access_token()).await;
    assert!(live.active());
    assert_eq!(
        live.client_id().map(|c| c.as_str()),
        Some(SERVICE.client_id)
    );

    rp.revoke(token.access_token().secret(), "access_token")
        .await;
    assert!(!rp.introspect(token.access_token()).await.active());
}

// =============================================================================================
// Helpers for the rule tests (raw HTTP)

/// Signs Alice in through `client` (approving consent) and returns the code and PKCE verifier.
async fn obtain_code(
    idp: &Idp,
    browser: &Browser,
    client: TestClient,
    scope: &str,
) -> (String, String) {
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(client, scope, "st-1", &challenge));
    let journey = browser.journey(url, Some((ALICE, PASSWORD))).await;
    assert_eq!(
        journey.params().get("state").map(String::as_str),
        Some("st-1")
    );
    (journey.code(), verifier)
}

/// A code flow through `client` in a new browser; the token response JSON.
async fn obtain_tokens(idp: &Idp, client: TestClient, scope: &str) -> Value {
    let browser = Browser::new(idp);
    let (code, verifier) = obtain_code(idp, &browser, client, scope).await;
    let r = exchange_code(idp, client, &code, Some(&verifier)).await;
    r.expect_status(200);
    r.json
}

fn str_of<'a>(v: &'a Value, member: &str) -> &'a str {
    v[member]
        .as_str()
        .unwrap_or_else(|| panic!("no string {member} in {v}"))
}

async fn client_credentials_token(idp: &Idp) -> String {
    let r = token_request(
        idp,
        ClientAuth::of(SERVICE),
        &[("grant_type", "client_credentials"), ("scope", "api:read")],
    )
    .await;
    r.expect_status(200);
    str_of(&r.json, "access_token").to_owned()
}

/// Asserts an authorization error delivered by redirect to the callback, with state and iss.
#[track_caller]
fn assert_redirected_error(idp: &Idp, r: &Reply, error: &str, state: &str) {
    r.expect_status(303);
    let location = Url::parse(r.location().expect("Location")).unwrap();
    assert!(
        location.as_str().starts_with(CALLBACK),
        "errors go to the validated redirect_uri: {location}"
    );
    let p = query(&location);
    assert_eq!(
        p.get("error").map(String::as_str),
        Some(error),
        "{location}"
    );
    assert!(p.contains_key("error_description"), "{location}");
    assert_eq!(
        p.get("state").map(String::as_str),
        Some(state),
        "{location}"
    );
    assert_eq!(p.get("iss"), Some(&idp.issuer()), "{location}");
    assert!(!p.contains_key("code"), "{location}");
}

/// Asserts a 400 HTML error page that redirects nowhere.
#[track_caller]
fn assert_error_page(r: &Reply) {
    r.expect_status(400);
    assert!(r.is_html(), "an HTML page: {:?}", r.headers);
    assert!(r.location().is_none(), "no redirect: {:?}", r.location());
}

#[track_caller]
fn assert_json_error(r: &Reply, status: u16, error: &str) {
    r.expect_status(status);
    assert_eq!(r.error(), error, "{}", r.body);
}

/// Walks Alice through sign-in up to (not through) the consent page; its URL.
async fn up_to_consent(idp: &Idp, browser: &Browser, start: Url) -> Url {
    let r = browser.get(start.as_str()).await;
    let login = browser.see_other(&r);
    assert_eq!(login.path(), "/login");
    let r = browser.submit_login(login.as_str(), ALICE, PASSWORD).await;
    let consent = browser.see_other(&r);
    assert_eq!(consent.path(), "/consent", "{consent} ({})", idp.issuer());
    consent
}

// =============================================================================================
// Authorization endpoint

#[tokio::test]
async fn authorize_with_an_unregistered_redirect_uri_is_a_400_page_never_a_redirect() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    for redirect_uri in [
        "http://127.0.0.1:9/other",
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:9/callback?x=1",
        "https://evil.example/callback",
    ] {
        let mut params = code_params(CONFIDENTIAL, "openid", "st", &challenge);
        params[1] = ("redirect_uri", redirect_uri);
        let r = Browser::new(&idp)
            .get(idp.authorize_url(&params).as_str())
            .await;
        assert_error_page(&r);
    }
}

#[tokio::test]
async fn authorize_with_an_unknown_client_id_is_a_400_page() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    let mut params = code_params(CONFIDENTIAL, "openid", "st", &challenge);
    params[0] = ("client_id", "no-such-client");
    let r = Browser::new(&idp)
        .get(idp.authorize_url(&params).as_str())
        .await;
    assert_error_page(&r);
}

#[tokio::test]
async fn authorize_requires_a_code_challenge_from_a_public_client() {
    let idp = Idp::sqlite().await;
    let params: Vec<(&str, &str)> = code_params(PUBLIC, "openid", "st-pub", "unused")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let r = Browser::new(&idp)
        .get(idp.authorize_url(&params).as_str())
        .await;
    assert_redirected_error(&idp, &r, "invalid_request", "st-pub");
}

#[tokio::test]
async fn authorize_refuses_the_plain_pkce_method_and_malformed_challenges() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    let short = &challenge[..42];
    let bad_chars = format!("{}+", &challenge[..42]);
    for (method, challenge) in [
        ("plain", challenge.as_str()),
        ("S512", challenge.as_str()),
        ("S256", short),
        ("S256", bad_chars.as_str()),
    ] {
        let mut params = code_params(CONFIDENTIAL, "openid", "st-pkce", challenge);
        params[7] = ("code_challenge_method", method);
        let r = Browser::new(&idp)
            .get(idp.authorize_url(&params).as_str())
            .await;
        assert_redirected_error(&idp, &r, "invalid_request", "st-pkce");
    }
}

#[tokio::test]
async fn authorize_refuses_unknown_prompt_values_and_a_non_numeric_max_age() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    for (name, value) in [
        ("prompt", "select_account"),
        ("prompt", "none login"),
        ("max_age", "soon"),
    ] {
        let mut params = code_params(CONFIDENTIAL, "openid", "st-p", &challenge);
        params.push((name, value));
        let r = Browser::new(&idp)
            .get(idp.authorize_url(&params).as_str())
            .await;
        assert_redirected_error(&idp, &r, "invalid_request", "st-p");
    }
}

#[tokio::test]
async fn authorize_refuses_a_scope_the_client_is_not_allowed() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    let params = code_params(
        CONFIDENTIAL,
        "openid admin:everything",
        "st-scope",
        &challenge,
    );
    let r = Browser::new(&idp)
        .get(idp.authorize_url(&params).as_str())
        .await;
    assert_redirected_error(&idp, &r, "invalid_scope", "st-scope");
}

#[tokio::test]
async fn authorize_refuses_response_type_token() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    let mut params = code_params(CONFIDENTIAL, "openid", "st-rt", &challenge);
    params[2] = ("response_type", "token");
    let r = Browser::new(&idp)
        .get(idp.authorize_url(&params).as_str())
        .await;
    assert_redirected_error(&idp, &r, "unsupported_response_type", "st-rt");
}

#[tokio::test]
async fn prompt_none_without_a_session_redirects_with_login_required() {
    let idp = Idp::sqlite().await;
    let (challenge, _) = pkce();
    let mut params = code_params(CONFIDENTIAL, "openid", "st-none", &challenge);
    params.push(("prompt", "none"));
    let r = Browser::new(&idp)
        .get(idp.authorize_url(&params).as_str())
        .await;
    assert_redirected_error(&idp, &r, "login_required", "st-none");
}

#[tokio::test]
async fn prompt_none_without_consent_redirects_with_consent_required() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let params = code_params(CONFIDENTIAL, "openid profile", "st-c", &challenge);
    up_to_consent(&idp, &browser, idp.authorize_url(&params)).await;
    let mut silent = params.clone();
    silent.push(("prompt", "none"));
    let r = browser.get(idp.authorize_url(&silent).as_str()).await;
    assert_redirected_error(&idp, &r, "consent_required", "st-c");
}

#[tokio::test]
async fn without_a_session_authorize_sends_the_browser_to_login_with_return_to() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(url.as_str()).await;
    let login = browser.see_other(&r);
    assert_eq!(login.path(), "/login");
    let return_to = query(&login)["return_to"].clone();
    let back = browser.resolve(&return_to);
    assert_eq!(back.path(), "/oauth2/authorize");
    assert_eq!(
        query(&back),
        query(&url),
        "return_to is the authorize request"
    );
}

#[tokio::test]
async fn denying_consent_redirects_with_access_denied() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let params = code_params(CONFIDENTIAL, "openid profile", "st-deny", &challenge);
    let consent = up_to_consent(&idp, &browser, idp.authorize_url(&params)).await;
    let page = browser.get(consent.as_str()).await;
    page.expect_status(200);
    let fields = support::inputs(&page.body);
    let r = browser
        .post(
            &idp.url("/consent"),
            &[
                ("csrf_token", fields["csrf_token"].as_str()),
                ("request", fields["request"].as_str()),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_redirected_error(&idp, &r, "access_denied", "st-deny");
}

#[tokio::test]
async fn a_first_party_client_skips_the_consent_page() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(
        FIRST_PARTY,
        "openid profile email",
        "st-fp",
        &challenge,
    ));
    let journey = browser.journey(url, Some((ALICE, PASSWORD))).await;
    assert!(journey.saw_login);
    assert!(
        !journey.saw_consent,
        "no consent page for a first-party client"
    );
    let r = exchange_code(&idp, FIRST_PARTY, &journey.code(), Some(&verifier)).await;
    r.expect_status(200);
    assert!(r.json["id_token"].is_string());
}

#[tokio::test]
async fn consent_is_remembered_for_covered_scopes_until_prompt_consent_asks_again() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);

    let first = rp.sign_in(&idp, &browser, &["profile"], &[]).await;
    assert!(first.journey.saw_login && first.journey.saw_consent);

    let second = rp.sign_in(&idp, &browser, &["profile"], &[]).await;
    assert!(!second.journey.saw_login, "the session is reused");
    assert!(!second.journey.saw_consent, "the consent is remembered");

    let narrower = rp.sign_in(&idp, &browser, &[], &[]).await;
    assert!(!narrower.journey.saw_consent, "a subset is covered");

    let forced = rp
        .sign_in(&idp, &browser, &["profile"], &[("prompt", "consent")])
        .await;
    assert!(!forced.journey.saw_login);
    assert!(forced.journey.saw_consent, "prompt=consent asks again");

    let wider = rp.sign_in(&idp, &browser, &["profile", "email"], &[]).await;
    assert!(wider.journey.saw_consent, "a new scope needs consent");
}

#[tokio::test]
async fn a_session_of_another_tenant_is_treated_as_no_session() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    // Bob signs in at his tenant's client.
    let (challenge, _) = pkce();
    let url = idp.authorize_url(&code_params(OTHER_TENANT, "openid", "st-b", &challenge));
    let journey = browser.journey(url, Some((BOB, PASSWORD))).await;
    journey.code();
    // The same browser at tenant A's client must sign in again.
    let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st-a", &challenge));
    let r = browser.get(url.as_str()).await;
    assert_eq!(browser.see_other(&r).path(), "/login");
    // And Bob is not a user of tenant A.
    let r = browser
        .submit_login(browser.see_other(&r).as_str(), BOB, PASSWORD)
        .await;
    r.expect_status(401);
}

// =============================================================================================
// Sign-in page

#[tokio::test]
async fn login_refuses_a_return_to_that_is_not_an_authorize_path_of_a_known_client() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    for bad in [
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example/x",
        "\\\\evil.example/x",
        "/consent",
        "/oauth2/authorize?client_id=no-such-client&response_type=code",
    ] {
        let url = Url::parse_with_params(&idp.url("/login"), [("return_to", bad)]).unwrap();
        let r = browser.get(url.as_str()).await;
        r.expect_status(400);
        assert!(r.location().is_none(), "no redirect for {bad}");
    }

    // A valid page, then a POST with valid credentials and CSRF token but a foreign return_to.
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(start.as_str()).await;
    let (_, fields) = browser.login_page(browser.see_other(&r).as_str()).await;
    let r = browser
        .post(
            &idp.url("/login"),
            &[
                ("email", ALICE),
                ("password", PASSWORD),
                ("csrf_token", fields["csrf_token"].as_str()),
                ("return_to", "//evil.example/x"),
            ],
        )
        .await;
    r.expect_status(400);
    assert!(r.location().is_none());
}

/// Every page's form refuses a post without the CSRF cookie's value, before it looks at
/// anything else: the page's "form expired" answer, 403, no cookie set and no redirect.
#[tokio::test]
async fn every_form_refuses_a_post_without_its_csrf_proof() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    for (path, expired) in [
        ("/login", "Your sign-in form expired"),
        ("/consent", "Your consent form expired"),
        ("/logout", "Your sign-out form expired"),
        ("/enroll", "This form expired"),
        ("/password", "This form expired"),
    ] {
        for csrf in [None, Some("forged-csrf-token-value")] {
            let mut form = vec![
                ("return_to", "/oauth2/authorize?client_id=x"),
                ("token", "t"),
            ];
            if let Some(c) = csrf {
                form.push(("csrf_token", c));
            }
            let r = browser.post(&idp.url(path), &form).await;
            assert_eq!(r.status, 403, "{path} {csrf:?}: {}", r.body);
            assert!(r.body.contains(expired), "{path}: {}", r.body);
            assert!(r.location().is_none(), "{path}");
            assert!(r.set_cookies().is_empty(), "{path}: {:?}", r.set_cookies());
        }
    }
}

#[tokio::test]
async fn login_refuses_a_csrf_token_that_does_not_match_the_cookie() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(start.as_str()).await;
    let (_, fields) = browser.login_page(browser.see_other(&r).as_str()).await;
    let r = browser
        .post(
            &idp.url("/login"),
            &[
                ("email", ALICE),
                ("password", PASSWORD),
                ("csrf_token", "forged-csrf-token-value"),
                ("return_to", fields["return_to"].as_str()),
            ],
        )
        .await;
    assert!(
        r.status == 400 || r.status == 403,
        "400 or 403, got {}: {}",
        r.status,
        r.body
    );
    assert!(r.location().is_none());
    assert!(
        !r.set_cookies()
            .iter()
            .any(|c| c.starts_with("ot_session=") && !c.starts_with("ot_session=;")),
        "no session cookie: {:?}",
        r.set_cookies()
    );
    // No session: authorize still sends the browser to sign in.
    let r = browser.get(start.as_str()).await;
    assert_eq!(browser.see_other(&r).path(), "/login");
}

#[tokio::test]
async fn login_with_a_wrong_password_or_an_unknown_email_is_a_401_page() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(start.as_str()).await;
    let login = browser.see_other(&r);
    for (email, password) in [
        (ALICE, "not the password at all"),
        ("nobody@acme.example", PASSWORD),
    ] {
        let r = browser.submit_login(login.as_str(), email, password).await;
        r.expect_status(401);
        assert!(r.is_html());
        assert!(r.body.contains("Invalid email or password"), "{}", r.body);
        assert!(r.location().is_none());
        // The form is shown again.
        assert!(support::inputs(&r.body).contains_key("csrf_token"));
    }
    let r = browser.get(start.as_str()).await;
    assert_eq!(browser.see_other(&r).path(), "/login", "no session");
}

// =============================================================================================
// Token endpoint

#[tokio::test]
async fn a_wrong_code_verifier_is_invalid_grant_and_leaves_the_code_redeemable() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (code, verifier) = obtain_code(&idp, &browser, CONFIDENTIAL, "openid").await;
    let (_, other_verifier) = pkce();
    let r = exchange_code(&idp, CONFIDENTIAL, &code, Some(&other_verifier)).await;
    assert_json_error(&r, 400, "invalid_grant");
    let r = exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    r.expect_status(200);
    assert!(r.json["access_token"].is_string());
}

#[tokio::test]
async fn a_code_without_its_code_verifier_is_invalid_grant() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (code, _) = obtain_code(&idp, &browser, CONFIDENTIAL, "openid").await;
    let r = exchange_code(&idp, CONFIDENTIAL, &code, None).await;
    assert_json_error(&r, 400, "invalid_grant");
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_and_redirect_uri() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (code, verifier) = obtain_code(&idp, &browser, CONFIDENTIAL, "openid").await;
    // Another client of the same tenant.
    let r = exchange_code(&idp, FIRST_PARTY, &code, Some(&verifier)).await;
    assert_json_error(&r, 400, "invalid_grant");
    // Another redirect URI.
    let r = token_request(
        &idp,
        ClientAuth::of(CONFIDENTIAL),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_json_error(&r, 400, "invalid_grant");
}

#[tokio::test]
async fn replaying_a_code_is_invalid_grant_and_revokes_every_token_issued_from_it() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (code, verifier) =
        obtain_code(&idp, &browser, CONFIDENTIAL, "openid email offline_access").await;
    let first = exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    first.expect_status(200);
    let access = str_of(&first.json, "access_token").to_owned();
    let refresh_token = str_of(&first.json, "refresh_token").to_owned();
    assert_eq!(
        introspect(&idp, ClientAuth::of(CONFIDENTIAL), &access)
            .await
            .json["active"],
        true
    );

    let replay = exchange_code(&idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    assert_json_error(&replay, 400, "invalid_grant");

    let r = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &access).await;
    r.expect_status(200);
    assert_eq!(r.json, json!({"active": false}));
    let r = userinfo(&idp, &access).await;
    r.expect_status(401);
    let r = refresh(&idp, CONFIDENTIAL, &refresh_token, None).await;
    assert_json_error(&r, 400, "invalid_grant");
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_family() {
    let idp = Idp::sqlite().await;
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid offline_access").await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let r = refresh(&idp, CONFIDENTIAL, &first, None).await;
    r.expect_status(200);
    let second = str_of(&r.json, "refresh_token").to_owned();
    let second_access = str_of(&r.json, "access_token").to_owned();
    assert_ne!(first, second);

    let reuse = refresh(&idp, CONFIDENTIAL, &first, None).await;
    assert_json_error(&reuse, 400, "invalid_grant");
    let r = refresh(&idp, CONFIDENTIAL, &second, None).await;
    assert_json_error(&r, 400, "invalid_grant");
    let r = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &second_access).await;
    assert_eq!(
        r.json,
        json!({"active": false}),
        "the family's access tokens too"
    );
}

#[tokio::test]
async fn refresh_may_narrow_but_not_widen_the_scope() {
    let idp = Idp::sqlite().await;
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid email offline_access").await;
    let r = refresh(
        &idp,
        CONFIDENTIAL,
        str_of(&tokens, "refresh_token"),
        Some("openid offline_access"),
    )
    .await;
    r.expect_status(200);
    assert!(
        !scope_set(str_of(&r.json, "scope")).contains("email"),
        "{}",
        r.body
    );
    let rotated = str_of(&r.json, "refresh_token").to_owned();
    let r = refresh(
        &idp,
        CONFIDENTIAL,
        &rotated,
        Some("openid email offline_access profile"),
    )
    .await;
    assert_json_error(&r, 400, "invalid_scope");
}

#[tokio::test]
async fn a_wrong_client_secret_is_401_invalid_client_with_www_authenticate() {
    let idp = Idp::sqlite().await;
    for auth in [
        ClientAuth::Basic(CONFIDENTIAL.client_id, "not-the-secret"),
        ClientAuth::Basic("no-such-client", "whatever"),
    ] {
        let r = token_request(
            &idp,
            auth,
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
        assert_json_error(&r, 401, "invalid_client");
        let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
        assert!(challenge.starts_with("Basic"), "{challenge}");
        assert!(challenge.contains("realm=\"opentrusty\""), "{challenge}");
    }
}

#[tokio::test]
async fn a_client_must_authenticate_with_its_registered_method() {
    let idp = Idp::sqlite().await;
    // CONFIDENTIAL is registered for client_secret_basic: the right secret in the body fails.
    let r = Reply::read(
        http()
            .post(idp.url("/oauth2/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", CONFIDENTIAL.client_id),
                ("client_secret", CONFIDENTIAL.secret.unwrap()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_json_error(&r, 401, "invalid_client");
    // And a confidential client cannot pass as public.
    let r = token_request(
        &idp,
        ClientAuth::Public(CONFIDENTIAL.client_id),
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
    )
    .await;
    assert_json_error(&r, 401, "invalid_client");
}

#[tokio::test]
async fn an_unsupported_grant_type_is_unsupported_grant_type() {
    let idp = Idp::sqlite().await;
    let r = token_request(
        &idp,
        ClientAuth::of(CONFIDENTIAL),
        &[
            ("grant_type", "password"),
            ("username", ALICE),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_json_error(&r, 400, "unsupported_grant_type");
}

/// A public client authenticates successfully with its registered method `none`; what it lacks
/// is the right to the grant, which docs/oidc.md answers with `unauthorized_client` ("confidential
/// clients registered for the grant only (`unauthorized_client` otherwise)"). `invalid_client`
/// would claim its authentication failed, which it did not. So this asserts 400
/// `unauthorized_client`, and the same for a confidential client not registered for the grant.
#[tokio::test]
async fn client_credentials_is_unauthorized_client_for_public_and_unregistered_clients() {
    let idp = Idp::sqlite().await;
    for client in [PUBLIC, CONFIDENTIAL] {
        let r = token_request(
            &idp,
            ClientAuth::of(client),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_json_error(&r, 400, "unauthorized_client");
    }
}

#[tokio::test]
async fn client_credentials_refuses_scopes_beyond_the_allowed_and_openid() {
    let idp = Idp::sqlite().await;
    for scope in ["api:admin", "openid", "api:read offline_access"] {
        let r = token_request(
            &idp,
            ClientAuth::of(SERVICE),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
        assert_json_error(&r, 400, "invalid_scope");
    }
}

#[tokio::test]
async fn token_endpoint_responses_are_never_cached() {
    let idp = Idp::sqlite().await;
    let ok = token_request(
        &idp,
        ClientAuth::of(SERVICE),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let bad_grant = token_request(
        &idp,
        ClientAuth::of(CONFIDENTIAL),
        &[("grant_type", "authorization_code"), ("code", "nope")],
    )
    .await;
    let bad_client = token_request(
        &idp,
        ClientAuth::Basic(SERVICE.client_id, "wrong"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    for (r, status) in [(&ok, 200), (&bad_grant, 400), (&bad_client, 401)] {
        r.expect_status(status);
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("pragma"), Some("no-cache"), "{:?}", r.headers);
        if status != 200 {
            assert!(r.json["error_description"].is_string(), "{}", r.body);
        }
    }
}

// =============================================================================================
// Discovery, JWKS

#[tokio::test]
async fn discovery_and_jwks_are_public_and_cacheable() {
    let idp = Idp::sqlite().await;
    for path in [
        "/.well-known/openid-configuration",
        "/jwks.json",
        "/.well-known/jwks.json",
    ] {
        let r = Reply::read(http().get(idp.url(path)).send().await.unwrap()).await;
        r.expect_status(200);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("*"),
            "{path}: {:?}",
            r.headers
        );
        let cache = r.header("cache-control").unwrap_or_default();
        assert!(cache.contains("max-age"), "{path}: {cache:?}");
        assert!(r.json.is_object(), "{path}: {}", r.body);
    }

    let d = Reply::read(
        http()
            .get(idp.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .json;
    let iss = idp.issuer();
    assert_eq!(d["issuer"], iss);
    for (member, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
    ] {
        assert_eq!(d[member], format!("{iss}{path}"), "{member}: {d}");
    }
    let jwks_uri = str_of(&d, "jwks_uri");
    assert!(
        jwks_uri == format!("{iss}/jwks.json")
            || jwks_uri == format!("{iss}/.well-known/jwks.json"),
        "{jwks_uri}"
    );
    let methods = d["code_challenge_methods_supported"].as_array().cloned();
    assert_eq!(methods, Some(vec![json!("S256")]), "{d}");

    let jwks = Reply::read(http().get(idp.url("/jwks.json")).send().await.unwrap())
        .await
        .json;
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(
        keys.len() >= 2,
        "the active and the next RS256 keys are published: {jwks}"
    );
    for key in keys {
        assert!(key["kid"].is_string(), "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private}: {key}"
            );
        }
    }
}

// =============================================================================================
// UserInfo, revocation, introspection

#[tokio::test]
async fn userinfo_challenges_missing_and_invalid_tokens_and_refuses_tokens_without_openid() {
    let idp = Idp::sqlite().await;
    let r = Reply::read(
        http()
            .get(idp.url("/oauth2/userinfo"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");

    let r = userinfo(&idp, "not-a-token").await;
    r.expect_status(401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{challenge:?}"
    );

    let service_token = client_credentials_token(&idp).await;
    let r = userinfo(&idp, &service_token).await;
    r.expect_status(403);
    assert!(
        r.error() == "insufficient_scope"
            || r.header("www-authenticate")
                .is_some_and(|c| c.contains("insufficient_scope")),
        "{:?} {}",
        r.headers,
        r.body
    );
}

/// UserInfo reads the token and its user in one statement: the user's current profile is
/// released, and a disabled or deleted user's tokens get `invalid_token`, JWT and opaque alike.
async fn userinfo_answers_for_live_users_only(idp: Idp) {
    let jwt = obtain_tokens(&idp, CONFIDENTIAL, "openid email profile").await;
    let opaque = obtain_tokens(&idp, OPAQUE, "openid email").await;
    let (jwt, opaque) = (
        str_of(&jwt, "access_token"),
        str_of(&opaque, "access_token"),
    );
    let (store, tenant, alice) = (&idp.store, idp.seed.tenant_a, idp.seed.alice);
    let change_alice = |status| async move {
        let patch =
            opentrusty_core::user::UserPatch::new(Some(Some("Alicia")), None, status).unwrap();
        store
            .update_user(tenant, alice, &patch, &Origin::system())
            .await
            .unwrap();
    };
    change_alice(None).await;
    let info = userinfo(&idp, jwt).await;
    info.expect_status(200);
    assert_eq!(info.json["email"], ALICE);
    assert_eq!(info.json["given_name"], "Alicia", "{}", info.body);
    assert_eq!(info.json["sub"], idp.seed.alice.to_string());
    userinfo(&idp, opaque).await.expect_status(200);

    change_alice(Some(opentrusty_core::user::UserStatus::Disabled)).await;
    for token in [jwt, opaque] {
        let r = userinfo(&idp, token).await;
        r.expect_status(401);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.contains("invalid_token")),
            "{:?}",
            r.headers
        );
    }

    // Enabled again, then deleted: fresh tokens stop working with the user.
    change_alice(Some(opentrusty_core::user::UserStatus::Active)).await;
    let fresh = obtain_tokens(&idp, CONFIDENTIAL, "openid email").await;
    let fresh = str_of(&fresh, "access_token");
    userinfo(&idp, fresh).await.expect_status(200);
    idp.store
        .delete_user(idp.seed.tenant_a, idp.seed.alice, &Origin::system())
        .await
        .unwrap();
    userinfo(&idp, fresh).await.expect_status(401);
}

#[tokio::test]
async fn userinfo_accepts_the_token_as_a_post_form_field() {
    let idp = Idp::sqlite().await;
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid email").await;
    let r = Reply::read(
        http()
            .post(idp.url("/oauth2/userinfo"))
            .form(&[("access_token", str_of(&tokens, "access_token"))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(200);
    assert_eq!(r.json["email"], ALICE);
    assert!(r.json["sub"].is_string());
}

#[tokio::test]
async fn introspection_by_another_tenants_client_says_only_inactive() {
    let idp = Idp::sqlite().await;
    let token = client_credentials_token(&idp).await;
    let own = introspect(&idp, ClientAuth::of(SERVICE), &token).await;
    own.expect_status(200);
    assert_eq!(own.json["active"], true);
    assert_eq!(own.json["client_id"], SERVICE.client_id);

    let foreign = introspect(&idp, ClientAuth::of(OTHER_TENANT), &token).await;
    foreign.expect_status(200);
    assert_eq!(foreign.json, json!({"active": false}));

    // A user's token too.
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid").await;
    let foreign = introspect(
        &idp,
        ClientAuth::of(OTHER_TENANT),
        str_of(&tokens, "access_token"),
    )
    .await;
    assert_eq!(foreign.json, json!({"active": false}));
}

/// RFC 7662 for a refresh token: active while it is the live one of its family, with its
/// client's public id; inactive once rotated, and to another tenant's client.
#[tokio::test]
async fn introspection_answers_for_a_live_refresh_token_only() {
    let idp = Idp::sqlite().await;
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid offline_access").await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let live = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &first).await;
    live.expect_status(200);
    assert_eq!(live.json["active"], true, "{}", live.json);
    assert_eq!(live.json["token_type"], "refresh_token");
    assert_eq!(live.json["client_id"], CONFIDENTIAL.client_id);
    assert!(live.json["sub"].is_string(), "{}", live.json);

    let foreign = introspect(&idp, ClientAuth::of(OTHER_TENANT), &first).await;
    assert_eq!(foreign.json, json!({"active": false}));

    refresh(&idp, CONFIDENTIAL, &first, None)
        .await
        .expect_status(200);
    let rotated = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &first).await;
    assert_eq!(rotated.json, json!({"active": false}));
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let idp = Idp::sqlite().await;
    let token = client_credentials_token(&idp).await;
    let r = Reply::read(
        http()
            .post(idp.url("/oauth2/introspect"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_json_error(&r, 401, "invalid_client");

    // The client and the presented token are read together; a caller that fails client
    // authentication learns nothing of the token, whichever way it fails.
    for auth in [
        ClientAuth::Basic(SERVICE.client_id, "not-the-secret"),
        ClientAuth::Basic("no-such-client", "whatever"),
        ClientAuth::of(PUBLIC),
    ] {
        let r = support::post_form(
            &idp,
            "/oauth2/introspect",
            auth,
            &[("token", token.as_str())],
        )
        .await;
        assert_json_error(&r, 401, "invalid_client");
        assert!(r.json.get("active").is_none(), "{}", r.body);
    }
    let r = support::post_form(&idp, "/oauth2/introspect", ClientAuth::of(SERVICE), &[]).await;
    assert_json_error(&r, 400, "invalid_request");
    // A JWT that is not ours (its signature broken) is inactive, not an error.
    let at = token.len() - 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    let r = introspect(&idp, ClientAuth::of(SERVICE), &forged).await;
    r.expect_status(200);
    assert_eq!(r.json, json!({"active": false}));
}

#[tokio::test]
async fn revoking_another_clients_token_answers_200_and_leaves_it_active() {
    let idp = Idp::sqlite().await;
    let token = client_credentials_token(&idp).await;
    for other in [OTHER_TENANT, CONFIDENTIAL] {
        let r = support::post_form(
            &idp,
            "/oauth2/revoke",
            ClientAuth::of(other),
            &[("token", token.as_str())],
        )
        .await;
        r.expect_status(200);
    }
    let r = support::post_form(
        &idp,
        "/oauth2/revoke",
        ClientAuth::of(SERVICE),
        &[("token", "never-issued")],
    )
    .await;
    r.expect_status(200);
    let r = introspect(&idp, ClientAuth::of(SERVICE), &token).await;
    assert_eq!(r.json["active"], true, "{}", r.body);
}

#[tokio::test]
async fn an_opaque_token_client_gets_a_reference_token_that_userinfo_and_introspection_accept() {
    let idp = Idp::sqlite().await;
    let tokens = obtain_tokens(&idp, OPAQUE, "openid email").await;
    let access = str_of(&tokens, "access_token");
    assert!(!access.contains('.'), "opaque, not a JWT: {access}");
    let (_, id_claims) = jwt_parts(str_of(&tokens, "id_token"));

    let info = userinfo(&idp, access).await;
    info.expect_status(200);
    assert_eq!(info.json["sub"], id_claims["sub"]);
    assert_eq!(info.json["email"], ALICE);

    let r = introspect(&idp, ClientAuth::of(OPAQUE), access).await;
    r.expect_status(200);
    assert_eq!(r.json["active"], true, "{}", r.body);
    assert_eq!(r.json["client_id"], OPAQUE.client_id);
    assert_eq!(r.json["sub"], id_claims["sub"]);
    assert!(scope_set(str_of(&r.json, "scope")).contains("openid"));

    let r = support::post_form(
        &idp,
        "/oauth2/revoke",
        ClientAuth::of(OPAQUE),
        &[("token", access), ("token_type_hint", "access_token")],
    )
    .await;
    r.expect_status(200);
    assert_eq!(
        introspect(&idp, ClientAuth::of(OPAQUE), access).await.json,
        json!({"active": false})
    );
    userinfo(&idp, access).await.expect_status(401);
}

#[tokio::test]
async fn an_es256_client_gets_es256_id_tokens_that_verify() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, ES256).await;
    let algs = rp.metadata.id_token_signing_alg_values_supported();
    assert!(
        algs.contains(&CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        "discovery lists ES256: {algs:?}"
    );
    // The ES256 key may be created by this very request: authorize and exchange by hand, then
    // verify with a relying party that fetched the JWKS afterwards (as one refreshes its key
    // cache on an unknown kid).
    let browser = Browser::new(&idp);
    let (challenge, verifier) = oidc::PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            oidc::CsrfToken::new_random,
            oidc::Nonce::new_random,
        )
        .add_scope(oidc::Scope::new("email".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let journey = browser
        .journey(Url::parse(url.as_str()).unwrap(), Some((ALICE, PASSWORD)))
        .await;
    assert_eq!(journey.params().get("state"), Some(state.secret()));
    let token = rp
        .client
        .exchange_code(oidc::AuthorizationCode::new(journey.code()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp.http)
        .await
        .expect("code exchange");
    let id_token = token.id_token().expect("id_token");
    assert_eq!(
        id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::EcdsaP256Sha256
    );
    let (header, _) = jwt_parts(&id_token.to_string());
    assert_eq!(header["alg"], "ES256");

    let fresh = Rp::discover(&idp, ES256).await;
    let claims = fresh.verify(id_token, Some(token.access_token()), &nonce);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(ALICE));
    // The access token is RS256 whatever the ID token algorithm.
    let (at_header, _) = jwt_parts(token.access_token().secret());
    assert_eq!(at_header["alg"], "RS256");
}

// =============================================================================================
// Logout

#[tokio::test]
async fn rp_initiated_logout_redirects_with_state_and_ends_the_session() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let signed_in = rp.sign_in(&idp, &browser, &[], &[]).await;
    let id_token = signed_in.token.id_token().unwrap().to_string();

    let url = Url::parse_with_params(
        &idp.url("/oauth2/logout"),
        [
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye-42"),
            ("client_id", CONFIDENTIAL.client_id),
        ],
    )
    .unwrap();
    let r = browser.get(url.as_str()).await;
    let to = browser.see_other(&r);
    assert_eq!(
        format!("{}://{}{}", to.scheme(), to.authority(), to.path()),
        SIGNED_OUT
    );
    assert_eq!(query(&to).get("state").map(String::as_str), Some("bye-42"));

    // The session cookie no longer authorizes.
    let (challenge, _) = pkce();
    let again = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(again.as_str()).await;
    assert_eq!(browser.see_other(&r).path(), "/login");
}

#[tokio::test]
async fn rp_initiated_logout_never_redirects_to_an_unregistered_uri() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let signed_in = rp.sign_in(&idp, &browser, &[], &[]).await;
    let id_token = signed_in.token.id_token().unwrap().to_string();
    let url = Url::parse_with_params(
        &idp.url("/oauth2/logout"),
        [
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/after"),
            ("state", "bye"),
        ],
    )
    .unwrap();
    let r = browser.get(url.as_str()).await;
    r.expect_status(200);
    assert!(r.is_html());
    assert!(r.location().is_none());
}

#[tokio::test]
async fn the_logout_page_ends_the_session_after_confirmation() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (code, _) = obtain_code(&idp, &browser, FIRST_PARTY, "openid").await;
    assert!(!code.is_empty());
    let page = browser.get(&idp.url("/logout")).await;
    page.expect_status(200);
    let fields = support::inputs(&page.body);
    let csrf = fields
        .get("csrf_token")
        .expect("csrf_token on the logout page");
    let r = browser
        .post(&idp.url("/logout"), &[("csrf_token", csrf.as_str())])
        .await;
    r.expect_status(200);
    let (challenge, _) = pkce();
    let again = idp.authorize_url(&code_params(FIRST_PARTY, "openid", "st", &challenge));
    let r = browser.get(again.as_str()).await;
    assert_eq!(browser.see_other(&r).path(), "/login");
}

// =============================================================================================
// Control-plane login

async fn control_plane_login(browser: &Browser, idp: &Idp, body: Value) -> Reply {
    Reply::read(
        browser
            .http
            .post(idp.url("/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

const OPERATOR: &str = "ops@platform.example";

async fn bootstrap_operator(idp: &Idp) {
    let outcome = support::bootstrap_platform_admin(&idp.store, OPERATOR, PASSWORD).await;
    assert!(matches!(outcome, BootstrapOutcome::Created(_)));
}

async fn tenant_user_with_role(idp: &Idp, email: &str, role: Role) {
    let user = idp
        .store
        .create_user(
            &NewUser::new(Some(idp.seed.tenant_a), email, None, None).unwrap(),
            Some(&fast_hash(PASSWORD)),
            &Origin::system(),
        )
        .await
        .unwrap();
    idp.store
        .assign_role(
            Subject::User(user.id),
            role,
            RbacScope::Tenant(idp.seed.tenant_a),
            &Origin::system(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn control_plane_login_of_a_platform_operator_sets_the_session_and_logout_ends_it() {
    let idp = Idp::sqlite().await;
    bootstrap_operator(&idp).await;
    let browser = Browser::new(&idp);
    let r = control_plane_login(
        &browser,
        &idp,
        json!({"email": OPERATOR, "password": PASSWORD}),
    )
    .await;
    r.expect_status(200);
    assert!(r.json["user_id"].is_string(), "{}", r.body);
    assert_eq!(r.json["email"], OPERATOR);
    assert!(r.json["tenant_id"].is_null(), "{}", r.body);
    let csrf = str_of(&r.json, "csrf_token").to_owned();
    assert!(!csrf.is_empty());
    assert!(
        r.set_cookies().iter().any(|c| c.starts_with("ot_session=")),
        "{:?}",
        r.set_cookies()
    );

    let r = Reply::read(
        browser
            .http
            .post(idp.url("/api/v1/auth/logout"))
            .header("X-CSRF-Token", csrf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(204);
}

/// The console's sign-in takes JSON only (a cross-site form cannot send it without a CORS
/// preflight) and only from the issuer's origin or a console origin, which gets CORS with
/// credentials; sign-out follows the same origin rule.
#[tokio::test]
async fn control_plane_login_accepts_json_from_the_console_or_the_issuer_only() {
    let console = "https://console.example";
    let db = TestDb::sqlite(true).await;
    let idp = Idp::start_with(db, &[("OPENTRUSTY_CONSOLE_ORIGINS", console)]).await;
    bootstrap_operator(&idp).await;
    let body = json!({"email": OPERATOR, "password": PASSWORD}).to_string();
    let login = |origin: Option<&str>, content_type: &str| {
        let mut req = http()
            .post(idp.url("/api/v1/auth/login"))
            .header("content-type", content_type.to_owned())
            .body(body.clone());
        if let Some(o) = origin {
            req = req.header("origin", o.to_owned());
        }
        req
    };
    let r = Reply::read(login(None, "text/plain").send().await.unwrap()).await;
    r.expect_status(415);
    assert!(r.set_cookies().is_empty());
    let r = Reply::read(
        login(Some("https://evil.example"), "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(403);
    assert!(r.set_cookies().is_empty());
    assert!(r.header("access-control-allow-origin").is_none());

    let preflight = Reply::read(
        http()
            .request(reqwest::Method::OPTIONS, idp.url("/api/v1/auth/login"))
            .header("origin", console)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap(),
    )
    .await;
    preflight.expect_status(204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(console)
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );

    let r = Reply::read(
        login(Some(console), "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some(console));
    let issuer = idp.issuer();
    let r = Reply::read(
        login(Some(&issuer), "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(200);
    assert!(r.header("access-control-allow-origin").is_none());

    let r = Reply::read(
        http()
            .post(idp.url("/api/v1/auth/logout"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(403);
}

#[tokio::test]
async fn control_plane_login_of_a_tenant_admin_names_the_tenant() {
    let idp = Idp::sqlite().await;
    tenant_user_with_role(&idp, "admin@acme.example", Role::TenantAdmin).await;
    let browser = Browser::new(&idp);
    let r = control_plane_login(
        &browser,
        &idp,
        json!({"email": "admin@acme.example", "password": PASSWORD}),
    )
    .await;
    r.expect_status(200);
    assert_eq!(r.json["tenant_id"], idp.seed.tenant_a.to_string());
}

#[tokio::test]
async fn control_plane_login_with_a_wrong_password_is_invalid_credentials() {
    let idp = Idp::sqlite().await;
    bootstrap_operator(&idp).await;
    let browser = Browser::new(&idp);
    for body in [
        json!({"email": OPERATOR, "password": "not the password at all"}),
        json!({"email": "nobody@platform.example", "password": PASSWORD}),
    ] {
        let r = control_plane_login(&browser, &idp, body).await;
        assert_json_error(&r, 401, "invalid_credentials");
    }
}

#[tokio::test]
async fn control_plane_login_refuses_users_without_control_plane_login() {
    let idp = Idp::sqlite().await;
    tenant_user_with_role(&idp, "member@acme.example", Role::TenantMember).await;
    let browser = Browser::new(&idp);
    for email in ["member@acme.example", ALICE] {
        let r = control_plane_login(
            &browser,
            &idp,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
        assert_json_error(&r, 401, "invalid_credentials");
        assert!(
            !r.set_cookies()
                .iter()
                .any(|c| c.starts_with("ot_session=") && !c.starts_with("ot_session=;"))
        );
    }
}

#[tokio::test]
async fn control_plane_login_refuses_a_tenant_header_or_field() {
    let idp = Idp::sqlite().await;
    bootstrap_operator(&idp).await;
    let browser = Browser::new(&idp);
    let tenant = idp.seed.tenant_a.to_string();
    let r = Reply::read(
        browser
            .http
            .post(idp.url("/api/v1/auth/login"))
            .header("X-Tenant-ID", &tenant)
            .json(&json!({"email": OPERATOR, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(400);
    let r = control_plane_login(
        &browser,
        &idp,
        json!({"email": OPERATOR, "password": PASSWORD, "tenant_id": tenant}),
    )
    .await;
    r.expect_status(400);
}

// =============================================================================================
// Keys

fn kid_of(token: &str) -> String {
    let (header, _) = jwt_parts(token);
    header["kid"].as_str().expect("kid").to_owned()
}

async fn published_kids(idp: &Idp) -> BTreeSet<String> {
    let jwks = Reply::read(http().get(idp.url("/jwks.json")).send().await.unwrap())
        .await
        .json;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable_and_signs_with_the_next_key() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let before = rp.sign_in(&idp, &browser, &[], &[]).await;
    let old_id_token = before.token.id_token().unwrap().clone();
    let old_kid = kid_of(&old_id_token.to_string());
    assert_eq!(kid_of(before.token.access_token().secret()), old_kid);
    let published_before = published_kids(&idp).await;
    assert!(published_before.contains(&old_kid));

    let (ok, out) = idp.cli(&["keys", "rotate"]);
    assert!(ok, "keys rotate: {out}");

    // A relying party that fetches the JWKS after the rotation still verifies the old token.
    let after_rotation = Rp::discover(&idp, CONFIDENTIAL).await;
    after_rotation.verify(
        &old_id_token,
        Some(before.token.access_token()),
        &before.nonce,
    );
    assert!(
        published_kids(&idp).await.contains(&old_kid),
        "retired keys stay published"
    );

    // New tokens are signed with the former next key. docs/oidc.md names no delay; a running
    // process is allowed a bounded time (40 s) to notice the rotation made by another process.
    let mut new_kid = old_kid.clone();
    for _ in 0..40 {
        let signed_in = after_rotation.sign_in(&idp, &browser, &[], &[]).await;
        new_kid = kid_of(&signed_in.token.id_token().unwrap().to_string());
        if new_kid != old_kid {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_ne!(
        new_kid, old_kid,
        "tokens after the rotation use another key"
    );
    assert!(
        published_before.contains(&new_kid),
        "the new signing key was published as next before it signed"
    );

    let (ok, list) = idp.cli(&["keys", "list"]);
    assert!(ok, "keys list: {list}");
    for word in [
        old_kid.as_str(),
        new_kid.as_str(),
        "active",
        "retired",
        "next",
    ] {
        assert!(list.contains(word), "{word} missing from:\n{list}");
    }
}

async fn count_active_rs256_keys(db: &TestDb) -> i64 {
    use sqlx::Connection as _;
    let sql = "SELECT COUNT(*) FROM signing_keys WHERE status = 'active' AND alg = 'RS256'";
    match Backend::of_url(db.url()) {
        Some(Backend::Postgres) => {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    }
}

#[tokio::test]
async fn two_auth_processes_starting_on_an_empty_database_install_exactly_one_active_key() {
    let db = match TestDb::postgres(true).await {
        Some(pg) => pg,
        None => TestDb::sqlite(true).await,
    };
    assert_eq!(count_active_rs256_keys(&db).await, 0, "a fresh database");
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::auth(dir.path(), db.url(), free_port());
    let mut b = Server::auth(dir.path(), db.url(), free_port());
    tokio::join!(a.wait_healthy(), b.wait_healthy());
    assert_eq!(count_active_rs256_keys(&db).await, 1);

    // Both publish the same keys.
    let jwks = |server: &Server| {
        let url = server.url("/jwks.json");
        async move {
            let v: Value = http().get(url).send().await.unwrap().json().await.unwrap();
            let kids: BTreeSet<String> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect();
            kids
        }
    };
    let (ka, kb) = (jwks(&a).await, jwks(&b).await);
    assert!(!ka.is_empty());
    assert_eq!(ka, kb);
}

// =============================================================================================
// The test harness itself

#[test]
fn the_hidden_input_parser_takes_any_attribute_order_and_unescapes_values() {
    let html = r#"<form><input type="hidden" name="csrf_token" value="a&amp;b&quot;c">
        <INPUT value='/oauth2/authorize?client_id=x&amp;scope=openid%20email&#x27;' name=return_to type=hidden/>
        <input name="request" type="hidden" value="&lt;q&gt;&#39;&#x2F;">
        <input id="email" name="email" type="email" required></form>"#;
    let fields = support::inputs(html);
    assert_eq!(fields["csrf_token"], "a&b\"c");
    assert_eq!(
        fields["return_to"],
        "/oauth2/authorize?client_id=x&scope=openid%20email'"
    );
    assert_eq!(fields["request"], "<q>'/");
    assert_eq!(fields["email"], "");
    assert_eq!(
        support::html_unescape("a & b &unknown; &amp;"),
        "a & b &unknown; &"
    );
}

#[tokio::test]
async fn prompt_login_forces_a_new_sign_in_and_a_newer_auth_time() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let first = rp.sign_in(&idp, &browser, &["profile"], &[]).await;
    assert!(first.journey.saw_login);
    let first_auth = first
        .claims
        .auth_time()
        .expect("auth_time is always present");
    // auth_time has one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = rp.sign_in(&idp, &browser, &["profile"], &[]).await;
    assert!(
        !again.journey.saw_login,
        "the session is reused without prompt=login"
    );
    assert_eq!(again.claims.auth_time(), Some(first_auth));
    let forced = rp
        .sign_in(&idp, &browser, &["profile"], &[("prompt", "login")])
        .await;
    assert!(
        forced.journey.saw_login,
        "prompt=login shows the sign-in page"
    );
    assert!(forced.claims.auth_time().unwrap() > first_auth);
}

#[tokio::test]
async fn max_age_older_than_the_session_forces_a_new_sign_in() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let first = rp.sign_in(&idp, &browser, &["profile"], &[]).await;
    assert!(first.journey.saw_login);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let recent_enough = rp
        .sign_in(&idp, &browser, &["profile"], &[("max_age", "3600")])
        .await;
    assert!(
        !recent_enough.journey.saw_login,
        "a one-hour max_age accepts the session"
    );
    let too_old = rp
        .sign_in(&idp, &browser, &["profile"], &[("max_age", "1")])
        .await;
    assert!(
        too_old.journey.saw_login,
        "max_age=1 refuses a two-second-old session"
    );
    assert!(too_old.claims.auth_time().unwrap() > first.claims.auth_time().unwrap());
}

#[tokio::test]
async fn an_idle_session_ends_after_the_idle_timeout() {
    let idp = Idp::start_with(
        TestDb::sqlite(true).await,
        &[("OPENTRUSTY_SESSION_IDLE_TIMEOUT", "1")],
    )
    .await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    assert!(rp.sign_in(&idp, &browser, &[], &[]).await.journey.saw_login);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = rp.sign_in(&idp, &browser, &[], &[]).await;
    assert!(
        later.journey.saw_login,
        "the idle session no longer signs the user in"
    );
}

#[tokio::test]
async fn a_hash_made_with_older_parameters_is_upgraded_at_sign_in() {
    let idp = Idp::sqlite().await;
    let alice = idp.seed.alice;
    let before = idp.store.password_hash(alice).await.unwrap().unwrap();
    assert!(
        before.contains("t=1"),
        "the seed hashes with one pass: {before}"
    );
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    rp.sign_in(&idp, &Browser::new(&idp), &[], &[]).await;
    let after = idp.store.password_hash(alice).await.unwrap().unwrap();
    assert!(
        after.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"),
        "{after}"
    );
    // The upgraded hash still signs Alice in.
    let again = rp.sign_in(&idp, &Browser::new(&idp), &[], &[]).await;
    assert!(again.journey.saw_login);
}

#[tokio::test]
async fn login_refuses_a_post_from_another_origin_even_with_the_right_csrf_token() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "st", &challenge));
    let r = browser.get(start.as_str()).await;
    let (_, fields) = browser.login_page(browser.see_other(&r).as_str()).await;
    let form = [
        ("email", ALICE),
        ("password", PASSWORD),
        ("csrf_token", fields["csrf_token"].as_str()),
        ("return_to", fields["return_to"].as_str()),
    ];
    // Same host, other port: a prefix of the issuer but another origin.
    let port = idp.issuer().rsplit(':').next().unwrap().to_owned();
    for origin in [
        "https://evil.example",
        &format!("http://127.0.0.1:{}", &port[..port.len() - 1]),
    ] {
        let r = Reply::read(
            browser
                .http
                .post(idp.url("/login"))
                .header("Origin", origin)
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect_status(403);
        assert!(r.location().is_none(), "{origin}");
    }
    let r = Reply::read(
        browser
            .http
            .post(idp.url("/login"))
            .header("Origin", idp.issuer())
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect_status(303);
}

#[tokio::test]
async fn an_access_token_is_not_accepted_as_an_id_token_hint() {
    let idp = Idp::sqlite().await;
    let rp = Rp::discover(&idp, CONFIDENTIAL).await;
    let browser = Browser::new(&idp);
    let signed_in = rp.sign_in(&idp, &browser, &[], &[]).await;
    let access_token = signed_in.token.access_token().secret().clone();
    let url = Url::parse_with_params(
        &idp.url("/oauth2/logout"),
        [
            ("id_token_hint", access_token.as_str()),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye"),
        ],
    )
    .unwrap();
    let r = browser.get(url.as_str()).await;
    r.expect_status(200);
    assert!(
        r.location().is_none(),
        "no redirect without a valid ID token hint"
    );
}

/// An invited user sets a password through the single-use link, with the policy enforced and
/// said in words, then signs in to an application with a full code flow.
#[tokio::test]
async fn an_enrollment_link_sets_a_password_once_and_the_user_signs_in() {
    let idp = Idp::sqlite().await;
    let email = "newcomer@acme.example";
    let (_, token) = idp.invite(email, Some("New")).await;
    let browser = Browser::new(&idp);
    let page = browser
        .get(&idp.url(&format!("/enroll?token={token}")))
        .await;
    page.expect_status(200);
    assert!(page.body.contains(email));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let csrf = support::inputs(&page.body)["csrf_token"].clone();
    let submit = |password: &'static str, confirm: &'static str| {
        let (csrf, token) = (csrf.clone(), token.clone());
        let browser = &browser;
        let url = idp.url("/enroll");
        async move {
            browser
                .post(
                    &url,
                    &[
                        ("csrf_token", csrf.as_str()),
                        ("token", token.as_str()),
                        ("password", password),
                        ("password_confirm", confirm),
                    ],
                )
                .await
        }
    };
    let r = submit("a new passphrase here", "a different one here").await;
    r.expect_status(422);
    assert!(r.body.contains("not the same"), "{}", r.body);
    let r = submit("short", "short").await;
    r.expect_status(422);
    assert!(r.body.contains("at least 10 characters"), "{}", r.body);
    let r = submit("newcomer@acme.example", "newcomer@acme.example").await;
    r.expect_status(422);
    let r = submit("Password123", "Password123").await;
    r.expect_status(422);
    assert!(r.body.contains("most common passwords"), "{}", r.body);
    let r = submit("a new passphrase here", "a new passphrase here").await;
    r.expect_status(200);
    assert!(r.body.contains("Your password is set"), "{}", r.body);
    // Single use.
    let r = submit("another passphrase now", "another passphrase now").await;
    r.expect_status(400);
    let r = browser
        .get(&idp.url(&format!("/enroll?token={token}")))
        .await;
    r.expect_status(400);
    let events = idp
        .store
        .list_audit(&opentrusty_store::AuditQuery {
            action: Some("user.password_set".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata["purpose"], "enroll");

    // The new password works for a full code flow.
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(
        CONFIDENTIAL,
        "openid email",
        "st-9",
        &challenge,
    ));
    let journey = Browser::new(&idp)
        .journey(url, Some((email, "a new passphrase here")))
        .await;
    let r = exchange_code(&idp, CONFIDENTIAL, &journey.code(), Some(&verifier)).await;
    r.expect_status(200);
    let (_, claims) = jwt_parts(str_of(&r.json, "id_token"));
    assert_eq!(claims["email"], email);
}

/// A signed-in user changes their password: the current one is required (and a wrong one counts
/// towards lockout), the policy applies, other sessions end, the new password signs in and the
/// old one no longer does.
#[tokio::test]
async fn a_signed_in_user_changes_their_password() {
    let idp = Idp::sqlite().await;
    let browser = Browser::new(&idp);
    let other = Browser::new(&idp);
    // Two sessions of Alice's, in two browsers.
    for b in [&browser, &other] {
        let (challenge, _) = pkce();
        let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "s", &challenge));
        b.journey(url, Some((ALICE, PASSWORD))).await;
    }
    let anonymous = Browser::new(&idp).get(&idp.url("/password")).await;
    anonymous.expect_status(401);
    let page = browser.get(&idp.url("/password")).await;
    page.expect_status(200);
    assert!(page.body.contains(ALICE));
    let csrf = support::inputs(&page.body)["csrf_token"].clone();
    let change = |current: &'static str, new: &'static str| {
        let csrf = csrf.clone();
        let url = idp.url("/password");
        let browser = &browser;
        async move {
            browser
                .post(
                    &url,
                    &[
                        ("csrf_token", csrf.as_str()),
                        ("current_password", current),
                        ("password", new),
                        ("password_confirm", new),
                    ],
                )
                .await
        }
    };
    let r = change("not my password", "a brand new passphrase").await;
    r.expect_status(401);
    assert!(
        r.body.contains("current password is not right"),
        "{}",
        r.body
    );
    let r = change(PASSWORD, "1234567890").await;
    r.expect_status(422);
    assert!(r.body.contains("most common"), "{}", r.body);
    let r = change(PASSWORD, "a brand new passphrase").await;
    r.expect_status(200);
    assert!(r.body.contains("Your password is changed"), "{}", r.body);
    // This browser stays signed in; the other one was signed out.
    browser.get(&idp.url("/password")).await.expect_status(200);
    other.get(&idp.url("/password")).await.expect_status(401);
    let events = idp
        .store
        .list_audit(&opentrusty_store::AuditQuery {
            action: Some("login.failed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the wrong current password was recorded");
    // Old password out, new password in.
    let stored = idp
        .store
        .password_hash(idp.seed.alice)
        .await
        .unwrap()
        .unwrap();
    let hasher = opentrusty_password::PasswordHasher::new(Default::default()).unwrap();
    assert!(matches!(
        hasher.verify(PASSWORD, &stored),
        opentrusty_password::Verification::Mismatch
    ));
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "s2", &challenge));
    let journey = Browser::new(&idp)
        .journey(url, Some((ALICE, "a brand new passphrase")))
        .await;
    exchange_code(&idp, CONFIDENTIAL, &journey.code(), Some(&verifier))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn access_tokens_are_signed_with_the_configured_algorithm() {
    for alg in ["ES256", "EdDSA"] {
        let idp = Idp::start_with(
            TestDb::sqlite(true).await,
            &[("OPENTRUSTY_ACCESS_TOKEN_ALG", alg)],
        )
        .await;
        let token = client_credentials_token(&idp).await;
        let (header, _) = jwt_parts(&token);
        assert_eq!(header["alg"], alg);
        assert!(published_kids(&idp).await.contains(&kid_of(&token)));
        let r = introspect(&idp, ClientAuth::of(SERVICE), &token).await;
        assert_eq!(r.json["active"], true);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = support::opentrusty(dir.path())
        .args(["check", "all"])
        .env("OPENTRUSTY_ACCESS_TOKEN_ALG", "HS256")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = format!(
        "{}{}",
        support::text(&out.stdout),
        support::text(&out.stderr)
    );
    assert!(said.contains("OPENTRUSTY_ACCESS_TOKEN_ALG"), "{said}");
}

// =============================================================================================
// Security rules (both backends): logout, session-bound refresh tokens, protocol details

/// Signs `email` in through `client` in `browser` (approving consent) and exchanges the code:
/// the token response JSON.
async fn tokens_in(
    idp: &Idp,
    browser: &Browser,
    client: TestClient,
    scope: &str,
    email: &str,
) -> Value {
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(client, scope, "st", &challenge));
    let journey = browser.journey(url, Some((email, PASSWORD))).await;
    let r = exchange_code(idp, client, &journey.code(), Some(&verifier)).await;
    r.expect_status(200);
    r.json
}

/// Whether `browser` holds a live session (the password page answers only signed-in users).
async fn signed_in(idp: &Idp, browser: &Browser) -> bool {
    match browser.get(&idp.url("/password")).await.status.as_u16() {
        200 => true,
        401 => false,
        other => panic!("the password page answered {other}"),
    }
}

/// Confirms the sign-out `page` shows, carrying on the logout request in its form.
async fn confirm_sign_out(idp: &Idp, browser: &Browser, page: &Reply) -> Reply {
    page.expect_status(200);
    assert!(page.is_html() && page.location().is_none(), "{page:?}");
    let fields = support::inputs(&page.body);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(fields.contains_key("csrf_token"), "{}", page.body);
    browser.post(&idp.url("/logout"), &form).await
}

fn logout_url(idp: &Idp, hint: Option<&str>) -> String {
    let mut params = vec![("post_logout_redirect_uri", SIGNED_OUT), ("state", "bye-7")];
    if let Some(h) = hint {
        params.push(("id_token_hint", h));
    }
    Url::parse_with_params(&idp.url("/oauth2/logout"), params)
        .unwrap()
        .to_string()
}

#[track_caller]
fn assert_signed_out_to_the_client(r: &Reply) {
    r.expect_status(303);
    let to = Url::parse(r.location().unwrap()).unwrap();
    assert_eq!(
        format!("{}://{}{}", to.scheme(), to.authority(), to.path()),
        SIGNED_OUT
    );
    assert_eq!(query(&to).get("state").map(String::as_str), Some("bye-7"));
}

/// RP-Initiated Logout 1.0 §2: a hint issued to another session or user, or none, ends
/// nothing until the user confirms, and only then is the browser sent back.
async fn rp_logout_ends_the_session_at_once_only_for_a_hint_of_that_session(idp: Idp) {
    let (mine, other, bobs) = (Browser::new(&idp), Browser::new(&idp), Browser::new(&idp));
    let my_hint = str_of(
        &tokens_in(&idp, &mine, CONFIDENTIAL, "openid", ALICE).await,
        "id_token",
    )
    .to_owned();
    let (_, claims) = jwt_parts(&my_hint);
    assert!(
        claims["sid"].is_string(),
        "ID tokens name their session: {claims}"
    );
    let other_hint = str_of(
        &tokens_in(&idp, &other, CONFIDENTIAL, "openid", ALICE).await,
        "id_token",
    )
    .to_owned();
    let bobs_hint = str_of(
        &tokens_in(&idp, &bobs, OTHER_TENANT, "openid", BOB).await,
        "id_token",
    )
    .to_owned();

    // The same user's hint from another browser, another tenant's user's, and none at all.
    for hint in [Some(other_hint.as_str()), Some(bobs_hint.as_str()), None] {
        let page = mine.get(&logout_url(&idp, hint)).await;
        page.expect_status(200);
        assert!(page.is_html() && page.location().is_none(), "{page:?}");
        assert!(page.body.contains("Sign out?"), "{}", page.body);
        assert!(
            signed_in(&idp, &mine).await,
            "nothing ends before the user confirms"
        );
    }
    assert!(signed_in(&idp, &other).await && signed_in(&idp, &bobs).await);

    // Confirmed, the request the page carried goes on: session ended, back to the client.
    let page = mine.get(&logout_url(&idp, Some(&other_hint))).await;
    let r = confirm_sign_out(&idp, &mine, &page).await;
    assert_signed_out_to_the_client(&r);
    assert!(!signed_in(&idp, &mine).await);
    assert!(
        signed_in(&idp, &other).await,
        "the hint's own session is not this browser's to end"
    );

    // Without a hint, confirming signs out and sends the browser nowhere.
    let page = other.get(&logout_url(&idp, None)).await;
    let r = confirm_sign_out(&idp, &other, &page).await;
    r.expect_status(200);
    assert!(r.location().is_none());
    assert!(!signed_in(&idp, &other).await);

    // The hint of this very session ends it at once; with no session left, a valid hint is
    // sent straight back.
    let fresh = Browser::new(&idp);
    let hint = str_of(
        &tokens_in(&idp, &fresh, CONFIDENTIAL, "openid", ALICE).await,
        "id_token",
    )
    .to_owned();
    let r = fresh.get(&logout_url(&idp, Some(&hint))).await;
    assert_signed_out_to_the_client(&r);
    assert!(!signed_in(&idp, &fresh).await);
    let r = Browser::new(&idp)
        .get(&logout_url(&idp, Some(&my_hint)))
        .await;
    assert_signed_out_to_the_client(&r);
}

/// Signs `browser` out through the sign-out page.
async fn sign_out(idp: &Idp, browser: &Browser) {
    let page = browser.get(&idp.url("/logout")).await;
    confirm_sign_out(idp, browser, &page)
        .await
        .expect_status(200);
    assert!(!signed_in(idp, browser).await);
}

#[track_caller]
fn assert_refresh_refused(r: &Reply) {
    assert_json_error(r, 400, "invalid_grant");
}

/// OIDC Core §11: a refresh token without consented `offline_access` belongs to the browser
/// session (a new sign-in of the same user in that browser keeps it) and ends with it; one with
/// offline access outlives it.
async fn refresh_tokens_follow_the_session_unless_offline_access_was_granted(idp: Idp) {
    let browser = Browser::new(&idp);
    let (challenge, verifier) = pkce();
    let start = idp.authorize_url(&code_params(
        CONFIDENTIAL,
        "openid offline_access",
        "s1",
        &challenge,
    ));
    let consent = up_to_consent(&idp, &browser, start).await;
    let page = browser.get(consent.as_str()).await;
    assert!(
        page.body.contains("Keep access while you are away"),
        "the consent page asks for offline access: {}",
        page.body
    );
    let journey = browser.journey(consent, None).await;
    let offline = exchange_code(&idp, CONFIDENTIAL, &journey.code(), Some(&verifier)).await;
    offline.expect_status(200);
    let mut offline_refresh = str_of(&offline.json, "refresh_token").to_owned();
    // Consent covers "openid": no page, a session-bound refresh token.
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "s2", &challenge));
    let journey = browser.journey(url, None).await;
    let online = exchange_code(&idp, CONFIDENTIAL, &journey.code(), Some(&verifier)).await;
    online.expect_status(200);
    let online_refresh = str_of(&online.json, "refresh_token").to_owned();
    let online_access = str_of(&online.json, "access_token").to_owned();

    // Signing in again (prompt=login) replaces the session and keeps its refresh tokens.
    let (challenge, _) = pkce();
    let mut params = code_params(CONFIDENTIAL, "openid", "s3", &challenge);
    params.push(("prompt", "login"));
    let again = browser
        .journey(idp.authorize_url(&params), Some((ALICE, PASSWORD)))
        .await;
    assert!(again.saw_login);
    let r = refresh(&idp, CONFIDENTIAL, &online_refresh, None).await;
    r.expect_status(200);
    let online_refresh = str_of(&r.json, "refresh_token").to_owned();

    sign_out(&idp, &browser).await;
    assert_refresh_refused(&refresh(&idp, CONFIDENTIAL, &online_refresh, None).await);
    let seen = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &online_refresh).await;
    assert_eq!(seen.json, json!({"active": false}));
    let seen = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &online_access).await;
    assert_eq!(
        seen.json,
        json!({"active": false}),
        "its access tokens end too"
    );
    for _ in 0..2 {
        let r = refresh(&idp, CONFIDENTIAL, &offline_refresh, None).await;
        r.expect_status(200);
        offline_refresh = str_of(&r.json, "refresh_token").to_owned();
    }
    let seen = introspect(&idp, ClientAuth::of(CONFIDENTIAL), &offline_refresh).await;
    assert_eq!(seen.json["active"], true, "{}", seen.json);
}

/// The admin plane's "end all sessions" revokes every refresh family of the user: offline
/// ones, and those of sessions that had ended before.
async fn ending_every_session_revokes_every_refresh_family_of_the_user(idp: Idp) {
    let gone = Browser::new(&idp);
    let offline = tokens_in(&idp, &gone, CONFIDENTIAL, "openid offline_access", ALICE).await;
    sign_out(&idp, &gone).await;
    let r = refresh(&idp, CONFIDENTIAL, str_of(&offline, "refresh_token"), None).await;
    r.expect_status(200);
    let offline_refresh = str_of(&r.json, "refresh_token").to_owned();
    let live = Browser::new(&idp);
    let online = tokens_in(&idp, &live, CONFIDENTIAL, "openid", ALICE).await;
    let ended = idp
        .store
        .end_user_sessions(idp.seed.tenant_a, idp.seed.alice, &Origin::system())
        .await
        .unwrap();
    assert_eq!(ended, 1, "the one live session");
    assert!(!signed_in(&idp, &live).await);
    assert_refresh_refused(&refresh(&idp, CONFIDENTIAL, &offline_refresh, None).await);
    assert_refresh_refused(
        &refresh(&idp, CONFIDENTIAL, str_of(&online, "refresh_token"), None).await,
    );
}

/// A password change keeps only the session it was made from and that session's own
/// (session-bound) refresh tokens; every other family, offline ones included, is revoked.
async fn a_password_change_revokes_every_refresh_family_but_the_sessions_own(idp: Idp) {
    let here = Browser::new(&idp);
    let elsewhere = Browser::new(&idp);
    let own = tokens_in(&idp, &here, CONFIDENTIAL, "openid", ALICE).await;
    let offline = tokens_in(&idp, &here, CONFIDENTIAL, "openid offline_access", ALICE).await;
    let other = tokens_in(&idp, &elsewhere, CONFIDENTIAL, "openid", ALICE).await;
    let page = here.get(&idp.url("/password")).await;
    page.expect_status(200);
    let csrf = support::inputs(&page.body)["csrf_token"].clone();
    let new = "an entirely new passphrase";
    here.post(
        &idp.url("/password"),
        &[
            ("csrf_token", csrf.as_str()),
            ("current_password", PASSWORD),
            ("password", new),
            ("password_confirm", new),
        ],
    )
    .await
    .expect_status(200);
    refresh(&idp, CONFIDENTIAL, str_of(&own, "refresh_token"), None)
        .await
        .expect_status(200);
    assert_refresh_refused(
        &refresh(&idp, CONFIDENTIAL, str_of(&offline, "refresh_token"), None).await,
    );
    assert_refresh_refused(
        &refresh(&idp, CONFIDENTIAL, str_of(&other, "refresh_token"), None).await,
    );
}

async fn client_id_of(idp: &Idp, c: TestClient) -> opentrusty_core::ClientId {
    idp.store
        .find_client(c.client_id)
        .await
        .unwrap()
        .expect("a seeded client")
        .id
}

/// A refresh grants at most the family's scope within what the client may still ask for: a
/// scope removed from the client is neither issued nor released by UserInfo afterwards.
async fn a_refresh_grants_only_scopes_the_client_may_still_ask_for(idp: Idp) {
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid email").await;
    let info = userinfo(&idp, str_of(&tokens, "access_token")).await;
    assert_eq!(info.json["email"], ALICE);
    let id = client_id_of(&idp, CONFIDENTIAL).await;
    idp.store
        .update_client(
            idp.seed.tenant_a,
            id,
            |c| {
                let mut s = c.settings();
                s.allowed_scopes.retain(|x| x != "email");
                s.validate(c.token_endpoint_auth_method)
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    let r = refresh(&idp, CONFIDENTIAL, str_of(&tokens, "refresh_token"), None).await;
    r.expect_status(200);
    assert_eq!(r.json["scope"], "openid", "{}", r.json);
    let info = userinfo(&idp, str_of(&r.json, "access_token")).await;
    info.expect_status(200);
    assert!(info.json.get("email").is_none(), "{}", info.json);
    let r = refresh(
        &idp,
        CONFIDENTIAL,
        str_of(&r.json, "refresh_token"),
        Some("openid email"),
    )
    .await;
    assert_json_error(&r, 400, "invalid_scope");
}

/// RFC 6749 §4.1.3: `redirect_uri` at the token endpoint is required if the authorization
/// request carried it, and must then be identical; a request without it (the client's only
/// registered URI) needs none, and a wrong one is refused either way.
async fn the_token_request_repeats_redirect_uri_only_if_the_authorization_request_carried_it(
    idp: Idp,
) {
    let browser = Browser::new(&idp);
    let code_for = |with_redirect: bool| {
        let browser = &browser;
        let idp = &idp;
        async move {
            let (challenge, verifier) = pkce();
            let mut params = code_params(CONFIDENTIAL, "openid", "st", &challenge);
            if !with_redirect {
                params.retain(|(k, _)| *k != "redirect_uri");
            }
            let journey = browser
                .journey(idp.authorize_url(&params), Some((ALICE, PASSWORD)))
                .await;
            (journey.code(), verifier)
        }
    };
    let exchange = |code: String, verifier: String, redirect: Option<&'static str>| {
        let idp = &idp;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", verifier.as_str()),
            ];
            if let Some(r) = redirect {
                form.push(("redirect_uri", r));
            }
            token_request(idp, ClientAuth::of(CONFIDENTIAL), &form).await
        }
    };
    let (code, verifier) = code_for(false).await;
    exchange(code, verifier, None).await.expect_status(200);
    let (code, verifier) = code_for(false).await;
    let wrong = exchange(
        code.clone(),
        verifier.clone(),
        Some("http://127.0.0.1:9/other"),
    )
    .await;
    assert_json_error(&wrong, 400, "invalid_grant");
    exchange(code, verifier, Some(CALLBACK))
        .await
        .expect_status(200);

    let (code, verifier) = code_for(true).await;
    let missing = exchange(code.clone(), verifier.clone(), None).await;
    assert_json_error(&missing, 400, "invalid_request");
    exchange(code, verifier, Some(CALLBACK))
        .await
        .expect_status(200);
}

/// RFC 7662 §2.2, §4: only the token's own client, or a resource server holding
/// `tenant:introspect_tokens` over that client, learns about an access token; a refresh token
/// is its own client's business alone. Everyone else is told `{"active": false}`.
async fn introspection_answers_only_the_tokens_client_or_a_resource_server(idp: Idp) {
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid offline_access").await;
    let (access, refresh_token) = (
        str_of(&tokens, "access_token"),
        str_of(&tokens, "refresh_token"),
    );
    let own = introspect(&idp, ClientAuth::of(CONFIDENTIAL), access).await;
    assert_eq!(own.json["active"], true, "{}", own.json);
    for token in [access, refresh_token] {
        let other = introspect(&idp, ClientAuth::of(SERVICE), token).await;
        other.expect_status(200);
        assert_eq!(other.json, json!({"active": false}));
    }
    let service = Subject::Client(client_id_of(&idp, SERVICE).await);
    let tenant = RbacScope::Tenant(idp.seed.tenant_a);
    idp.store
        .assign_role(
            service,
            Role::TenantResourceServer,
            tenant,
            &Origin::system(),
        )
        .await
        .unwrap();
    let rs = introspect(&idp, ClientAuth::of(SERVICE), access).await;
    assert_eq!(rs.json["active"], true, "{}", rs.json);
    assert_eq!(rs.json["client_id"], CONFIDENTIAL.client_id);
    let rs = introspect(&idp, ClientAuth::of(SERVICE), refresh_token).await;
    assert_eq!(rs.json, json!({"active": false}));
    let own = introspect(&idp, ClientAuth::of(CONFIDENTIAL), refresh_token).await;
    assert_eq!(own.json["active"], true, "{}", own.json);
    // A resource server for one client only learns about that client's tokens.
    idp.store
        .revoke_role(
            service,
            Role::TenantResourceServer,
            tenant,
            &Origin::system(),
        )
        .await
        .unwrap();
    let just_opaque = RbacScope::Client {
        tenant: idp.seed.tenant_a,
        client: client_id_of(&idp, OPAQUE).await,
    };
    idp.store
        .assign_role(
            service,
            Role::TenantResourceServer,
            just_opaque,
            &Origin::system(),
        )
        .await
        .unwrap();
    let rs = introspect(&idp, ClientAuth::of(SERVICE), access).await;
    assert_eq!(rs.json, json!({"active": false}));
    let opaque = obtain_tokens(&idp, OPAQUE, "openid").await;
    let rs = introspect(
        &idp,
        ClientAuth::of(SERVICE),
        str_of(&opaque, "access_token"),
    )
    .await;
    assert_eq!(rs.json["active"], true, "{}", rs.json);
}

/// OIDC Core §6.1, §6.2: until request objects are supported, `request` and `request_uri`
/// are refused at the client's redirect URI (never ignored), and discovery says so.
async fn request_objects_are_refused_at_the_redirect_uri(idp: Idp) {
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    for (name, value, error) in [
        (
            "request",
            "eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6InNlY3JldCJ9.",
            "request_not_supported",
        ),
        (
            "request_uri",
            "https://acme.example/request.jwt",
            "request_uri_not_supported",
        ),
    ] {
        let mut params = code_params(CONFIDENTIAL, "openid", "st-r", &challenge);
        params.push((name, value));
        // Signed in or not, no code comes back.
        let r = browser.get(idp.authorize_url(&params).as_str()).await;
        assert_redirected_error(&idp, &r, error, "st-r");
    }
    let r = Reply::read(
        http()
            .get(idp.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json["request_parameter_supported"], false);
    assert_eq!(r.json["request_uri_parameter_supported"], false);
}

/// OIDC Core §3.1.2.1: `prompt=consent` shows the consent page whatever the client.
async fn prompt_consent_shows_the_consent_page_to_first_party_clients_too(idp: Idp) {
    let browser = Browser::new(&idp);
    let (challenge, _) = pkce();
    let plain = browser
        .journey(
            idp.authorize_url(&code_params(FIRST_PARTY, "openid", "st", &challenge)),
            Some((ALICE, PASSWORD)),
        )
        .await;
    assert!(!plain.saw_consent, "a first-party client skips consent");
    let mut params = code_params(FIRST_PARTY, "openid", "st", &challenge);
    params.push(("prompt", "consent"));
    let asked = browser.journey(idp.authorize_url(&params), None).await;
    assert!(asked.saw_consent, "prompt=consent asks every client");
    assert!(asked.params().contains_key("code"));
}

async fn with_origin(req: reqwest::RequestBuilder, origin: &str) -> Reply {
    Reply::read(req.header("origin", origin).send().await.unwrap()).await
}

/// CORS on the token, revocation and UserInfo endpoints answers the origins the public client
/// registers (preflight and answers, errors included), and nobody else: no other origin, no
/// confidential client, never with credentials.
async fn cors_admits_only_the_origins_a_public_client_registers(idp: Idp) {
    let evil = "https://evil.example";
    for path in ["/oauth2/token", "/oauth2/revoke", "/oauth2/userinfo"] {
        let preflight = |origin: &'static str| {
            http()
                .request(reqwest::Method::OPTIONS, idp.url(path))
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .header("origin", origin)
        };
        let ok = Reply::read(preflight(support::SPA_ORIGIN).send().await.unwrap()).await;
        ok.expect_status(204);
        assert_eq!(
            ok.header("access-control-allow-origin"),
            Some(support::SPA_ORIGIN)
        );
        assert!(
            ok.header("access-control-allow-methods")
                .unwrap()
                .contains("POST")
        );
        assert!(ok.header("access-control-allow-credentials").is_none());
        let refused = Reply::read(preflight(evil).send().await.unwrap()).await;
        refused.expect_status(403);
        assert!(
            refused.header("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    // The single-page app redeems its code from its origin and reads the answer.
    let browser = Browser::new(&idp);
    let (code, verifier) = obtain_code(&idp, &browser, PUBLIC, "openid offline_access").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.as_str()),
        ("client_id", PUBLIC.client_id),
    ];
    let r = with_origin(
        http().post(idp.url("/oauth2/token")).form(&form),
        support::SPA_ORIGIN,
    )
    .await;
    r.expect_status(200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(support::SPA_ORIGIN)
    );
    assert!(
        r.header("vary")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("origin")
    );
    let access = str_of(&r.json, "access_token").to_owned();
    let refresh_token = str_of(&r.json, "refresh_token").to_owned();
    // Its errors are readable too.
    let mut wrong = form;
    wrong[1] = ("code", "not-a-code");
    let r = with_origin(
        http().post(idp.url("/oauth2/token")).form(&wrong),
        support::SPA_ORIGIN,
    )
    .await;
    assert_json_error(&r, 400, "invalid_grant");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(support::SPA_ORIGIN)
    );
    // Another origin cannot read the same kind of answer.
    let refreshed = with_origin(
        http().post(idp.url("/oauth2/token")).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", PUBLIC.client_id),
        ]),
        evil,
    )
    .await;
    refreshed.expect_status(200);
    assert!(refreshed.header("access-control-allow-origin").is_none());
    let info = with_origin(
        http().get(idp.url("/oauth2/userinfo")).bearer_auth(&access),
        support::SPA_ORIGIN,
    )
    .await;
    info.expect_status(200);
    assert_eq!(
        info.header("access-control-allow-origin"),
        Some(support::SPA_ORIGIN)
    );
    let info = with_origin(
        http().get(idp.url("/oauth2/userinfo")).bearer_auth(&access),
        evil,
    )
    .await;
    assert!(info.header("access-control-allow-origin").is_none());
    let revoked = with_origin(
        http()
            .post(idp.url("/oauth2/revoke"))
            .form(&[("token", access.as_str()), ("client_id", PUBLIC.client_id)]),
        support::SPA_ORIGIN,
    )
    .await;
    revoked.expect_status(200);
    assert_eq!(
        revoked.header("access-control-allow-origin"),
        Some(support::SPA_ORIGIN)
    );
    // A confidential client's answers are never readable from a browser, even from the SPA's
    // origin.
    let tokens = obtain_tokens(&idp, CONFIDENTIAL, "openid").await;
    let info = with_origin(
        http()
            .get(idp.url("/oauth2/userinfo"))
            .bearer_auth(str_of(&tokens, "access_token")),
        support::SPA_ORIGIN,
    )
    .await;
    info.expect_status(200);
    assert!(info.header("access-control-allow-origin").is_none());
}

/// The error bodies of the token, introspection and UserInfo endpoints as a client sees them
/// (RFC 6749 §5.2, RFC 7662 §2.3, RFC 6750 §3): status, the headers a client acts on, and the
/// JSON. A change to any of them shows as a snapshot to review.
#[tokio::test]
async fn error_bodies_are_as_published() {
    let idp = Idp::sqlite().await;
    let mut seen = Vec::new();
    let mut record = |what: &str, r: &Reply| {
        let header = |name: &str| r.header(name).unwrap_or("").to_owned();
        seen.push(json!({
            "request": what,
            "status": r.status.as_u16(),
            "cache-control": header("cache-control"),
            "www-authenticate": header("www-authenticate"),
            "body": r.json,
        }));
    };
    let service = ClientAuth::of(SERVICE);
    let r = token_request(&idp, service, &[("grant_type", "password")]).await;
    record("token: unsupported grant type", &r);
    let r = token_request(&idp, service, &[]).await;
    record("token: no grant_type", &r);
    let r = token_request(
        &idp,
        ClientAuth::Basic(SERVICE.client_id, "not the secret"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    record("token: wrong client secret", &r);
    let code = [
        ("grant_type", "authorization_code"),
        ("code", "no-such-code"),
        ("redirect_uri", support::CALLBACK),
        ("code_verifier", "x"),
    ];
    let r = token_request(&idp, ClientAuth::of(CONFIDENTIAL), &code).await;
    record("token: unknown code", &r);
    let scope = [("grant_type", "client_credentials"), ("scope", "root")];
    let r = token_request(&idp, service, &scope).await;
    record("token: scope beyond the client's", &r);
    let r = introspect(
        &idp,
        ClientAuth::Basic(SERVICE.client_id, "not the secret"),
        "x",
    )
    .await;
    record("introspection: wrong client secret", &r);
    let r = userinfo(&idp, "not-a-token").await;
    record("userinfo: invalid token", &r);
    insta::assert_json_snapshot!(seen);
}
