//! Signing out: the sign-out page (`/logout`) and RP-initiated logout (`/oauth2/logout`, OpenID
//! Connect RP-Initiated Logout 1.0).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use opentrusty_core::secret::token_digest;
use opentrusty_oidc::redirect::with_params;
use serde_json::Value;

use crate::authorize::{csrf_ok, csrf_value, with_csrf_cookie};
use crate::http::{self, SESSION_COOKIE, see_other};
use crate::{AuthState, pages};

pub async fn logout_page(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    confirm_page(&state, &headers)
}

fn confirm_page(state: &AuthState, headers: &HeaderMap) -> Response {
    let (csrf, fresh) = csrf_value(headers);
    with_csrf_cookie(state, pages::logout_confirm(&csrf), &csrf, fresh)
}

/// Ends the browser's session (if any) and returns the header that clears its cookie.
async fn end_session(state: &AuthState, headers: &HeaderMap, peer: SocketAddr) -> HeaderValue {
    if let Some(cookie) = http::cookie(headers, SESSION_COOKIE) {
        let origin = http::origin(headers, peer, None);
        if let Err(e) = state
            .store()
            .end_session(&token_digest(&cookie), &origin)
            .await
        {
            http::store_failure(&e);
        }
    }
    http::clear_cookie(state, SESSION_COOKIE, true)
}

pub async fn logout_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    if !csrf_ok(
        &state,
        &headers,
        http::single(&form, "csrf_token").ok().flatten(),
    ) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Your sign-out form expired",
            "Reload the page and try again.",
        );
    }
    let clear = end_session(&state, &headers, peer).await;
    let mut page = pages::signed_out();
    page.headers_mut().append(header::SET_COOKIE, clear);
    page
}

pub async fn rp_logout(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    let field = |n: &str| http::single(&pairs, n).ok().flatten();
    // The hint proves which client asks; an expired hint still does.
    let hinted_client = match field("id_token_hint") {
        Some(hint) => match state.keys().verify(hint).await {
            // Only an ID token is a hint; an access token (typ at+jwt) is not.
            Ok((header, claims))
                if header.typ.as_deref() != Some("at+jwt")
                    && claims.get("iss").and_then(Value::as_str) == Some(state.issuer()) =>
            {
                claims.get("aud").and_then(|a| match a {
                    Value::String(s) => Some(s.clone()),
                    Value::Array(v) if v.len() == 1 => v[0].as_str().map(str::to_owned),
                    _ => None,
                })
            }
            _ => None,
        },
        None => None,
    };
    let Some(client_id) =
        hinted_client.filter(|c| field("client_id").is_none_or(|given| given == c))
    else {
        // Without proof of which application asks, the user confirms and is not redirected.
        return confirm_page(&state, &headers);
    };
    let clear = end_session(&state, &headers, peer).await;
    let target = match (
        field("post_logout_redirect_uri"),
        state.store().find_client(&client_id).await,
    ) {
        (Some(uri), Ok(Some(client)))
            if client.post_logout_redirect_uris.iter().any(|u| u == uri) =>
        {
            Some(match field("state") {
                Some(s) => with_params(uri, &[("state", s)]),
                None => uri.to_owned(),
            })
        }
        _ => None,
    };
    let mut response = match target {
        Some(uri) => see_other(&uri),
        None => pages::signed_out(),
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}
