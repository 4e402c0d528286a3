//! The admin plane's HTTP surface: the management REST API under `/api/v1` used by the console and
//! by automation. It never handles passwords and never signs tokens: it has no dependency on the
//! protocol crate, provisions users with single-use enrollment links, and resolves bearer tokens
//! by their digest in the database.

mod caller;
mod handlers;
mod input;
mod openapi;
mod problem;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentrusty_core::secret::MasterKey;
use opentrusty_store::Store;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use caller::Caller;
pub use openapi::openapi_json;
pub use problem::{ApiError, Problem};

/// The name this plane reports in probes and logs.
pub const SERVICE: &str = "opentrusty-admin";

/// Operator settings of the admin plane.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Origins (`scheme://host[:port]`) of the admin console: the only origins whose
    /// cookie-authenticated requests are accepted, and the only ones CORS admits.
    pub console_origins: Vec<String>,
    /// A session unused this long no longer authenticates (the auth plane's setting).
    pub session_idle_secs: i64,
    /// Public base URL of the auth plane (the issuer), for enrollment links.
    pub auth_base_url: String,
    /// How long an enrollment or reset link works.
    pub enrollment_ttl_secs: i64,
}

struct Inner {
    store: Store,
    master_key: MasterKey,
    settings: AdminSettings,
}

/// Everything the admin plane's handlers share; cheap to clone.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

impl AdminState {
    pub fn new(store: Store, master_key: MasterKey, settings: AdminSettings) -> Self {
        Self(Arc::new(Inner {
            store,
            master_key,
            settings,
        }))
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.0.master_key
    }

    pub(crate) fn settings(&self) -> &AdminSettings {
        &self.0.settings
    }
}

/// The admin plane as declared: its router and its OpenAPI document, both built from each
/// handler's `#[utoipa::path]` (the one place a route's method and path are written) and the
/// `routes!` lines of `handlers::routes`. The route table is read from the document.
fn declared() -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::AdminApi::openapi())
        .routes(routes!(openapi::serve))
        .merge(handlers::routes())
        .split_for_parts()
}

/// The admin plane's route table: `(method, path)` of every route it serves, as the OpenAPI
/// document declares them.
pub fn route_table() -> Vec<(Method, String)> {
    let mut table = Vec::new();
    for (path, item) in &openapi::document().paths.paths {
        for (method, operation) in [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
            (Method::TRACE, &item.trace),
        ] {
            if operation.is_some() {
                table.push((method, path.clone()));
            }
        }
    }
    table
}

/// The admin plane's routes (probes are added by the listener that serves them).
pub fn router(state: AdminState) -> Router {
    let (router, _) = declared();
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "content-type, x-csrf-token, authorization, x-request-id";

/// Around every admin route: CORS for the console's origins (with credentials, never `*`),
/// `Cache-Control: no-store`, and problem documents for requests no route accepts.
async fn edge(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let allowed_origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| state.settings().console_origins.iter().any(|c| c == o))
        })
        .cloned();
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        match &allowed_origin {
            Some(_) => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOWED_METHODS),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOWED_HEADERS),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                r
            }
            None => ApiError::Forbidden("this origin may not call the admin API").into_response(),
        }
    } else {
        as_problem(next.run(req).await)
    };
    let h = response.headers_mut();
    if let Some(origin) = allowed_origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, www-authenticate"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Turns an error response that is not yet a problem document (a request the framework refused
/// before any handler ran: a method the path does not take, a body over the size limit) into one,
/// keeping its status and `Allow` header.
fn as_problem(original: Response) -> Response {
    let status = original.status();
    let is_problem = original
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return original;
    }
    let allow = original.headers().get(header::ALLOW).cloned();
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let problem = Problem {
        kind: format!("urn:opentrusty:problem:{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: match status {
            StatusCode::METHOD_NOT_ALLOWED => "this path does not accept this method",
            StatusCode::PAYLOAD_TOO_LARGE => "the body is too large",
            s if s.is_server_error() => "the request could not be completed",
            _ => "the request could not be read",
        }
        .to_owned(),
        field: None,
        role: None,
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::to_vec(&problem).unwrap_or_default(),
    )
        .into_response();
    if let Some(a) = allow {
        r.headers_mut().insert(header::ALLOW, a);
    }
    r
}
