//! Discovery and JWKS, and the endpoints that take a token back: UserInfo (OIDC Core §5.3,
//! RFC 6750), revocation (RFC 7009) and introspection (RFC 7662).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::Actor;
use opentrusty_core::now;
use opentrusty_core::secret::token_digest;
use opentrusty_core::user::UserStatus;
use opentrusty_oidc::claims;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{AccessTokenKey, AccessTokenRecord};
use serde_json::{Value, json};

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, no_store_json};
use crate::token::{authenticate_client, authenticate_client_with_access_token};

fn public_json(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn discovery(State(state): State<AuthState>) -> Response {
    public_json(claims::discovery(state.issuer()).to_string())
}

pub async fn jwks(State(state): State<AuthState>) -> Response {
    match state.keys().jwks().await {
        Ok(doc) => public_json(doc.as_ref().clone()),
        Err(e) => e.into_response(),
    }
}

/// Resolves a presented access token (JWT or opaque) to its record, whatever its state.
pub(crate) async fn resolve_access_token(
    state: &AuthState,
    token: &str,
) -> Result<Option<AccessTokenRecord>, JsonError> {
    let found = match access_token_key(state, token).await {
        Some(AccessTokenKey::Jti(jti)) => state.store().find_access_token(jti, now()).await?,
        Some(AccessTokenKey::Digest(digest)) => {
            state
                .store()
                .find_access_token_by_digest(&digest, now())
                .await?
        }
        None => None,
    };
    Ok(found)
}

/// Where to look a presented access token up; `None` for a JWT that is not one of ours (bad
/// signature, wrong type or issuer, no `jti`).
async fn access_token_key(state: &AuthState, token: &str) -> Option<AccessTokenKey> {
    if !token.contains('.') {
        return Some(AccessTokenKey::Digest(token_digest(token)));
    }
    let (header, claims) = state.keys().verify(token).await.ok()?;
    if header.typ.as_deref() != Some("at+jwt")
        || claims.get("iss").and_then(Value::as_str) != Some(state.issuer())
    {
        return None;
    }
    claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::parse_str(j).ok())
        .map(AccessTokenKey::Jti)
}

fn bearer_error(status: StatusCode, error: Option<&str>, description: &str) -> Response {
    let challenge = match error {
        Some(e) => format!(
            "Bearer realm=\"opentrusty\", error=\"{e}\", error_description=\"{description}\""
        ),
        None => "Bearer realm=\"opentrusty\"".to_owned(),
    };
    let mut r = no_store_json(
        status,
        json!({ "error": error.unwrap_or("invalid_request"), "error_description": description }),
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn bearer_from_header(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(());
    }
    Ok(Some(token.trim().to_owned()))
}

pub async fn userinfo_get(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    match bearer_from_header(&headers) {
        Ok(Some(t)) => userinfo(&state, &t).await,
        Ok(None) => bearer_error(
            StatusCode::UNAUTHORIZED,
            None,
            "an access token is required",
        ),
        Err(()) => bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "malformed Authorization header",
        ),
    }
}

pub async fn userinfo_post(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    let from_body = match http::single(&form, "access_token") {
        Ok(v) => v.map(str::to_owned),
        Err(()) => {
            return bearer_error(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                "repeated access_token",
            );
        }
    };
    match (bearer_from_header(&headers), from_body) {
        (Ok(Some(_)), Some(_)) => bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "send the token one way only",
        ),
        (Ok(Some(t)), None) | (Ok(None), Some(t)) => userinfo(&state, &t).await,
        (Ok(None), None) => bearer_error(
            StatusCode::UNAUTHORIZED,
            None,
            "an access token is required",
        ),
        (Err(()), _) => bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "malformed Authorization header",
        ),
    }
}

async fn userinfo(state: &AuthState, token: &str) -> Response {
    let invalid = || {
        bearer_error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            "the access token is invalid",
        )
    };
    let Some(key) = access_token_key(state, token).await else {
        return invalid();
    };
    let (record, user) = match state.store().find_access_token_with_user(key, now()).await {
        Ok(Some((r, user))) if r.active => (r, user),
        Ok(_) => return invalid(),
        Err(e) => return JsonError::from(e).into_response(),
    };
    let client = Some(record.client_id);
    crate::cors::for_client(userinfo_for(&record, user, &scopes_of(&record)), client)
}

fn scopes_of(record: &AccessTokenRecord) -> Scopes {
    Scopes::parse(&record.scope).unwrap_or_default()
}

/// UserInfo's answer for an active token `record` of `user`.
fn userinfo_for(
    record: &AccessTokenRecord,
    user: Option<opentrusty_core::user::User>,
    scopes: &Scopes,
) -> Response {
    let invalid = || {
        bearer_error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            "the access token is invalid",
        )
    };
    let Some(user_id) = record.user_id else {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the token has no user",
        );
    };
    if !scopes.contains("openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the openid scope is required",
        );
    }
    let user = match user {
        Some(u) if u.id == user_id && u.status == UserStatus::Active => u,
        _ => return invalid(),
    };
    no_store_json(StatusCode::OK, claims::userinfo(&user, scopes))
}

