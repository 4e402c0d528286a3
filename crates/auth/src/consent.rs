//! The consent page: what a client asks for, and the user's answer to it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use opentrusty_core::audit::Actor;
use opentrusty_oidc::authorize::{AuthorizeParams, Rejection, validate};
use opentrusty_oidc::error::{ErrorCode, OAuthError};
use opentrusty_oidc::scope::Scopes;

use crate::authorize::{AUTHORIZE_PATH, encode, error_redirect, load_client, storage_page};
use crate::browser_session::current_session;
use crate::csrf::{CsrfForm, FormPage, csrf_value, with_csrf_cookie};
use crate::http::{self, see_other};
use crate::login::{bad_link, branding};
use crate::{AuthState, pages};

pub async fn consent_page(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let pairs = http::pairs(query.as_bytes());
    let params = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (client, usable) = match load_client(&state, params.client_id.as_deref()).await {
        Ok(c) => c,
        Err(e) => return storage_page(e),
    };
    let request = match validate(&params, client.as_ref(), usable) {
        Ok(r) => r,
        Err(_) => return bad_link(),
    };
    let Some(client) = client else {
        return bad_link();
    };
    match current_session(&state, &headers).await {
        Ok(Some((s, _))) if s.tenant_id == Some(client.tenant_id) => {}
        Ok(_) => return see_other(&format!("{AUTHORIZE_PATH}?{}", encode(&pairs, None))),
        Err(e) => return storage_page(e),
    }
    let (csrf, fresh) = csrf_value(&headers);
    let scopes: Vec<&str> = request.scopes.iter().collect();
    let look = branding(&state, &client).await;
    let page = pages::consent(&csrf, &encode(&pairs, None), &client.name, &scopes, &look);
    with_csrf_cookie(&state, page, &csrf, fresh)
}

/// The consent page's form.
pub(crate) struct ConsentPage;

impl FormPage for ConsentPage {
    const EXPIRED_TITLE: &'static str = "Your consent form expired";
    const EXPIRED_MESSAGE: &'static str = "Go back to the application and start again.";
}

pub async fn consent_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CsrfForm(form, _): CsrfForm<ConsentPage>,
) -> Response {
    let field = |n: &str| http::single(&form, n).ok().flatten();
    let pairs = http::pairs(field("request").unwrap_or("").as_bytes());
    let params = AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (client, usable) = match load_client(&state, params.client_id.as_deref()).await {
        Ok(c) => c,
        Err(e) => return storage_page(e),
    };
    let request = match validate(&params, client.as_ref(), usable) {
        Ok(r) => r,
        Err(Rejection::Page(m)) => {
            return pages::error(StatusCode::BAD_REQUEST, "This sign-in link is not valid", m);
        }
        Err(Rejection::Redirect {
            redirect_uri,
            state: st,
            error,
        }) => {
            return error_redirect(&state, &redirect_uri, st.as_deref(), &error);
        }
    };
    let Some(client) = client else {
        return bad_link();
    };
    let session = match current_session(&state, &headers).await {
        Ok(Some((s, _))) if s.tenant_id == Some(client.tenant_id) => s,
        Ok(_) => {
            return see_other(&format!(
                "{AUTHORIZE_PATH}?{}",
                encode(&pairs, Some("consent"))
            ));
        }
        Err(e) => return storage_page(e),
    };
    if field("decision") != Some("approve") {
        return error_redirect(
            &state,
            &request.redirect_uri,
            request.state.as_deref(),
            &OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
        );
    }
    let previous = match state
        .store()
        .consented_scopes(session.user_id, client.id)
        .await
    {
        Ok(p) => p.and_then(|p| Scopes::parse(&p)).unwrap_or_default(),
        Err(e) => return storage_page(e),
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(session.user_id)));
    let all = previous.union(&request.scopes).to_string();
    if let Err(e) = state
        .store()
        .remember_consent(client.tenant_id, session.user_id, client.id, &all, &origin)
        .await
    {
        return storage_page(e);
    }
    see_other(&format!(
        "{AUTHORIZE_PATH}?{}",
        encode(&pairs, Some("consent"))
    ))
}
