//! HTTP plumbing shared by the auth plane's handlers: cookies, the caller's origin for audit,
//! and form decoding that tolerates nothing odd.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::{Actor, Origin};

use crate::AuthState;

pub use opentrusty_web::SESSION_COOKIE;
pub const CSRF_COOKIE: &str = "ot_csrf";

pub use opentrusty_web::cookie;

/// A `Set-Cookie` value with our attributes.
pub fn set_cookie(
    state: &AuthState,
    name: &str,
    value: &str,
    max_age: Option<i64>,
    domain: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if state.settings().cookie_secure {
        c.push_str("; Secure");
    }
    if domain && let Some(d) = &state.settings().cookie_domain {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    if let Some(secs) = max_age {
        c.push_str(&format!("; Max-Age={secs}"));
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("ot_invalid=1"))
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(state: &AuthState, name: &str, domain: bool) -> HeaderValue {
    set_cookie(state, name, "", Some(0), domain)
}

/// Who is calling, for the audit trail.
pub fn origin(headers: &HeaderMap, peer: SocketAddr, actor: Option<Actor>) -> Origin {
    let text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect::<String>())
    };
    Origin {
        actor,
        ip: Some(peer.ip().to_string()),
        user_agent: text(header::USER_AGENT),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(str::to_owned),
    }
}

/// A decoded form or query string: its pairs in order, repeated names kept (for the endpoint to
/// refuse where a parameter may appear once).
pub type Form = Vec<(String, String)>;

/// Decodes `application/x-www-form-urlencoded` (or a query string) into pairs.
pub fn pairs(body: &[u8]) -> Form {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A request body decoded as a form: the extractor of the endpoints that take one.
pub struct FormBody(pub Form);

impl<S: Send + Sync> axum::extract::FromRequest<S> for FormBody {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state).await?;
        Ok(FormBody(pairs(&body)))
    }
}

/// The single value of `name`; `Err` when it appears more than once.
pub fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut it = pairs.iter().filter(|(k, _)| k == name);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(());
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// A JSON response that must never be cached (RFC 6749 §5.1).
pub fn no_store_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// `303 See Other` to `location`.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
