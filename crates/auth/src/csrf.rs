//! CSRF protection of the auth plane's forms: a double-submit cookie whose value each form
//! carries, and the browser's own word on where a post comes from.

use axum::http::{HeaderMap, header};
use axum::response::Response;
use opentrusty_core::secret::{constant_time_eq, random_token};

use crate::AuthState;
use crate::http::{self, CSRF_COOKIE};

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
