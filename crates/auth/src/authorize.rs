//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) and where a valid request
//! goes next: the sign-in page (`login`), the consent page (`consent`) or back to the client
//! with a code. The pending request travels as its own query string (in `return_to` and in the
//! consent form) and is validated again in full at every step, so nothing a browser carries
//! between steps is trusted.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::Actor;
use opentrusty_core::client::OAuthClient;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::session::Session;
use opentrusty_core::{Timestamp, UserId, now};
use opentrusty_oidc::authorize::{AuthorizeParams, AuthorizeRequest, Rejection, validate};
use opentrusty_oidc::error::{ErrorCode, OAuthError};
use opentrusty_oidc::redirect::with_params;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{NewAuthorizationCode, StoreError};

use crate::browser_session::{SignIn, current_session};
use crate::error::PageError;
use crate::http::{self, see_other};
use crate::{AuthState, pages};

pub(crate) const AUTHORIZE_PATH: &str = "/oauth2/authorize";

pub async fn authorize_get(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    authorize(&state, &headers, peer, pairs).await
}

pub async fn authorize_post(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorize(&state, &headers, peer, http::pairs(&body)).await
}

/// Re-encodes request pairs, dropping `prompt=<drop>` (a prompt the user has just satisfied).
pub(crate) fn encode(pairs: &[(String, String)], drop_prompt: Option<&str>) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if k == "prompt"
            && let Some(d) = drop_prompt
        {
            let kept: Vec<&str> = v.split(' ').filter(|p| !p.is_empty() && *p != d).collect();
            if !kept.is_empty() {
                ser.append_pair(k, &kept.join(" "));
            }
            continue;
        }
        ser.append_pair(k, v);
    }
    ser.finish()
}

pub(crate) fn error_redirect(
    state: &AuthState,
    redirect_uri: &str,
    st: Option<&str>,
    err: &OAuthError,
) -> Response {
    let mut params = vec![
        ("error", err.code.as_str()),
        ("error_description", err.description.as_str()),
    ];
    if let Some(s) = st {
        params.push(("state", s));
    }
    params.push(("iss", state.issuer()));
    see_other(&with_params(redirect_uri, &params))
}

/// The database failing mid-flow, reported to the client as `temporarily_unavailable`.
fn unavailable(state: &AuthState, request: &AuthorizeRequest, e: &StoreError) -> Response {
    crate::error::report_storage_failure(e);
    error_redirect(
        state,
        &request.redirect_uri,
        request.state.as_deref(),
        &OAuthError::new(ErrorCode::TemporarilyUnavailable, "try again later"),
    )
}

pub(crate) fn storage_page(e: StoreError) -> Response {
    PageError::storage(
        e,
        "The sign-in service could not complete your request. Please try again in a moment.",
    )
    .into_response()
}

/// The client named by `client_id` and whether it may be used now (client active, tenant
/// active).
pub(crate) async fn load_client(
    state: &AuthState,
    client_id: Option<&str>,
) -> Result<(Option<OAuthClient>, bool), StoreError> {
    let Some(id) = client_id else {
        return Ok((None, false));
    };
    Ok(match state.store().find_client_for_request(id).await? {
        Some(access) => (Some(access.client), access.usable),
        None => (None, false),
    })
}

fn too_old(auth_time: Timestamp, max_age: Option<i64>) -> bool {
    max_age.is_some_and(|m| (now() - auth_time).whole_seconds() > m)
}

async fn authorize(
    state: &AuthState,
    headers: &HeaderMap,
    peer: SocketAddr,
    pairs: Vec<(String, String)>,
) -> Response {
    let params = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (client, usable) = match load_client(state, params.client_id.as_deref()).await {
        Ok(c) => c,
        Err(e) => return storage_page(e),
    };
    let (client, request) = match checked_request(state, &params, client, usable) {
        Ok(checked) => checked,
        Err(answer) => return *answer,
    };
    let session = match current_session(state, headers).await {
        // A session of another tenant does not sign anyone in to this client.
        Ok(s) => s
            .map(|(s, _)| s)
            .filter(|s| s.tenant_id == Some(client.tenant_id)),
        Err(e) => return unavailable(state, &request, &e),
    };
    proceed(state, headers, peer, &pairs, &client, &request, session).await
}

