//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6) and client authentication (§2.3),
//! shared with revocation and introspection.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::client::{
    AccessTokenFormat, GrantType, OAuthClient, TokenEndpointAuthMethod, client_secret_matches,
};
use opentrusty_core::pkce::PkceMethod;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::user::{User, UserStatus};
use opentrusty_core::{UserId, now};
use opentrusty_oidc::claims::{IdTokenClaims, access_token_claims};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::jose;
use opentrusty_oidc::pkce;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{
    AccessTokenKey, AccessTokenRecord, ClientAccess, CodeGrant, Confirmation, NewAccessToken,
    NewTokenFamily, Redemption, RefreshGrant, Rotation, StoreError,
};
use serde_json::{Value, json};

use crate::AuthState;
use crate::http::{self, no_store_json};

/// An error answered by the token, revocation or introspection endpoint.
#[derive(Debug)]
pub struct TokenError {
    pub code: ErrorCode,
    pub description: &'static str,
    pub status: StatusCode,
}

impl TokenError {
    pub fn new(code: ErrorCode, description: &'static str) -> Self {
        let status = match code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description,
            status,
        }
    }

    fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        let (status, _) = http::store_failure(&e);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            Self::new(ErrorCode::TemporarilyUnavailable, "try again later")
        } else {
            Self::new(ErrorCode::ServerError, "the request could not be completed")
        }
    }
}

impl From<crate::keys::KeyError> for TokenError {
    fn from(e: crate::keys::KeyError) -> Self {
        e.report();
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "signing keys are unavailable",
        )
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let mut r = no_store_json(
            self.status,
            json!({ "error": self.code.as_str(), "error_description": self.description }),
        );
        if self.code == ErrorCode::InvalidClient {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"opentrusty\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

type Form = Vec<(String, String)>;

fn param<'a>(form: &'a Form, name: &str) -> Result<Option<&'a str>, TokenError> {
    http::single(form, name)
        .map_err(|()| TokenError::new(ErrorCode::InvalidRequest, "a parameter was repeated"))
}

fn form_urldecode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// The client id and secret of an HTTP Basic `Authorization` value; `None` if it is anything
/// else. RFC 6749 §2.3.1: both parts are form-encoded before Base64.
pub(crate) fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// The client a request names and the proof it offers, before anything is looked up.
struct ClaimedClient {
    id: String,
    secret: Option<String>,
    method: TokenEndpointAuthMethod,
}

/// Reads the client's credentials from the request (HTTP Basic, or `client_id` and
/// `client_secret` in the body; public clients send `client_id` alone).
fn claimed_client(headers: &HeaderMap, form: &Form) -> Result<ClaimedClient, TokenError> {
    let basic = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(value) => Some(basic_credentials(value).ok_or_else(TokenError::invalid_client)?),
        None => None,
    };
    let body_id = param(form, "client_id")?;
    let body_secret = param(form, "client_secret")?;
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "use one client authentication method",
        )),
        (Some((id, secret)), body, None) => {
            if body.is_some_and(|b| b != id) {
                return Err(TokenError::invalid_client());
            }
            Ok(ClaimedClient {
                id,
                secret: Some(secret),
                method: TokenEndpointAuthMethod::ClientSecretBasic,
            })
        }
        (None, Some(id), Some(secret)) => Ok(ClaimedClient {
            id: id.to_owned(),
            secret: Some(secret.to_owned()),
            method: TokenEndpointAuthMethod::ClientSecretPost,
        }),
        (None, Some(id), None) => Ok(ClaimedClient {
            id: id.to_owned(),
            secret: None,
            method: TokenEndpointAuthMethod::None,
        }),
        (None, None, _) => Err(TokenError::invalid_client()),
    }
}

/// Checks the claim against the client as stored: live and usable, registered for this
/// authentication method, and the secret matching.
fn verify_client(
    claimed: &ClaimedClient,
    access: Option<ClientAccess>,
) -> Result<OAuthClient, TokenError> {
    let access = access.ok_or_else(TokenError::invalid_client)?;
    check_client(claimed, &access)?;
    Ok(access.client)
}

/// [`verify_client`] on a client that was found.
fn check_client(claimed: &ClaimedClient, access: &ClientAccess) -> Result<(), TokenError> {
    if !access.usable || access.client.token_endpoint_auth_method != claimed.method {
        return Err(TokenError::invalid_client());
    }
    if let Some(secret) = &claimed.secret
        && !access
            .secret_hash
            .as_deref()
            .is_some_and(|h| client_secret_matches(secret, h))
    {
        return Err(TokenError::invalid_client());
    }
    Ok(())
}

