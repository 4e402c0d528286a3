//! Token revocation (RFC 7009): a client revokes its own access or refresh tokens; any other
//! token, or one that does not exist, is answered the same (§2.2).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::client::OAuthClient;
use opentrusty_core::secret::token_digest;
use opentrusty_core::{Timestamp, now};
use serde_json::json;

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, Form, FormBody, no_store_json};
use crate::presented_token;
use crate::token::authenticate_client;

/// The kind of token a client says it revokes (`token_type_hint`, RFC 7009 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

/// A revocation request.
struct Request {
    token: String,
    hint: Option<TokenTypeHint>,
}

impl Request {
    fn decode(form: &Form) -> Result<Request, JsonError> {
        let Ok(Some(token)) = http::single(form, "token") else {
            return Err(JsonError::invalid_request("token is required"));
        };
        // §2.1: a hint the server does not know is no error; every kind is searched anyway.
        let hint = match http::single(form, "token_type_hint").ok().flatten() {
            Some("access_token") => Some(TokenTypeHint::AccessToken),
            Some("refresh_token") => Some(TokenTypeHint::RefreshToken),
            _ => None,
        };
        Ok(Request {
            token: token.to_owned(),
            hint,
        })
    }
}

pub async fn revoke(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let client = match authenticate_client(&state, &headers, &form).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let origin = http::origin(&headers, peer, Some(Actor::Client(client.id)));
    let result = match Request::decode(&form) {
        Ok(request) => revoke_for(&state, &client, request, &origin, now()).await,
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(()) => no_store_json(StatusCode::OK, json!({})),
        Err(e) => e.into_response(),
    };
    crate::cors::for_client(response, Some(client.id))
}

/// Revokes what `request` names if it is the authenticated `client`'s, at `at`. The hint says
/// where to look first.
async fn revoke_for(
    state: &AuthState,
    client: &OAuthClient,
    request: Request,
    origin: &Origin,
    at: Timestamp,
) -> Result<(), JsonError> {
    let token = request.token.as_str();
    let refresh_first = request.hint == Some(TokenTypeHint::RefreshToken);
    let try_refresh = || async {
        state
            .store()
            .revoke_refresh_token(&token_digest(token), client.id, origin)
            .await
    };
    if refresh_first && try_refresh().await? {
        return Ok(());
    }
    if let Some(record) = presented_token::resolve(state, token, at).await? {
        if record.client_id == client.id {
            state
                .store()
                .revoke_access_token(record.jti, client.id, origin)
                .await?;
        }
        return Ok(());
    }
    if !refresh_first {
        try_refresh().await?;
    }
    Ok(())
}