/// The validated request and its client, or the answer that refuses it: an error page when
/// the client or redirect URI cannot be trusted, else an error redirect.
fn checked_request(
    state: &AuthState,
    params: &AuthorizeParams,
    client: Option<OAuthClient>,
    usable: bool,
) -> Result<(OAuthClient, AuthorizeRequest), Box<Response>> {
    let request = match validate(params, client.as_ref(), usable) {
        Ok(r) => r,
        Err(Rejection::Page(message)) => {
            return Err(Box::new(pages::error(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                message,
            )));
        }
        Err(Rejection::Redirect {
            redirect_uri,
            state: st,
            error,
        }) => {
            return Err(Box::new(error_redirect(
                state,
                &redirect_uri,
                st.as_deref(),
                &error,
            )));
        }
    };
    let Some(client) = client else {
        return Err(Box::new(pages::error(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "Unknown application.",
        )));
    };
    Ok((client, request))
}

/// Takes a valid request on from the browser's session (`None`: not signed in to the client's
/// tenant): to the sign-in page, to the consent page, or back to the client with a code.
async fn proceed(
    state: &AuthState,
    headers: &HeaderMap,
    peer: SocketAddr,
    pairs: &[(String, String)],
    client: &OAuthClient,
    request: &AuthorizeRequest,
    session: Option<Session>,
) -> Response {
    let signed_in = session.map(|s| (s.user_id, s.auth_time, s));
    match next_step(state, pairs, client, request, signed_in).await {
        Next::Answer(answer) => answer,
        Next::Code(session) => issue_code(state, headers, peer, client, request, &session).await,
    }
}

/// Where a valid request goes next.
enum Next<S> {
    /// Sign-in page, consent page or error redirect.
    Answer(Response),
    /// Back to the client with a code, for the signed-in user's `S` (their session).
    Code(S),
}

/// Decides [`Next`] for a request whose browser is signed in as `signed_in` (user, time of
/// sign-in, and what the caller carries through to the code; `None`: not signed in to the
/// client's tenant).
async fn next_step<S>(
    state: &AuthState,
    pairs: &[(String, String)],
    client: &OAuthClient,
    request: &AuthorizeRequest,
    signed_in: Option<(UserId, Timestamp, S)>,
) -> Next<S> {
    let fail = |code: ErrorCode, d: &str| {
        Next::Answer(error_redirect(
            state,
            &request.redirect_uri,
            request.state.as_deref(),
            &OAuthError::new(code, d),
        ))
    };

    let (user_id, carried) = match signed_in {
        Some((user_id, auth_time, carried))
            if !request.prompt.login && !too_old(auth_time, request.max_age) =>
        {
            (user_id, carried)
        }
        _ => {
            if request.prompt.none {
                return fail(ErrorCode::LoginRequired, "the user is not signed in");
            }
            let return_to = format!("{AUTHORIZE_PATH}?{}", encode(pairs, Some("login")));
            let login = format!(
                "/login?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", &return_to)
                    .finish()
            );
            return Next::Answer(see_other(&login));
        }
    };

    // A first-party client needs no consent, unless the request asks for the consent page
    // (OIDC Core §3.1.2.1: prompt=consent is for every client).
    let consented = if request.prompt.consent {
        false
    } else if client.first_party {
        true
    } else {
        match state.store().consented_scopes(user_id, client.id).await {
            Ok(given) => given
                .and_then(|g| Scopes::parse(&g))
                .is_some_and(|g| request.scopes.is_subset(&g)),
            Err(e) => return Next::Answer(unavailable(state, request, &e)),
        }
    };
    if !consented {
        if request.prompt.none {
            return fail(
                ErrorCode::ConsentRequired,
                "the user has not approved this application",
            );
        }
        return Next::Answer(see_other(&format!("/consent?{}", encode(pairs, None))));
    }
    Next::Code(carried)
}

