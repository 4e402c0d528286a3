//! Signing out: the sign-out page (`/logout`) and RP-initiated logout (`/oauth2/logout`, OpenID
//! Connect RP-Initiated Logout 1.0). A logout request ends the browser's session at once only
//! when its `id_token_hint` was issued to this browser's session and user; otherwise the user
//! confirms first, and only then is the browser sent back to the application.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::secret::token_digest;
use opentrusty_core::session::Session;
use opentrusty_oidc::redirect::with_params;
use serde_json::Value;

use crate::browser_session::current_session;
use crate::csrf::{CsrfForm, FormPage, csrf_value, with_csrf_cookie};
use crate::error::PageError;
use crate::http::{self, SESSION_COOKIE, see_other};
use crate::{AuthState, pages};

/// Longest `state` echoed back to the application.
const MAX_STATE_LEN: usize = 2048;

/// What a verified `id_token_hint` says: the client it was issued to, its user and session.
struct Hint {
    client_id: String,
    subject: Option<String>,
    session: Option<String>,
}

impl Hint {
    /// Whether the hint was issued to `session`'s user within that very session (its `sid`).
    fn belongs_to(&self, session: &Session) -> bool {
        self.subject.as_deref() == Some(session.user_id.to_string().as_str())
            && self.session.as_deref() == Some(session.id.to_string().as_str())
    }
}

/// A logout request's parameters, from the query (`/oauth2/logout`) or from the confirmation
/// form that carries them on (`/logout`).
struct LogoutParams<'a> {
    id_token_hint: Option<&'a str>,
    client_id: Option<&'a str>,
    post_logout_redirect_uri: Option<&'a str>,
    state: Option<&'a str>,
}

impl<'a> LogoutParams<'a> {
    fn from_pairs(pairs: &'a [(String, String)]) -> Self {
        let field = |n: &str| {
            http::single(pairs, n)
                .ok()
                .flatten()
                .filter(|v| !v.is_empty())
        };
        Self {
            id_token_hint: field("id_token_hint"),
            client_id: field("client_id"),
            post_logout_redirect_uri: field("post_logout_redirect_uri"),
            state: field("state").filter(|s| s.len() <= MAX_STATE_LEN),
        }
    }

    /// The fields the confirmation form carries on, as (name, value).
    fn carried(&self) -> Vec<(&'static str, &'a str)> {
        [
            ("id_token_hint", self.id_token_hint),
            ("client_id", self.client_id),
            ("post_logout_redirect_uri", self.post_logout_redirect_uri),
            ("state", self.state),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// The hint, if it is an ID token this issuer signed (an expired one still identifies its
/// client and session) and agrees with `client_id` when both are given.
async fn verified_hint(state: &AuthState, params: &LogoutParams<'_>) -> Option<Hint> {
    let (header, claims) = state.keys().verify(params.id_token_hint?).await.ok()?;
    // Only an ID token is a hint; an access token (typ at+jwt) is not.
    if header.typ.as_deref() == Some("at+jwt")
        || claims.get("iss").and_then(Value::as_str) != Some(state.issuer())
    {
        return None;
    }
    let client_id = match claims.get("aud")? {
        Value::String(s) => s.clone(),
        Value::Array(v) if v.len() == 1 => v[0].as_str()?.to_owned(),
        _ => return None,
    };
    if params.client_id.is_some_and(|given| given != client_id) {
        return None;
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(Hint {
        client_id,
        subject: text("sub"),
        session: text("sid"),
    })
}

/// Where the browser goes after signing out: the `post_logout_redirect_uri` if the hint's
/// client registered exactly it (with `state`), else nowhere.
async fn return_address(
    state: &AuthState,
    params: &LogoutParams<'_>,
    hint: Option<&Hint>,
) -> Option<String> {
    let (uri, hint) = (params.post_logout_redirect_uri?, hint?);
    let client = state.store().find_client(&hint.client_id).await.ok()??;
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return None;
    }
    Some(match params.state {
        Some(s) => with_params(uri, &[("state", s)]),
        None => uri.to_owned(),
    })
}

pub async fn logout_page(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    confirm_page(&state, &headers, &[])
}

fn confirm_page(state: &AuthState, headers: &HeaderMap, carried: &[(&str, &str)]) -> Response {
    let (csrf, fresh) = csrf_value(headers);
    with_csrf_cookie(state, pages::logout_confirm(&csrf, carried), &csrf, fresh)
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
            crate::error::report_storage_failure(&e);
        }
    }
    http::clear_cookie(state, SESSION_COOKIE, true)
}

/// Ends the session and answers with the return address or the signed-out page.
async fn sign_out(
    state: &AuthState,
    headers: &HeaderMap,
    peer: SocketAddr,
    params: &LogoutParams<'_>,
    hint: Option<&Hint>,
) -> Response {
    let clear = end_session(state, headers, peer).await;
    let mut response = match return_address(state, params, hint).await {
        Some(uri) => see_other(&uri),
        None => pages::signed_out(),
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

/// The confirmation form: the user chose to sign out (of the session this browser holds now),
/// and the logout request it carries decides where the browser goes next.
/// The sign-out confirmation's form.
pub(crate) struct LogoutPage;

impl FormPage for LogoutPage {
    const EXPIRED_TITLE: &'static str = "Your sign-out form expired";
    const EXPIRED_MESSAGE: &'static str = "Reload the page and try again.";
}

pub async fn logout_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CsrfForm(form, _): CsrfForm<LogoutPage>,
) -> Response {
    let params = LogoutParams::from_pairs(&form);
    let hint = verified_hint(&state, &params).await;
    sign_out(&state, &headers, peer, &params, hint.as_ref()).await
}

pub async fn rp_logout(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    let params = LogoutParams::from_pairs(&pairs);
    let hint = verified_hint(&state, &params).await;
    let session = match current_session(&state, &headers).await {
        Ok(s) => s.map(|(s, _)| s),
        Err(e) => {
            return PageError::storage(
                e,
                "The sign-out could not be completed. Please try again in a moment.",
            )
            .into_response();
        }
    };
    let confirmed = match (&session, &hint) {
        // Nothing to end: the application may have the browser back.
        (None, Some(_)) => true,
        (Some(session), Some(hint)) => hint.belongs_to(session),
        (_, None) => false,
    };
    if confirmed {
        return sign_out(&state, &headers, peer, &params, hint.as_ref()).await;
    }
    // Another user's or another session's hint, or none: the user decides, and is not sent
    // anywhere without deciding.
    confirm_page(&state, &headers, &params.carried())
}
