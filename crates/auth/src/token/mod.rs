//! The token endpoint (RFC 6749 §3.2). The handler decodes the request, authenticates the
//! client (`client_auth`), hands the grant's typed request and the time to the grant's module,
//! and renders what it issued. Adding a grant type: its `GrantType` variant, a module here with
//! its `Request` and `exchange`, and its arm in [`exchange`].

mod authorization_code;
mod client_auth;
mod client_credentials;
mod refresh_token;
#[cfg(test)]
mod test_world;

pub(crate) use client_auth::{authenticate_client, authenticate_client_with_access_token};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::client::{AccessTokenFormat, GrantType, OAuthClient};
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::user::{User, UserStatus};
use opentrusty_core::{Timestamp, UserId, now};
use opentrusty_oidc::claims::{IdTokenClaims, access_token_claims};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::jose;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{ClientAccess, CodeGrant, NewAccessToken, RefreshGrant};
use serde_json::{Value, json};

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, Form, FormBody, no_store_json};
use client_auth::ClaimedClient;

/// The single value of `name`, or `invalid_request` when it is repeated.
fn param<'a>(form: &'a Form, name: &str) -> Result<Option<&'a str>, JsonError> {
    http::single(form, name).map_err(|()| JsonError::repeated())
}

/// What a grant issued, for the handler to render (RFC 6749 §5.1).
struct Issued {
    minted: Minted,
    scope: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
}

/// The code or refresh token a request presents, read in the same round trip as its client:
/// its digest and its grant (`None` when no such code or token exists).
enum Presented {
    Nothing,
    Code([u8; 32], Option<CodeGrant>),
    Refresh([u8; 32], Option<RefreshGrant>),
}

impl Presented {
    fn code(self) -> Option<([u8; 32], Option<CodeGrant>)> {
        match self {
            Presented::Code(digest, grant) => Some((digest, grant)),
            _ => None,
        }
    }

    fn refresh(self) -> Option<([u8; 32], Option<RefreshGrant>)> {
        match self {
            Presented::Refresh(digest, grant) => Some((digest, grant)),
            _ => None,
        }
    }
}

/// What a request presents to be looked up with its client: a code's or a refresh token's
/// digest.
enum Lookup {
    Code([u8; 32]),
    Refresh([u8; 32]),
}

/// Looks up the client and what the request presents, in one round trip.
async fn client_and_presented(
    state: &AuthState,
    claimed: &ClaimedClient,
    lookup: Option<Lookup>,
) -> Result<(Option<ClientAccess>, Presented), JsonError> {
    let store = state.store();
    Ok(match lookup {
        Some(Lookup::Code(digest)) => {
            match store.find_client_with_code(&claimed.id, &digest).await? {
                Some((access, grant)) => (Some(access), Presented::Code(digest, grant)),
                None => (None, Presented::Nothing),
            }
        }
        Some(Lookup::Refresh(digest)) => {
            match store
                .find_client_with_refresh_token(&claimed.id, &digest)
                .await?
            {
                Some((access, grant)) => (Some(access), Presented::Refresh(digest, grant)),
                None => (None, Presented::Nothing),
            }
        }
        None => (
            store.find_client_for_request(&claimed.id).await?,
            Presented::Nothing,
        ),
    })
}

/// The scope asked for when given (it must stay within `ceiling`), else `ceiling` itself.
fn requested_scope(
    asked: Option<&str>,
    ceiling: Scopes,
    too_wide: &'static str,
) -> Result<Scopes, JsonError> {
    let Some(asked) = asked else {
        return Ok(ceiling);
    };
    let asked = Scopes::parse(asked).ok_or(JsonError::new(
        ErrorCode::InvalidScope,
        "the scope is malformed",
    ))?;
    if !asked.is_subset(&ceiling) {
        return Err(JsonError::new(ErrorCode::InvalidScope, too_wide));
    }
    Ok(asked)
}

