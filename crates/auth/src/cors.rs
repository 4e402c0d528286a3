//! CORS for browser-based public clients (single-page apps) on the token, revocation and
//! UserInfo endpoints: a preflight passes for an origin some live public client registers, and
//! an answer is readable by an origin only if the client the request turned out to be from
//! registers it. Nobody else, and never with credentials.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentrusty_core::ClientId;
use serde_json::json;

use crate::AuthState;
use crate::error::JsonError;
use crate::http::no_store_json;

/// The client a request to a CORS endpoint was made for, set by its handler on the response
/// once the client is known (authenticated, or the presented token's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestClient(pub ClientId);

/// Marks `response` as answering a request of `client`.
pub(crate) fn for_client(mut response: Response, client: Option<ClientId>) -> Response {
    if let Some(c) = client {
        response.extensions_mut().insert(RequestClient(c));
    }
    response
}

fn request_origin(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn browser_edge(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    let Some(origin) = request_origin(req.headers()) else {
        return next.run(req).await;
    };
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let methods = if req.uri().path() == "/oauth2/userinfo" {
            "GET, POST"
        } else {
            "POST"
        };
        return preflight(&state, &origin, methods).await;
    }
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    let Some(RequestClient(client)) = response.extensions().get::<RequestClient>().copied() else {
        return response;
    };
    let registered = match state.store().client_web_origins(client).await {
        Ok(origins) => origins.contains(&origin),
        Err(e) => {
            // The answer is already made; the browser simply cannot read it.
            crate::error::report_storage_failure(&e);
            false
        }
    };
    if registered && let Ok(v) = HeaderValue::from_str(&origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("www-authenticate"),
        );
    }
    response
}

async fn preflight(state: &AuthState, origin: &str, methods: &'static str) -> Response {
    match state.store().web_origin_registered(origin).await {
        Ok(true) => {}
        Ok(false) => {
            return no_store_json(
                StatusCode::FORBIDDEN,
                json!({
                    "error": "invalid_request",
                    "error_description": "no browser-based client registers this origin",
                }),
            );
        }
        Err(e) => return JsonError::from(e).into_response(),
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
    r
}