/// After a sign-in, carries on with the authorization request it was for (`return_to`, whose
/// client is `client`) as the endpoint would on the browser's next request, sparing the
/// browser that redirect and the server a second look-up of the client and the session. When
/// the answer is a code, the session and the code are written together.
pub(crate) async fn continue_after_sign_in(
    state: &AuthState,
    return_to: &str,
    client: OAuthClient,
    sign_in: SignIn,
) -> Response {
    let query = return_to
        .strip_prefix(AUTHORIZE_PATH)
        .and_then(|r| r.strip_prefix('?'))
        .unwrap_or_default();
    let pairs = http::pairs(query.as_bytes());
    let params = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if params.client_id.as_deref() != Some(client.client_id.as_str()) {
        return sign_in.answer(state, see_other(return_to)).await;
    }
    let (client, request) = match checked_request(state, &params, Some(client), true) {
        Ok(checked) => checked,
        Err(answer) => return sign_in.answer(state, *answer).await,
    };
    let signed_in = Some((sign_in.new.user_id, now(), ()));
    match next_step(state, &pairs, &client, &request, signed_in).await {
        Next::Answer(answer) => sign_in.answer(state, answer).await,
        Next::Code(()) => {
            let code = random_token();
            let code_digest = token_digest(&code);
            let written = state
                .store()
                .create_session_with_code(
                    &sign_in.new,
                    sign_in.replacing.as_ref(),
                    &sign_in.origin,
                    |session| code_record(state, &client, &request, session, code_digest),
                )
                .await;
            match written {
                Ok(_) => sign_in.with_cookie(state, code_redirect(state, &request, &code)),
                Err(e) => storage_page(e),
            }
        }
    }
}

async fn issue_code(
    state: &AuthState,
    headers: &HeaderMap,
    peer: SocketAddr,
    client: &OAuthClient,
    request: &AuthorizeRequest,
    session: &Session,
) -> Response {
    let code = random_token();
    let record = code_record(state, client, request, session, token_digest(&code));
    let origin = http::origin(headers, peer, Some(Actor::User(session.user_id)));
    if let Err(e) = state
        .store()
        .issue_authorization_code(&record, &origin)
        .await
    {
        return unavailable(state, request, &e);
    }
    code_redirect(state, request, &code)
}

/// The stored form of a code answering `request`, bound to `session`.
fn code_record(
    state: &AuthState,
    client: &OAuthClient,
    request: &AuthorizeRequest,
    session: &Session,
    code_digest: [u8; 32],
) -> NewAuthorizationCode {
    NewAuthorizationCode {
        code_digest,
        tenant_id: client.tenant_id,
        client_id: client.id,
        user_id: session.user_id,
        session_id: Some(session.id),
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_given: request.redirect_uri_given,
        scope: request.scopes.to_string(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        code_challenge_method: request.code_challenge_method,
        auth_time: session.auth_time,
        expires_at: now() + time::Duration::seconds(state.settings().code_ttl_secs),
    }
}

/// The redirect that hands `code` to the client.
fn code_redirect(state: &AuthState, request: &AuthorizeRequest, code: &str) -> Response {
    let mut params = vec![("code", code)];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", state.issuer()));
    see_other(&with_params(&request.redirect_uri, &params))
}

/// The client of a pending authorization request named by a `return_to` path. Only
/// same-origin paths to the authorization endpoint are accepted.
pub(crate) async fn pending_client(
    state: &AuthState,
    return_to: &str,
) -> Result<Option<OAuthClient>, StoreError> {
    let Some(client_id) = pending_client_id(return_to) else {
        return Ok(None);
    };
    match load_client(state, Some(&client_id)).await? {
        (Some(c), true) => Ok(Some(c)),
        _ => Ok(None),
    }
}

/// The `client_id` of the pending authorization request a `return_to` path names, if it is a
/// same-origin path to the authorization endpoint.
pub(crate) fn pending_client_id(return_to: &str) -> Option<String> {
    let query = return_to
        .strip_prefix(AUTHORIZE_PATH)
        .and_then(|r| r.strip_prefix('?'))?;
    if return_to.contains(['\\', '\r', '\n', '#']) {
        return None;
    }
    let pairs = http::pairs(query.as_bytes());
    http::single(&pairs, "client_id")
        .ok()
        .flatten()
        .map(str::to_owned)
}

impl IntoResponse for crate::keys::KeyError {
    fn into_response(self) -> Response {
        self.report();
        let mut r = http::no_store_json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "temporarily_unavailable", "error_description": "signing keys are unavailable"}),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        r
    }
}
