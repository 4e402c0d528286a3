//! Setting passwords on the auth plane: enrollment and reset through the single-use links the
//! admin plane issues (checked when the page opens, redeemed atomically when the form is sent,
//! so two submissions cannot both set a password), and a signed-in user changing their own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::Actor;
use opentrusty_core::now;
use opentrusty_core::password::check_policy;
use opentrusty_core::secret::token_digest;

use crate::AuthState;
use crate::csrf::{CsrfForm, FormPage, csrf_value, with_csrf_cookie};
use crate::error::PageError;
use crate::http;
use crate::pages;
use crate::sign_in::{self, SignInError};

fn dead_link() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This link no longer works",
        "Links to set a password work once and expire. Ask your administrator for a new one.",
    )
}

fn unavailable(e: opentrusty_store::StoreError) -> Response {
    PageError::storage(e, "Your password was not changed. Try again in a moment.").into_response()
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
        Err(e) => return unavailable(e),
    };
    let (csrf, fresh) = csrf_value(&headers);
    let look = crate::login::tenant_branding(&state, pending.user.tenant_id).await;
    let page = pages::enroll(
        StatusCode::OK,
        &csrf,
        token,
        &pending.user.email,
        None,
        &look,
    );
    with_csrf_cookie(&state, page, &csrf, fresh)
}

/// The enrollment page's form.
pub(crate) struct EnrollPage;

impl FormPage for EnrollPage {
    const EXPIRED_TITLE: &'static str = "This form expired";
    const EXPIRED_MESSAGE: &'static str = "Open the link again and set your password.";
}

/// The password change page's form.
pub(crate) struct ChangePasswordPage;

impl FormPage for ChangePasswordPage {
    const EXPIRED_TITLE: &'static str = "This form expired";
    const EXPIRED_MESSAGE: &'static str = "Open the page again and change your password.";
}

pub async fn enroll_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CsrfForm(form, _): CsrfForm<EnrollPage>,
) -> Response {
    let field = |n: &str| http::single(&form, n).ok().flatten();
    let Some(token) = field("token") else {
        return dead_link();
    };
    let digest = token_digest(token);
    let pending = match state.store().find_enrollment_link(&digest, now()).await {
        Ok(Some(p)) => p,
        Ok(None) => return dead_link(),
        Err(e) => return unavailable(e),
    };
    let csrf = field("csrf_token").unwrap_or_default();
    let look = crate::login::tenant_branding(&state, pending.user.tenant_id).await;
    let again = |message: &str| {
        pages::enroll(
            StatusCode::UNPROCESSABLE_ENTITY,
            csrf,
            token,
            &pending.user.email,
            Some(message),
            &look,
        )
    };
    let password = field("password").unwrap_or_default();
    if field("password_confirm") != Some(password) {
        return again("The two passwords are not the same. Type the new password twice.");
    }
    if let Err(e) = check_policy(password, &pending.user.email) {
        return again(&format!("The password {}.", e.message));
    }
    let Ok(hash) = state.hash_password(password).await else {
        return crate::login::busy_page();
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(pending.user.id)));
    match state
        .store()
        .redeem_enrollment_link(&digest, &hash, &origin)
        .await
    {
        Ok(Some(_)) => pages::enrolled(),
        Ok(None) => dead_link(),
        Err(e) => unavailable(e),
    }
}

/// The signed-in user of this browser, or the page asking to sign in first.
async fn signed_in(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<
    (
        opentrusty_core::session::Session,
        opentrusty_core::user::User,
    ),
    Response,
> {
    let not_signed_in = || {
        pages::error(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Open an application that uses this account and sign in, then come back here.",
        )
    };
    let session = match crate::browser_session::current_session(state, headers).await {
        Ok(Some((s, _))) => s,
        Ok(None) => return Err(not_signed_in()),
        Err(e) => return Err(unavailable(e)),
    };
    match state.store().get_user_by_id(session.user_id).await {
        Ok(Some(u)) => Ok((session, u)),
        Ok(None) => Err(not_signed_in()),
        Err(e) => Err(unavailable(e)),
    }
}

pub async fn change_page(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    let (_, user) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let (csrf, fresh) = csrf_value(&headers);
    let page = pages::change_password(StatusCode::OK, &csrf, &user.email, None);
    with_csrf_cookie(&state, page, &csrf, fresh)
}

pub async fn change_submit(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CsrfForm(form, _): CsrfForm<ChangePasswordPage>,
) -> Response {
    let (session, user) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let field = |n: &str| http::single(&form, n).ok().flatten();
    let csrf = field("csrf_token").unwrap_or_default();
    let again =
        |status, message: &str| pages::change_password(status, csrf, &user.email, Some(message));
    let password = field("password").unwrap_or_default();
    if field("password_confirm") != Some(password) {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The two new passwords are not the same. Type the new password twice.",
        );
    }
    if let Err(e) = check_policy(password, &user.email) {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The new password {}.", e.message),
        );
    }
    // The current password is checked like a sign-in: it counts towards lockout.
    let stored = match state.store().password_hash(user.id).await {
        Ok(h) => h,
        Err(e) => return unavailable(e),
    };
    let current = field("current_password").unwrap_or_default();
    let origin = http::origin(&headers, peer, Some(Actor::User(user.id)));
    let attempt = sign_in::Attempt {
        tenant: user.tenant_id,
        user: Some(user.clone()),
        hash: stored,
        password: current,
        refusal: "wrong_current_password",
    };
    match sign_in::verify(&state, attempt, &origin).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return again(
                StatusCode::UNAUTHORIZED,
                "The current password is not right. Type it again.",
            );
        }
        Err(SignInError::Store(e)) => return unavailable(e),
        Err(SignInError::Saturated) => return crate::login::busy_page(),
    }
    let Ok(hash) = state.hash_password(password).await else {
        return crate::login::busy_page();
    };
    match state
        .store()
        .change_password(user.id, &hash, session.id, &origin)
        .await
    {
        Ok(()) => pages::password_changed(),
        Err(e) => unavailable(e),
    }
}