pub async fn revoke(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    let client = match authenticate_client(&state, &headers, &form).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let response = revoke_for(&state, &client, &headers, peer, &form).await;
    crate::cors::for_client(response, Some(client.id))
}

/// Revocation's answer for the authenticated `client`.
async fn revoke_for(
    state: &AuthState,
    client: &opentrusty_core::client::OAuthClient,
    headers: &HeaderMap,
    peer: SocketAddr,
    form: &[(String, String)],
) -> Response {
    let Ok(Some(token)) = http::single(form, "token") else {
        return JsonError::new(
            opentrusty_oidc::error::ErrorCode::InvalidRequest,
            "token is required",
        )
        .into_response();
    };
    let origin = http::origin(headers, peer, Some(Actor::Client(client.id)));
    let hint = http::single(form, "token_type_hint").ok().flatten();
    let try_refresh = || async {
        state
            .store()
            .revoke_refresh_token(&token_digest(token), client.id, &origin)
            .await
    };
    let result = async {
        if hint == Some("refresh_token") && try_refresh().await? {
            return Ok::<(), JsonError>(());
        }
        if let Some(record) = resolve_access_token(state, token).await? {
            if record.client_id == client.id {
                state
                    .store()
                    .revoke_access_token(record.jti, client.id, &origin)
                    .await?;
            }
            return Ok(());
        }
        if hint != Some("refresh_token") {
            try_refresh().await?;
        }
        Ok(())
    }
    .await;
    match result {
        // RFC 7009 §2.2: unknown tokens, and tokens of other clients, are answered the same.
        Ok(()) => no_store_json(StatusCode::OK, json!({})),
        Err(e) => e.into_response(),
    }
}

pub async fn introspect(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    let token = http::single(&form, "token").ok().flatten();
    let key = match token {
        Some(t) => access_token_key(&state, t).await,
        None => None,
    };
    let (client, record) =
        match authenticate_client_with_access_token(&state, &headers, &form, key).await {
            Ok((c, _)) if c.token_endpoint_auth_method.is_public() => {
                return JsonError::new(
                    opentrusty_oidc::error::ErrorCode::InvalidClient,
                    "introspection requires client authentication",
                )
                .into_response();
            }
            Ok(found) => found,
            Err(e) => return e.into_response(),
        };
    let Some(token) = token else {
        return JsonError::new(
            opentrusty_oidc::error::ErrorCode::InvalidRequest,
            "token is required",
        )
        .into_response();
    };
    let inactive = || no_store_json(StatusCode::OK, json!({ "active": false }));
    let may_know = match &record {
        Some(r) if r.active && r.tenant_id == client.tenant_id => {
            match may_introspect(&state, &client, r).await {
                Ok(may) => may,
                Err(e) => return e.into_response(),
            }
        }
        _ => false,
    };
    match record {
        Some(r) if may_know => {
            let sub = r
                .user_id
                .map_or(r.client_public_id.clone(), |u| u.to_string());
            return no_store_json(
                StatusCode::OK,
                json!({
                    "active": true,
                    "scope": r.scope,
                    "client_id": r.client_public_id,
                    "sub": sub,
                    "aud": r.client_public_id,
                    "iss": state.issuer(),
                    "exp": r.expires_at.unix_timestamp(),
                    "iat": r.issued_at.unix_timestamp(),
                    "jti": r.jti.to_string(),
                    "token_type": "Bearer",
                }),
            );
        }
        Some(_) => return inactive(),
        None => {}
    }
    let found = state
        .store()
        .find_refresh_token_with_client(&token_digest(token))
        .await;
    match found {
        // A refresh token is its own client's business alone (RFC 7662 §4).
        Ok(Some((g, Some(client_public_id))))
            if !g.family_revoked
                && g.rotated_at.is_none()
                && g.expires_at > now()
                && g.client_id == client.id
                && g.session_allows(now(), state.settings().session_idle_secs) =>
        {
            no_store_json(
                StatusCode::OK,
                json!({
                    "active": true,
                    "scope": g.scope,
                    "client_id": client_public_id,
                    "sub": g.user_id.map(|u| u.to_string()),
                    "iss": state.issuer(),
                    "exp": g.expires_at.unix_timestamp(),
                    "token_type": "refresh_token",
                }),
            )
        }
        Ok(_) => inactive(),
        Err(e) => JsonError::from(e).into_response(),
    }
}

/// Whether `caller` may learn about the active access token `token` of its tenant: it is the
/// token's own client, or a resource server holding `tenant:introspect_tokens` over the
/// token's client (RFC 7662 §4). Everyone else is told the token is inactive.
async fn may_introspect(
    state: &AuthState,
    caller: &opentrusty_core::client::OAuthClient,
    token: &AccessTokenRecord,
) -> Result<bool, JsonError> {
    if token.client_id == caller.id {
        return Ok(true);
    }
    let grants = state
        .store()
        .grants_of(opentrusty_store::Subject::Client(caller.id))
        .await?;
    Ok(opentrusty_core::rbac::allows(
        &grants,
        opentrusty_core::rbac::Permission::TenantIntrospectTokens,
        &opentrusty_core::rbac::Scope::Client {
            tenant: token.tenant_id,
            client: token.client_id,
        },
    ))
}
