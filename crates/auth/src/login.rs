//! The sign-in page: shown for a pending authorization request (or the account pages), and
//! the password it posts checked by `sign_in::verify`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use opentrusty_core::audit::Actor;
use opentrusty_core::client::OAuthClient;
use opentrusty_core::email::Email;

use crate::authorize::{continue_after_sign_in, pending_client, pending_client_id, storage_page};
use crate::browser_session::SignIn;
use crate::csrf::{CsrfForm, FormPage, csrf_value, with_csrf_cookie};
use crate::http;
use crate::sign_in::{self, SignInError};
use crate::{AuthState, pages};

pub(crate) async fn branding(state: &AuthState, client: &OAuthClient) -> pages::Branding {
    tenant_branding(state, Some(client.tenant_id)).await
}

/// How tenant `tenant`'s pages look (plain when there is none or it cannot be read).
pub(crate) async fn tenant_branding(
    state: &AuthState,
    tenant: Option<opentrusty_core::TenantId>,
) -> pages::Branding {
    let Some(tenant) = tenant else {
        return pages::Branding::default();
    };
    match state.store().get_tenant(tenant).await {
        Ok(Some(t)) => pages::Branding {
            name: Some(t.display_name.unwrap_or(t.name)),
            logo_url: t.logo_url,
            accent_color: t.accent_color,
        },
        _ => pages::Branding::default(),
    }
}

pub(crate) fn bad_link() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        "The page was opened without the application request it belongs to.",
    )
}

pub async fn login_page(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    let Ok(Some(return_to)) = http::single(&pairs, "return_to") else {
        return bad_link();
    };
    let client = match pending_client(&state, return_to).await {
        Ok(Some(c)) => c,
        Ok(None) => return bad_link(),
        Err(e) => return storage_page(e),
    };
    let (csrf, fresh) = csrf_value(&headers);
    let heading = branding(&state, &client).await;
    let page = pages::login(StatusCode::OK, &csrf, return_to, &heading, None, "");
    with_csrf_cookie(&state, page, &csrf, fresh)
}

/// The sign-in page's form.
pub(crate) struct LoginPage;

impl FormPage for LoginPage {
    const EXPIRED_TITLE: &'static str = "Your sign-in form expired";
    const EXPIRED_MESSAGE: &'static str = "Reload the sign-in page and try again.";
}

pub async fn login_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CsrfForm(form, _): CsrfForm<LoginPage>,
) -> Response {
    let field = |n: &str| http::single(&form, n).ok().flatten();
    let Some(return_to) = field("return_to") else {
        return bad_link();
    };
    let Some(client_id) = pending_client_id(return_to) else {
        return bad_link();
    };
    let (email, password) = (
        field("email").unwrap_or(""),
        field("password").unwrap_or(""),
    );
    // The client and the account in one look-up; an email that cannot be one matches nobody.
    let normalized = Email::parse(email).ok();
    let found = state
        .store()
        .find_client_with_sign_in(&client_id, normalized.as_ref().map(Email::normalized))
        .await;
    let (client, account) = match found {
        Ok(Some((access, account))) if access.usable => (access.client, account),
        Ok(_) => return bad_link(),
        Err(e) => return storage_page(e),
    };
    let origin = http::origin(&headers, peer, None);
    let tenant = client.tenant_id;
    let (user, hash) = account.map_or((None, None), |(user, hash)| (Some(user), hash));
    let attempt = sign_in::Attempt {
        tenant: Some(tenant),
        user,
        hash,
        password,
        refusal: "invalid_credentials",
    };
    let user = match sign_in::verify(&state, attempt, &origin).await {
        Ok(Some(user)) => user,
        Err(SignInError::Store(e)) => return storage_page(e),
        Err(SignInError::Saturated) => return busy_page(),
        Ok(None) => {
            let (csrf, fresh) = csrf_value(&headers);
            let heading = branding(&state, &client).await;
            let page = pages::login(
                StatusCode::UNAUTHORIZED,
                &csrf,
                return_to,
                &heading,
                Some("Invalid email or password. Check both and try again."),
                email,
            );
            return with_csrf_cookie(&state, page, &csrf, fresh);
        }
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(user.id)));
    let sign_in = SignIn::new(&state, &headers, &user, origin);
    continue_after_sign_in(&state, return_to, client, sign_in).await
}

/// The page for a sign-in refused because too many are being checked at once.
pub(crate) fn busy_page() -> Response {
    let mut r = pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many sign-ins right now",
        "Please try again in a few seconds.",
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("2"),
    );
    r
}
