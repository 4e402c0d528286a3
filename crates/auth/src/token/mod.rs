//! The token endpoint (RFC 6749 §3.2) and client authentication (§2.3), shared with
//! revocation and introspection. Each grant is a module of its own: its rules, the tokens it
//! issues and what it records.

mod authorization_code;
mod client_credentials;
mod refresh_token;

use authorization_code::authorization_code;
use client_credentials::client_credentials;
use refresh_token::refresh_token;

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
