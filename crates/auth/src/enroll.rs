//! Enrollment and password reset: the page behind the single-use links the admin plane issues.
//! The link is checked when the page opens and redeemed atomically when the form is sent, so
//! two submissions cannot both set a password.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use opentrusty_core::audit::Actor;
use opentrusty_core::now;
use opentrusty_core::password::check_policy;
use opentrusty_core::secret::token_digest;

use crate::AuthState;
use crate::authorize::{csrf_ok, csrf_value, with_csrf_cookie};
use crate::http::{self, store_failure};
use crate::pages;

fn dead_link() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This link no longer works",
        "Links to set a password work once and expire. Ask your administrator for a new one.",
    )
}

fn unavailable(e: &opentrusty_store::StoreError) -> Response {
    let (status, _) = store_failure(e);
    pages::error(
        status,
        "Something went wrong",
        "Your password was not changed. Try again in a moment.",
    )
}

pub async fn enroll_page(
    State(state): State<AuthState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    let Ok(Some(token)) = http::single(&pairs, "token") else {
        return dead_link();
    };
    let pending = match state
        .store()
        .find_enrollment_link(&token_digest(token), now())
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return dead_link(),
        Err(e) => return unavailable(&e),
    };
    let (csrf, fresh) = csrf_value(&headers);
    let page = pages::enroll(StatusCode::OK, &csrf, token, &pending.user.email, None);
    with_csrf_cookie(&state, page, &csrf, fresh)
}

pub async fn enroll_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = http::pairs(&body);
    let field = |n: &str| http::single(&form, n).ok().flatten();
    let Some(token) = field("token") else {
        return dead_link();
    };
    if !csrf_ok(&state, &headers, field("csrf_token")) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "This form expired",
            "Open the link again and set your password.",
        );
    }
    let digest = token_digest(token);
    let pending = match state.store().find_enrollment_link(&digest, now()).await {
        Ok(Some(p)) => p,
        Ok(None) => return dead_link(),
        Err(e) => return unavailable(&e),
    };
    let csrf = field("csrf_token").unwrap_or_default();
    let again = |message: &str| {
        pages::enroll(
            StatusCode::UNPROCESSABLE_ENTITY,
            csrf,
            token,
            &pending.user.email,
            Some(message),
        )
    };
    let password = field("password").unwrap_or_default();
    if field("password_confirm") != Some(password) {
        return again("The two passwords are not the same. Type the new password twice.");
    }
    if let Err(e) = check_policy(password, &pending.user.email) {
        return again(&format!("The password {}.", e.message));
    }
    let hasher = state.0.clone();
    let owned = password.to_owned();
    let Ok(hash) = state
        .0
        .hash_pool
        .run(move || hasher.hasher.hash(&owned))
        .await
    else {
        return crate::authorize::busy_page();
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(pending.user.id)));
    match state
        .store()
        .redeem_enrollment_link(&digest, &hash, &origin)
        .await
    {
        Ok(Some(_)) => pages::enrolled(),
        Ok(None) => dead_link(),
        Err(e) => unavailable(&e),
    }
}