/// `unauthorized_client` unless the client is registered for `grant`.
fn require_grant(client: &OAuthClient, grant: GrantType) -> Result<(), JsonError> {
    if client.grant_types.contains(&grant) {
        Ok(())
    } else {
        Err(JsonError::new(
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
    iat: Timestamp,
) -> Result<Minted, JsonError> {
    let jti = uuid::Uuid::now_v7();
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
                .map_err(|_| JsonError::new(ErrorCode::ServerError, "signing failed"))?;
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
    at: Timestamp,
) -> Result<String, JsonError> {
    let alg = client.id_token_signed_response_alg;
    let key = state.keys().signer(alg).await?;
    let iat = at.unix_timestamp();
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
        .map_err(|_| JsonError::new(ErrorCode::ServerError, "signing failed"))
}

/// The sign-in an ID token speaks of: the request's nonce, when the user signed in, and the
/// browser session (`sid`).
struct SignInContext<'a> {
    nonce: Option<&'a str>,
    auth_time: i64,
    session: Option<opentrusty_core::SessionId>,
}

/// The access token for `user` with `scopes`, and the ID token beside it when `openid` was
/// granted.
async fn mint_user_tokens(
    state: &AuthState,
    client: &OAuthClient,
    user: &User,
    scopes: &Scopes,
    sign_in: SignInContext<'_>,
    at: Timestamp,
) -> Result<(Minted, Option<String>), JsonError> {
    let scope = scopes.to_string();
    let subject = user.id.to_string();
    let minted = mint_access_token(state, client, &subject, Some(user.id), &scope, at).await?;
    let id_token = if scopes.contains("openid") {
        Some(
            mint_id_token(
                state,
                client,
                user,
                scopes,
                sign_in.nonce,
                sign_in.auth_time,
                sign_in.session.map(|s| s.to_string()),
                &minted.token,
                at,
            )
            .await?,
        )
    } else {
        None
    };
    Ok((minted, id_token))
}

/// The user a grant speaks for (read with the grant), if still allowed to get tokens for
/// `client`.
fn grant_user(client: &OAuthClient, user: Option<User>) -> Result<User, JsonError> {
    user.filter(|u| u.status == UserStatus::Active && u.tenant_id == Some(client.tenant_id))
        .ok_or(JsonError::new(
            ErrorCode::InvalidGrant,
            "the user can no longer sign in",
        ))
}

fn token_response(issued: Issued) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), json!(issued.minted.token));
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("expires_in".into(), json!(issued.minted.expires_in));
    body.insert("scope".into(), json!(issued.scope));
    if let Some(t) = issued.id_token {
        body.insert("id_token".into(), Value::String(t));
    }
    if let Some(r) = issued.refresh_token {
        body.insert("refresh_token".into(), Value::String(r));
    }
    no_store_json(StatusCode::OK, Value::Object(body))
}

pub async fn token(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let mut client = None;
    let origin = http::origin(&headers, peer, None);
    let response = match exchange(&state, &headers, &form, origin, &mut client, now()).await {
        Ok((grant, issued)) => {
            opentrusty_web::metrics::count(
                "opentrusty_tokens_issued_total",
                &[("grant", grant.as_str())],
            );
            token_response(issued)
        }
        Err(e) => e.into_response(),
    };
    crate::cors::for_client(response, client)
}

/// Decides a token request at `at`: the grant type, the client's claim, then the grant's own
/// request and rules. `authenticated` learns the client once it is authenticated, so that a
/// browser-based client can read the answer, errors included. `origin` is the caller's,
/// without an actor yet.
async fn exchange(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
    origin: Origin,
    authenticated: &mut Option<opentrusty_core::ClientId>,
    at: Timestamp,
) -> Result<(GrantType, Issued), JsonError> {
    let grant_type =
        param(form, "grant_type")?.ok_or(JsonError::invalid_request("grant_type is required"))?;
    let grant_type = GrantType::parse(grant_type).ok_or(JsonError::new(
        ErrorCode::UnsupportedGrantType,
        "the grant type is not supported",
    ))?;
    let claimed = ClaimedClient::decode(headers, form)?;
    let issued = match grant_type {
        GrantType::ClientCredentials => {
            let request = client_credentials::Request::decode(form)?;
            client_credentials::exchange(state, &claimed, request, origin, at).await?
        }
        // The grant's request is decoded first, to look up its code with the client, but its
        // faults are answered only once the client is authenticated.
        GrantType::AuthorizationCode => {
            let request = authorization_code::Request::decode(form);
            let lookup = request
                .as_ref()
                .ok()
                .map(|r| Lookup::Code(token_digest(&r.code)));
            let (client, presented) =
                authenticate(state, &claimed, grant_type, lookup, authenticated).await?;
            let request = request?;
            let origin = origin.by(Actor::Client(client.id));
            authorization_code::exchange(state, &client, request, presented.code(), &origin, at)
                .await?
        }
        GrantType::RefreshToken => {
            let request = refresh_token::Request::decode(form);
            let lookup =
                (request.as_ref().ok()).map(|r| Lookup::Refresh(token_digest(&r.refresh_token)));
            let (client, presented) =
                authenticate(state, &claimed, grant_type, lookup, authenticated).await?;
            let request = request?;
            let origin = origin.by(Actor::Client(client.id));
            refresh_token::exchange(state, &client, request, presented.refresh(), &origin, at)
                .await?
        }
    };
    Ok((grant_type, issued))
}

/// The client of a grant that presents a code or a refresh token, authenticated and registered
/// for `grant_type`, with what the request presents (read in the same round trip).
async fn authenticate(
    state: &AuthState,
    claimed: &ClaimedClient,
    grant_type: GrantType,
    lookup: Option<Lookup>,
    authenticated: &mut Option<opentrusty_core::ClientId>,
) -> Result<(OAuthClient, Presented), JsonError> {
    let (access, presented) = client_and_presented(state, claimed, lookup).await?;
    let client = claimed.verify(access)?;
    *authenticated = Some(client.id);
    require_grant(&client, grant_type)?;
    Ok((client, presented))
}