/// Authenticates the calling client by the method it is registered with. Public clients
/// identify themselves with `client_id` alone.
pub(crate) async fn authenticate_client(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<OAuthClient, TokenError> {
    authenticate_client_with_access_token(state, headers, form, None)
        .await
        .map(|(client, _)| client)
}

/// [`authenticate_client`], reading the access token `key` names (if any) in the same round
/// trip; the token is returned whoever it was issued to.
pub(crate) async fn authenticate_client_with_access_token(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
    key: Option<AccessTokenKey>,
) -> Result<(OAuthClient, Option<AccessTokenRecord>), TokenError> {
    let claimed = claimed_client(headers, form)?;
    let store = state.store();
    let (access, token) = match key {
        Some(key) => store
            .find_client_with_access_token(&claimed.id, key, now())
            .await?
            .map_or((None, None), |(access, token)| (Some(access), token)),
        None => (store.find_client_for_request(&claimed.id).await?, None),
    };
    Ok((verify_client(&claimed, access)?, token))
}

/// The code or refresh token a token request presents, read in the same round trip as its
/// client (`Nothing` when the parameter is missing or repeated, or for client_credentials).
enum Presented {
    Nothing,
    Code([u8; 32], Option<CodeGrant>),
    Refresh([u8; 32], Option<RefreshGrant>),
}

/// Looks up the client and what the request presents for `grant_type`, in one round trip.
async fn client_and_presented(
    state: &AuthState,
    claimed: &ClaimedClient,
    grant_type: GrantType,
    form: &Form,
) -> Result<(Option<ClientAccess>, Presented), TokenError> {
    let presented = |name| http::single(form, name).ok().flatten().map(token_digest);
    let store = state.store();
    Ok(match grant_type {
        GrantType::AuthorizationCode if let Some(digest) = presented("code") => {
            match store.find_client_with_code(&claimed.id, &digest).await? {
                Some((access, grant)) => (Some(access), Presented::Code(digest, grant)),
                None => (None, Presented::Nothing),
            }
        }
        GrantType::RefreshToken if let Some(digest) = presented("refresh_token") => {
            match store
                .find_client_with_refresh_token(&claimed.id, &digest)
                .await?
            {
                Some((access, grant)) => (Some(access), Presented::Refresh(digest, grant)),
                None => (None, Presented::Nothing),
            }
        }
        _ => (
            store.find_client_for_request(&claimed.id).await?,
            Presented::Nothing,
        ),
    })
}

/// The `scope` parameter when given (it must stay within `ceiling`), else `ceiling` itself.
fn requested_scope(
    form: &Form,
    ceiling: Scopes,
    too_wide: &'static str,
) -> Result<Scopes, TokenError> {
    let Some(asked) = param(form, "scope")? else {
        return Ok(ceiling);
    };
    let asked = Scopes::parse(asked).ok_or(TokenError::new(
        ErrorCode::InvalidScope,
        "the scope is malformed",
    ))?;
    if !asked.is_subset(&ceiling) {
        return Err(TokenError::new(ErrorCode::InvalidScope, too_wide));
    }
    Ok(asked)
}

fn allows_grant(client: &OAuthClient, grant: GrantType) -> bool {
    client.grant_types.contains(&grant)
}

/// `unauthorized_client` unless the client is registered for `grant`.
fn require_grant(client: &OAuthClient, grant: GrantType) -> Result<(), TokenError> {
    if allows_grant(client, grant) {
        Ok(())
    } else {
        Err(TokenError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use this grant type",
        ))
    }
}

/// A freshly minted access token and its record.
struct Minted {
    token: String,
    record: NewAccessToken,
    expires_in: i64,
}

async fn mint_access_token(
    state: &AuthState,
    client: &OAuthClient,
    subject: &str,
    user: Option<UserId>,
    scope: &str,
) -> Result<Minted, TokenError> {
    let jti = uuid::Uuid::now_v7();
    let iat = now();
    let expires_in = client.access_token_ttl_secs;
    let exp = iat + time::Duration::seconds(expires_in);
    let (token, digest) = match client.access_token_format {
        AccessTokenFormat::Jwt => {
            let claims = access_token_claims(
                state.issuer(),
                subject,
                &client.client_id,
                scope,
                &jti.to_string(),
                iat.unix_timestamp(),
                exp.unix_timestamp(),
            );
            let key = state
                .keys()
                .signer(state.settings().access_token_alg)
                .await?;
            let token = key
                .sign(Some("at+jwt"), &claims)
                .map_err(|_| TokenError::new(ErrorCode::ServerError, "signing failed"))?;
            // Recorded for JWTs too, so a plane without keys (admin) can resolve a bearer token
            // by its digest alone.
            let digest = token_digest(&token);
            (token, Some(digest))
        }
        AccessTokenFormat::Opaque => {
            let token = random_token();
            let digest = token_digest(&token);
            (token, Some(digest))
        }
    };
    Ok(Minted {
        token,
        record: NewAccessToken {
            jti,
            token_digest: digest,
            tenant_id: client.tenant_id,
            client_id: client.id,
            user_id: user,
            scope: scope.to_owned(),
            expires_at: exp,
        },
        expires_in,
    })
}

