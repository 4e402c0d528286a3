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
use crate::error::JsonError;
use crate::http::{self, SESSION_COOKIE, no_store_json};
use crate::sign_in::{self, SignInError};

/// Why the console's sign-in refuses a request.
enum Refusal {
    /// Not `application/json`.
    NotJson,
    Malformed(&'static str),
    /// A wrong password, an unknown email, a locked or ambiguous account: one answer for all.
    InvalidCredentials,
    /// Too many sign-ins are being checked at once.
    Busy,
    Failed(JsonError),
}

impl From<opentrusty_store::StoreError> for Refusal {
    fn from(e: opentrusty_store::StoreError) -> Self {
        Refusal::Failed(JsonError::from(e))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            Refusal::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "send the body as application/json",
            ),
            Refusal::Malformed(description) => {
                (StatusCode::BAD_REQUEST, "invalid_request", description)
            }
            Refusal::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid email or password",
            ),
            Refusal::Busy => {
                let mut r = no_store_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "temporarily_unavailable", "error_description": "too many sign-ins right now; retry shortly" }),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                return r;
            }
            Refusal::Failed(e) => return e.into_response(),
        };
        no_store_json(
            status,
            json!({ "error": error, "error_description": description }),
        )
    }
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

/// What the console's sign-in posts.
struct Credentials {
    email: String,
    password: String,
}

impl Credentials {
    /// The email and password of a JSON body, with no tenant: the account names it.
    fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Credentials, Refusal> {
        // A JSON content type cannot be sent cross-site without a CORS preflight, which only the
        // console's origins pass: no login CSRF through a form posting text/plain.
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Refusal::NotJson);
        }
        if headers.contains_key("x-tenant-id") {
            return Err(Refusal::Malformed(
                "the tenant is derived from the account; do not send X-Tenant-ID",
            ));
        }
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err(Refusal::Malformed(
                "the body must be a JSON object with email and password",
            ));
        };
        if fields.contains_key("tenant_id") {
            return Err(Refusal::Malformed(
                "the tenant is derived from the account; do not send tenant_id",
            ));
        }
        match (
            fields.get("email").and_then(Value::as_str),
            fields.get("password").and_then(Value::as_str),
        ) {
            (Some(email), Some(password)) => Ok(Credentials {
                email: email.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(Refusal::Malformed("email and password are required")),
        }
    }
}

/// The account `credentials` sign in to, checked by `sign_in::verify`: the one user holding a
/// control-plane role under that email (several, or none, is a refusal like a wrong password).
async fn verify(
    state: &AuthState,
    credentials: &Credentials,
    origin: &opentrusty_core::audit::Origin,
) -> Result<opentrusty_core::user::User, Refusal> {
    let accounts = match Email::parse(&credentials.email) {
        Ok(e) => state.store().control_plane_accounts(e.normalized()).await?,
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
        Some(u) => state.store().password_hash(u.id).await?,
        None => None,
    };
    let attempt = sign_in::Attempt {
        tenant: account.as_ref().and_then(|u| u.tenant_id),
        user: account,
        hash,
        password: &credentials.password,
        refusal: "invalid_credentials",
    };
    match sign_in::verify(state, attempt, origin).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(Refusal::InvalidCredentials),
        Err(SignInError::Store(e)) => Err(e.into()),
        Err(SignInError::Saturated) => Err(Refusal::Busy),
    }
}

pub async fn login(
    State(state): State<AuthState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials = match Credentials::decode(&headers, &body) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let user = match verify(&state, &credentials, &http::origin(&headers, peer, None)).await {
        Ok(u) => u,
        Err(refused) => return refused.into_response(),
    };
    let origin = http::origin(&headers, peer, Some(Actor::User(user.id)));
    let started = match SignIn::new(&state, &headers, &user, origin)
        .start(&state)
        .await
    {
        Ok(s) => s,
        Err(e) => return JsonError::from(e).into_response(),
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
            return JsonError::from(e).into_response();
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        http::clear_cookie(&state, SESSION_COOKIE, true),
    );
    r
}
