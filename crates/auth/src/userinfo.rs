//! UserInfo (OIDC Core §5.3) as an RFC 6750 protected resource: the bearer token from the
//! `Authorization` header or the form body, never both.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::user::{User, UserStatus};
use opentrusty_core::{Timestamp, now};
use opentrusty_oidc::claims;
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::AccessTokenRecord;
use serde_json::Value;

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, FormBody, no_store_json};
use crate::presented_token;

fn malformed_header() -> JsonError {
    JsonError::bearer(ErrorCode::InvalidRequest, "malformed Authorization header")
}

fn invalid_token() -> JsonError {
    JsonError::bearer(ErrorCode::InvalidToken, "the access token is invalid")
}

/// The bearer token of the `Authorization` header; `Err` when the header is there but is not
/// one.
fn bearer_from_header(headers: &HeaderMap) -> Result<Option<String>, JsonError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| malformed_header())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed_header)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed_header());
    }
    Ok(Some(token.trim().to_owned()))
}

pub async fn userinfo_get(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    let token = match bearer_from_header(&headers) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return JsonError::bearer_required("an access token is required").into_response();
        }
        Err(e) => return e.into_response(),
    };
    answer(&state, &token, now()).await
}

pub async fn userinfo_post(
    State(state): State<AuthState>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let from_body = match http::single(&form, "access_token") {
        Ok(v) => v.map(str::to_owned),
        Err(()) => {
            return JsonError::bearer(ErrorCode::InvalidRequest, "repeated access_token")
                .into_response();
        }
    };
    let token = match (bearer_from_header(&headers), from_body) {
        (Ok(Some(_)), Some(_)) => {
            return JsonError::bearer(ErrorCode::InvalidRequest, "send the token one way only")
                .into_response();
        }
        (Ok(Some(t)), None) | (Ok(None), Some(t)) => t,
        (Ok(None), None) => {
            return JsonError::bearer_required("an access token is required").into_response();
        }
        (Err(e), _) => return e.into_response(),
    };
    answer(&state, &token, now()).await
}

/// UserInfo's answer for `token` at `at`, readable by the token's client from its origin.
async fn answer(state: &AuthState, token: &str, at: Timestamp) -> Response {
    let found = match presented_token::key(state, token).await {
        Some(key) => state.store().find_access_token_with_user(key, at).await,
        None => Ok(None),
    };
    let (record, user) = match found {
        Ok(Some((r, user))) if r.active => (r, user),
        Ok(_) => return invalid_token().into_response(),
        Err(e) => return JsonError::from(e).into_response(),
    };
    let client = Some(record.client_id);
    let scopes = Scopes::parse(&record.scope).unwrap_or_default();
    let response = match claims_for(&record, user, &scopes) {
        Ok(body) => no_store_json(StatusCode::OK, body),
        Err(e) => e.into_response(),
    };
    crate::cors::for_client(response, client)
}

/// The claims an active token `record` of `user` releases.
fn claims_for(
    record: &AccessTokenRecord,
    user: Option<User>,
    scopes: &Scopes,
) -> Result<Value, JsonError> {
    let Some(user_id) = record.user_id else {
        return Err(JsonError::bearer(
            ErrorCode::InsufficientScope,
            "the token has no user",
        ));
    };
    if !scopes.contains("openid") {
        return Err(JsonError::bearer(
            ErrorCode::InsufficientScope,
            "the openid scope is required",
        ));
    }
    match user {
        Some(u) if u.id == user_id && u.status == UserStatus::Active => {
            Ok(claims::userinfo(&u, scopes))
        }
        _ => Err(invalid_token()),
    }
}