#[allow(clippy::too_many_arguments)]
async fn mint_id_token(
    state: &AuthState,
    client: &OAuthClient,
    user: &User,
    scopes: &Scopes,
    nonce: Option<&str>,
    auth_time: i64,
    session: Option<String>,
    access_token: &str,
) -> Result<String, TokenError> {
    let alg = client.id_token_signed_response_alg;
    let key = state.keys().signer(alg).await?;
    let iat = now().unix_timestamp();
    let at_hash = jose::half_hash(alg, access_token);
    let subject = user.id.to_string();
    let claims = IdTokenClaims {
        issuer: state.issuer(),
        subject: &subject,
        client_id: &client.client_id,
        nonce,
        auth_time,
        issued_at: iat,
        expires_at: iat + client.id_token_ttl_secs,
        at_hash: Some(&at_hash),
        session_id: session.as_deref(),
        user,
        scopes,
    };
    key.sign(Some("JWT"), &claims.to_json())
        .map_err(|_| TokenError::new(ErrorCode::ServerError, "signing failed"))
}

/// The user a grant speaks for (read with the grant), if still allowed to get tokens for
/// `client`.
fn grant_user(client: &OAuthClient, user: Option<User>) -> Result<User, TokenError> {
    user.filter(|u| u.status == UserStatus::Active && u.tenant_id == Some(client.tenant_id))
        .ok_or(TokenError::new(
            ErrorCode::InvalidGrant,
            "the user can no longer sign in",
        ))
}

fn token_response(
    minted: &Minted,
    scope: &str,
    id_token: Option<String>,
    refresh: Option<String>,
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), json!(minted.token));
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("expires_in".into(), json!(minted.expires_in));
    body.insert("scope".into(), json!(scope));
    if let Some(t) = id_token {
        body.insert("id_token".into(), Value::String(t));
    }
    if let Some(r) = refresh {
        body.insert("refresh_token".into(), Value::String(r));
    }
    no_store_json(StatusCode::OK, Value::Object(body))
}

pub async fn token(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    let mut client = None;
    let response = match token_inner(&state, &headers, peer, &form, &mut client).await {
        Ok(r) => {
            // Only the supported grant types get this far: a fixed label vocabulary.
            if let Ok(Some(grant)) = http::single(&form, "grant_type") {
                opentrusty_web::metrics::count(
                    "opentrusty_tokens_issued_total",
                    &[("grant", grant)],
                );
            }
            r
        }
        Err(e) => e.into_response(),
    };
    crate::cors::for_client(response, client)
}

/// Answers a token request; `client` learns the client once it is authenticated, so that a
/// browser-based client can read the answer, errors included.
async fn token_inner(
    state: &AuthState,
    headers: &HeaderMap,
    peer: SocketAddr,
    form: &Form,
    authenticated: &mut Option<opentrusty_core::ClientId>,
) -> Result<Response, TokenError> {
    let grant_type = param(form, "grant_type")?.ok_or(TokenError::new(
        ErrorCode::InvalidRequest,
        "grant_type is required",
    ))?;
    let grant_type = GrantType::parse(grant_type).ok_or(TokenError::new(
        ErrorCode::UnsupportedGrantType,
        "the grant type is not supported",
    ))?;
    let claimed = claimed_client(headers, form)?;
    if grant_type == GrantType::ClientCredentials {
        return client_credentials(state, &claimed, form, headers, peer).await;
    }
    let (access, presented) = client_and_presented(state, &claimed, grant_type, form).await?;
    let client = verify_client(&claimed, access)?;
    *authenticated = Some(client.id);
    require_grant(&client, grant_type)?;
    let origin = http::origin(headers, peer, Some(Actor::Client(client.id)));
    // Client credentials were answered above.
    if grant_type == GrantType::AuthorizationCode {
        authorization_code(state, &client, form, &origin, presented).await
    } else {
        refresh_token(state, &client, form, &origin, presented).await
    }
}

