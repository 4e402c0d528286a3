//! Token introspection (RFC 7662) for authenticated confidential clients: a token's own client,
//! or a resource server holding `tenant:introspect_tokens` over it (§4), learns about an active
//! access token; a refresh token only to its own client. Everyone else is told "inactive".

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrusty_core::client::OAuthClient;
use opentrusty_core::rbac::{self, Permission, Scope};
use opentrusty_core::secret::token_digest;
use opentrusty_core::{Timestamp, now};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_store::{AccessTokenRecord, Subject};
use serde_json::{Value, json};

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, FormBody, no_store_json};
use crate::presented_token;
use crate::token::authenticate_client_with_access_token;

pub async fn introspect(
    State(state): State<AuthState>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let token = http::single(&form, "token").ok().flatten();
    // The access token is read with the client, in one round trip.
    let key = match token {
        Some(t) => presented_token::key(&state, t).await,
        None => None,
    };
    let (client, record) =
        match authenticate_client_with_access_token(&state, &headers, &form, key).await {
            Ok((c, _)) if c.token_endpoint_auth_method.is_public() => {
                return JsonError::new(
                    ErrorCode::InvalidClient,
                    "introspection requires client authentication",
                )
                .into_response();
            }
            Ok(found) => found,
            Err(e) => return e.into_response(),
        };
    let Some(token) = token else {
        return JsonError::invalid_request("token is required").into_response();
    };
    match answer(&state, &client, token, record, now()).await {
        Ok(body) => no_store_json(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

/// What `caller` learns about `token` at `at` (`record`: the access token it names, if any).
async fn answer(
    state: &AuthState,
    caller: &OAuthClient,
    token: &str,
    record: Option<AccessTokenRecord>,
    at: Timestamp,
) -> Result<Value, JsonError> {
    let inactive = || json!({ "active": false });
    if let Some(r) = record {
        if !(r.active
            && r.tenant_id == caller.tenant_id
            && may_introspect(state, caller, &r).await?)
        {
            return Ok(inactive());
        }
        let sub = r
            .user_id
            .map_or(r.client_public_id.clone(), |u| u.to_string());
        return Ok(json!({
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
        }));
    }
    let found = state
        .store()
        .find_refresh_token_with_client(&token_digest(token))
        .await?;
    Ok(match found {
        // A refresh token is its own client's business alone (RFC 7662 §4).
        Some((g, Some(client_public_id)))
            if !g.family_revoked
                && g.rotated_at.is_none()
                && g.expires_at > at
                && g.client_id == caller.id
                && g.session_allows(at, state.settings().session_idle_secs) =>
        {
            json!({
                "active": true,
                "scope": g.scope,
                "client_id": client_public_id,
                "sub": g.user_id.map(|u| u.to_string()),
                "iss": state.issuer(),
                "exp": g.expires_at.unix_timestamp(),
                "token_type": "refresh_token",
            })
        }
        _ => inactive(),
    })
}

/// Whether `caller` may learn about the active access token `token` of its tenant: it is the
/// token's own client, or a resource server holding `tenant:introspect_tokens` over the
/// token's client.
async fn may_introspect(
    state: &AuthState,
    caller: &OAuthClient,
    token: &AccessTokenRecord,
) -> Result<bool, JsonError> {
    if token.client_id == caller.id {
        return Ok(true);
    }
    let grants = state.store().grants_of(Subject::Client(caller.id)).await?;
    Ok(rbac::allows(
        &grants,
        Permission::TenantIntrospectTokens,
        &Scope::Client {
            tenant: token.tenant_id,
            client: token.client_id,
        },
    ))
}
