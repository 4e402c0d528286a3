//! CSRF protection of the auth plane's forms: a double-submit cookie whose value each form
//! carries, and the browser's own word on where a post comes from.

use std::marker::PhantomData;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::secret::{constant_time_eq, random_token};

use crate::http::{self, CSRF_COOKIE, Form, FormBody};
use crate::{AuthState, pages};

/// The CSRF cookie value to use: the browser's if it has a sane one, else a new one (which
/// the response must set).
pub(crate) fn csrf_value(headers: &HeaderMap) -> (String, bool) {
    match http::cookie(headers, CSRF_COOKIE) {
        Some(v) if v.len() == 43 => (v, false),
        _ => (random_token(), true),
    }
}

pub(crate) fn with_csrf_cookie(
    state: &AuthState,
    mut response: Response,
    csrf: &str,
    fresh: bool,
) -> Response {
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            http::set_cookie(state, CSRF_COOKIE, csrf, None, false),
        );
    }
    response
}

/// Whether a form post carries the CSRF cookie's value and, if the browser says where it
/// comes from, comes from our own origin.
pub(crate) fn csrf_ok(state: &AuthState, headers: &HeaderMap, submitted: Option<&str>) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != "null"
        && origin != state.issuer_origin()
    {
        return false;
    }
    match (http::cookie(headers, CSRF_COOKIE), submitted) {
        (Some(c), Some(s)) => constant_time_eq(c.as_bytes(), s.as_bytes()),
        _ => false,
    }
}

/// A page whose form posts carry a CSRF proof, and what a forged or stale post of it is told.
pub(crate) trait FormPage {
    const EXPIRED_TITLE: &'static str;
    const EXPIRED_MESSAGE: &'static str;
}

/// The form of a post from page `P`, its CSRF proof checked ([`csrf_ok`] on its `csrf_token`
/// field) before the handler runs; a post without it is answered with the page's "form expired"
/// page (403) and changes nothing.
pub(crate) struct CsrfForm<P>(pub Form, pub PhantomData<P>);

impl<P: FormPage> FromRequest<AuthState> for CsrfForm<P> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AuthState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let FormBody(form) = FormBody::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let submitted = http::single(&form, "csrf_token").ok().flatten();
        if !csrf_ok(state, &headers, submitted) {
            return Err(pages::error(
                StatusCode::FORBIDDEN,
                P::EXPIRED_TITLE,
                P::EXPIRED_MESSAGE,
            ));
        }
        Ok(CsrfForm(form, PhantomData))
    }
}