async fn authorization_code(
    state: &AuthState,
    client: &OAuthClient,
    form: &Form,
    origin: &Origin,
    presented: Presented,
) -> Result<Response, TokenError> {
    let invalid = || TokenError::new(ErrorCode::InvalidGrant, "the authorization code is invalid");
    let Presented::Code(digest, grant) = presented else {
        // Missing, or repeated (which is its own error).
        param(form, "code")?;
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "code is required",
        ));
    };
    let mut grant = grant.ok_or_else(invalid)?;
    if grant.used {
        match state.store().revoke_replayed_code(&digest, origin).await? {
            // Its earlier redemption was never delivered and is undone.
            Redemption::Restored => grant.used = false,
            _ => return Err(invalid()),
        }
    }
    if grant.client_id != client.id || grant.expires_at <= now() {
        return Err(invalid());
    }
    // RFC 6749 §4.1.3: required only if the authorization request carried it, and then
    // identical; when present it must match in any case.
    match param(form, "redirect_uri")? {
        Some(given) if given != grant.redirect_uri => {
            return Err(TokenError::new(
                ErrorCode::InvalidGrant,
                "redirect_uri does not match the authorization request",
            ));
        }
        None if grant.redirect_uri_given => {
            return Err(TokenError::new(
                ErrorCode::InvalidRequest,
                "redirect_uri is required: the authorization request carried it",
            ));
        }
        _ => {}
    }
    let verifier = param(form, "code_verifier")?;
    match (&grant.code_challenge, grant.code_challenge_method, verifier) {
        (Some(challenge), Some(PkceMethod::S256), Some(v)) if pkce::verify_s256(v, challenge) => {}
        (None, None, None) => {}
        _ => {
            return Err(TokenError::new(
                ErrorCode::InvalidGrant,
                "PKCE verification failed",
            ));
        }
    }
    let user = grant_user(client, grant.user.take())?;
    let scopes = Scopes::parse(&grant.scope).unwrap_or_default();
    let scope = scopes.to_string();
    let subject = user.id.to_string();
    let minted = mint_access_token(state, client, &subject, Some(user.id), &scope).await?;
    let id_token = if scopes.contains("openid") {
        Some(
            mint_id_token(
                state,
                client,
                &user,
                &scopes,
                grant.nonce.as_deref(),
                grant.auth_time.unix_timestamp(),
                grant.session_id.map(|s| s.to_string()),
                &minted.token,
            )
            .await?,
        )
    } else {
        None
    };
    let refresh = allows_grant(client, GrantType::RefreshToken).then(random_token);
    // The code's scope holds offline_access only if the user consented to it (or the client is
    // first-party): only then does the family outlive the browser session.
    let family = NewTokenFamily {
        offline: scopes.contains("offline_access"),
        tenant_id: client.tenant_id,
        client_id: client.id,
        user_id: Some(user.id),
        session_id: grant.session_id,
        scope: scope.clone(),
        auth_time: Some(grant.auth_time),
        expires_at: now() + time::Duration::seconds(client.refresh_token_ttl_secs),
        refresh_digest: refresh.as_deref().map(token_digest),
    };
    match state
        .store()
        .redeem_authorization_code(&digest, &minted.record, &family, origin)
        .await?
    {
        Redemption::Issued(_) => Ok(token_response(&minted, &scope, id_token, refresh)),
        Redemption::Replayed | Redemption::Invalid | Redemption::Restored => Err(invalid()),
    }
}

