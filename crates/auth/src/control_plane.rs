//! The console's control-plane login: email and password as JSON, no tenant input. It creates
//! the same database session as the sign-in page; the admin plane reads it on every request.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentrusty_core::audit::Actor;
use opentrusty_core::email::Email;
use opentrusty_core::secret::{session_csrf_token, token_digest};
use serde_json::{Value, json};

use crate::AuthState;
use crate::browser_session::SignIn;
use crate::http::{self, SESSION_COOKIE, no_store_json};
use crate::sign_in::{self, SignInError};

fn bad_request(description: &str) -> Response {
    no_store_json(
        StatusCode::BAD_REQUEST,
        json!({ "error": "invalid_request", "error_description": description }),
    )
}

fn invalid_credentials() -> Response {
    no_store_json(
        StatusCode::UNAUTHORIZED,
        json!({ "error": "invalid_credentials", "error_description": "invalid email or password" }),
    )
}

/// Browser rules of the console's sign-in and sign-out: a request whose `Origin` is neither the
/// issuer's nor a console origin is refused (no cross-site sign-in or sign-out), and the console
/// origins get CORS with credentials (never `*`).
pub async fn console_edge(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let console = origin.as_ref().filter(|o| {
        o.to_str()
            .is_ok_and(|o| state.settings().console_origins.iter().any(|c| c == o))
    });
    let same_origin = origin
        .as_ref()
        .is_some_and(|o| o.as_bytes() == state.issuer_origin().as_bytes());
    if origin.is_some() && console.is_none() && !same_origin {
        return no_store_json(
            StatusCode::FORBIDDEN,
            json!({ "error": "invalid_request", "error_description": "this origin may not sign in here" }),
        );
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut r = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    if let Some(o) = console.cloned() {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    r.headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    r
}

pub async fn login(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A JSON content type cannot be sent cross-site without a CORS preflight, which only the
    // console's origins pass: no login CSRF through a form posting text/plain.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return no_store_json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({ "error": "invalid_request", "error_description": "send the body as application/json" }),
        );
    }
    if headers.contains_key("x-tenant-id") {
        return bad_request("the tenant is derived from the account; do not send X-Tenant-ID");
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body must be a JSON object with email and password");
    };
    if fields.contains_key("tenant_id") {
        return bad_request("the tenant is derived from the account; do not send tenant_id");
    }
    let (Some(email), Some(password)) = (
        fields.get("email").and_then(Value::as_str),
        fields.get("password").and_then(Value::as_str),
    ) else {
        return bad_request("email and password are required");
    };
    let accounts = match Email::parse(email) {
        Ok(e) => match state.store().control_plane_accounts(e.normalized()).await {
            Ok(a) => a,
            Err(e) => return crate::error::JsonError::from(e).into_response(),
        },
        Err(_) => Vec::new(),
    };
    if accounts.len() > 1 {
        tracing::warn!(
            count = accounts.len(),
            "an email holds control-plane roles in several places"
        );
    }
    let account = if accounts.len() == 1 {
        accounts.into_iter().next()
    } else {
        None
    };
    let hash = match &account {
        Some(u) => match state.store().password_hash(u.id).await {
            Ok(h) => h,
            Err(e) => return crate::error::JsonError::from(e).into_response(),
        },
        None => None,
    };
    let attempt = sign_in::Attempt {
        tenant: account.as_ref().and_then(|u| u.tenant_id),
        user: account,
        hash,
        password,
        refusal: "invalid_credentials",
    };
    let origin = http::origin(&headers, peer, None);
    let user = match sign_in::verify(&state, attempt, &origin).await {
        Ok(Some(u)) => u,
        Ok(None) => return invalid_credentials(),
        Err(SignInError::Store(e)) => return crate::error::JsonError::from(e).into_response(),
        Err(SignInError::Saturated) => {
            let mut r = no_store_json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": "temporarily_unavailable", "error_description": "too many sign-ins right now; retry shortly" }),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            return r;
        }
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(user.id)));
    let started = match SignIn::new(&state, &headers, &user, origin)
        .start(&state)
        .await
    {
        Ok(s) => s,
        Err(e) => return crate::error::JsonError::from(e).into_response(),
    };
    let mut r = no_store_json(
        StatusCode::OK,
        json!({
            "user_id": user.id,
            "email": user.email,
            "tenant_id": user.tenant_id,
            "csrf_token": session_csrf_token(&state.0.master_key, &started.digest),
        }),
    );
    r.headers_mut().append(header::SET_COOKIE, started.cookie);
    r
}

pub async fn logout(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(cookie) = http::cookie(&headers, SESSION_COOKIE) {
        let origin = http::origin(&headers, peer, None);
        if let Err(e) = state
            .store()
            .end_session(&token_digest(&cookie), &origin)
            .await
        {
            return crate::error::JsonError::from(e).into_response();
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        http::clear_cookie(&state, SESSION_COOKIE, true),
    );
    r
}
