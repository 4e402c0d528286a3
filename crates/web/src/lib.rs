//! HTTP pieces every listener shares, whatever plane it serves: the liveness probe (`/health`)
//! and the readiness probe (`/ready`, which checks the database and the schema), the edge of
//! every request (client address behind proxies, request id, log line, metrics), the metrics
//! registry, and the session cookie's name and parsing.

pub mod edge;
pub mod metrics;
pub mod proxy;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentrusty_store::Store;
use serde::Serialize;

#[derive(Clone)]
struct ProbeState {
    service: &'static str,
    store: Store,
    needs_signing_key: bool,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    service: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /health` and `GET /ready` for a listener named `service` (for example
/// `opentrusty-auth`); a listener that signs tokens is ready only with an active signing key.
pub fn probes<S>(service: &'static str, store: Store, needs_signing_key: bool) -> Router<S> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(ProbeState {
            service,
            store,
            needs_signing_key,
        })
}

/// The probes' paths: answered on every host, whatever the host routing.
pub const PROBE_PATHS: [&str; 2] = ["/health", "/ready"];

async fn readiness(state: &ProbeState) -> Result<(), String> {
    state.store.readiness().await?;
    if state.needs_signing_key {
        match state.store.has_active_signing_key("RS256").await {
            Ok(true) => {}
            Ok(false) => return Err("no active signing key".to_owned()),
            Err(e) => return Err(format!("database unavailable: {e}")),
        }
    }
    Ok(())
}

/// Liveness: the process is up and serving HTTP. Touches nothing else.
async fn health(State(state): State<ProbeState>) -> Response {
    no_store(
        Json(Health {
            status: "pass",
            service: state.service,
            version: env!("CARGO_PKG_VERSION"),
        })
        .into_response(),
    )
}

/// Readiness: the database answers and the schema is current. 503 with the reason otherwise.
async fn ready(State(state): State<ProbeState>) -> Response {
    let (code, body) = match readiness(&state).await {
        Ok(()) => (
            StatusCode::OK,
            Readiness {
                status: "ready",
                service: state.service,
                reason: None,
            },
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness {
                status: "not_ready",
                service: state.service,
                reason: Some(reason),
            },
        ),
    };
    let mut response = no_store((code, Json(body)).into_response());
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer for paths no route serves: a small JSON body, never a stack of internals.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "not_found", "error_description": "no such resource" })),
    )
        .into_response()
}

/// Name of the browser-session cookie the auth plane sets and both planes read.
pub const SESSION_COOKIE: &str = "ot_session";

/// The value of cookie `name`, if the request carries it exactly once (the same cookie twice,
/// for example set for two domains, is trusted in neither copy).
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(axum::http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found.filter(|v| !v.is_empty() && v.len() <= 256)
}