async fn refresh_token(
    state: &AuthState,
    client: &OAuthClient,
    form: &Form,
    origin: &Origin,
    presented: Presented,
) -> Result<Response, TokenError> {
    let invalid = || TokenError::new(ErrorCode::InvalidGrant, "the refresh token is invalid");
    let Presented::Refresh(digest, grant) = presented else {
        param(form, "refresh_token")?;
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "refresh_token is required",
        ));
    };
    let mut grant = grant.ok_or_else(invalid)?;
    let at = now();
    if grant.client_id != client.id || grant.family_revoked || grant.expires_at <= at {
        return Err(invalid());
    }
    // Without offline access the family belongs to its browser session and ends with it.
    if !grant.session_allows(at, state.settings().session_idle_secs) {
        return Err(TokenError::new(
            ErrorCode::InvalidGrant,
            "the sign-in this refresh token belongs to has ended",
        ));
    }
    // What the client may still ask for bounds what a refresh grants: a scope removed from
    // the client since the grant is no longer issued.
    let granted = Scopes::parse(&grant.scope)
        .unwrap_or_default()
        .intersection(&Scopes::from_list(&client.allowed_scopes));
    let scopes = requested_scope(form, granted, "a refresh cannot widen the granted scope")?;
    if grant.user_id.is_none() {
        return Err(invalid());
    }
    let user = grant_user(client, grant.user.take())?;
    let scope = scopes.to_string();
    let minted =
        mint_access_token(state, client, &user.id.to_string(), Some(user.id), &scope).await?;
    let id_token = if scopes.contains("openid") {
        Some(
            mint_id_token(
                state,
                client,
                &user,
                &scopes,
                None,
                grant.auth_time.map_or(0, |t| t.unix_timestamp()),
                grant.session_id.map(|s| s.to_string()),
                &minted.token,
            )
            .await?,
        )
    } else {
        None
    };
    let next = random_token();
    if !grant.offline
        && let (Some(session), Some((_, last_seen_at))) = (grant.session_id, grant.session)
    {
        // A refresh is a use of the session it belongs to.
        state
            .store()
            .touch_session(session, last_seen_at, at)
            .await?;
    }
    match state
        .store()
        .rotate_refresh_token(
            &digest,
            &token_digest(&next),
            &minted.record,
            state.settings().refresh_grace_secs,
            origin,
        )
        .await?
    {
        Rotation::Rotated => Ok(token_response(&minted, &scope, id_token, Some(next))),
        Rotation::Reused | Rotation::Invalid => Err(invalid()),
    }
}

/// Decisions on a remembered client, each a read (`find_client_for_issuance`) and a confirmed
/// write; past them an administrator is changing the client right now.
const ISSUANCE_ATTEMPTS: usize = 3;

/// Client credentials, decided on the client this process remembers when it has one. The token
/// is recorded (and only then answered) if the client is still at the revision decided on,
/// active, in an active tenant; when it is not, or when a remembered client refuses the
/// request, the client is read afresh and the request decided again. So nothing older than
/// the write lets a token out, and nothing older than a read refuses one.
async fn client_credentials(
    state: &AuthState,
    claimed: &ClaimedClient,
    form: &Form,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Response, TokenError> {
    let store = state.store();
    let mut fresh = false;
    for _ in 0..ISSUANCE_ATTEMPTS {
        let found = store.find_client_for_issuance(&claimed.id, fresh).await?;
        let decided = match &found {
            Some(f) => client_credentials_scope(claimed, &f.access, form).map(|s| (f, s)),
            None => Err(TokenError::invalid_client()),
        };
        let (found, scope) = match decided {
            Ok(decided) => decided,
            Err(_) if found.as_ref().is_some_and(|f| f.remembered) => {
                fresh = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let client = &found.access.client;
        let origin = http::origin(headers, peer, Some(Actor::Client(client.id)));
        let minted = mint_access_token(state, client, &client.client_id, None, &scope).await?;
        match store
            .issue_client_token(&minted.record, found.access.revision, &origin)
            .await?
        {
            Confirmation::Issued => return Ok(token_response(&minted, &scope, None, None)),
            Confirmation::Stale => fresh = true,
        }
    }
    Err(TokenError::new(
        ErrorCode::TemporarilyUnavailable,
        "the client is being changed; try again",
    ))
}

/// The scope a client-credentials request gets from `access`, or why it gets none.
fn client_credentials_scope(
    claimed: &ClaimedClient,
    access: &ClientAccess,
    form: &Form,
) -> Result<String, TokenError> {
    check_client(claimed, access)?;
    let client = &access.client;
    require_grant(client, GrantType::ClientCredentials)?;
    if client.token_endpoint_auth_method.is_public() {
        return Err(TokenError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        ));
    }
    // User-facing scopes mean nothing without a user.
    let allowed = Scopes::from_list(&client.allowed_scopes).without(&["openid", "offline_access"]);
    let scopes = requested_scope(
        form,
        allowed,
        "the requested scope exceeds what the client may ask for",
    )?;
    Ok(scopes.to_string())
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    /// The Basic credentials parser and the form decoder take raw client input: no panic.
    #[test]
    fn basic_credentials_and_forms_never_panic() {
        let runs = opentrusty_testkit::fuzz(
            "basic+form",
            &[
                b"Basic YWNtZS13ZWI6c2VjcmV0",
                b"Basic JUZGJTAwOiUyNQ==",
                b"grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fa.example",
            ],
            |b| {
                let text = String::from_utf8_lossy(b);
                let _ = basic_credentials(&text);
                let pairs = http::pairs(b);
                let _ = http::single(&pairs, "grant_type");
                let _ = form_urldecode(&text);
            },
        );
        eprintln!("basic+form: {runs} inputs");
    }
}
