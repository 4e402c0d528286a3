//! Around every request a listener answers: the client's address (behind trusted proxies), the
//! request id (taken from a trusted `X-Request-Id`, else generated, and returned), one log line
//! and the request metrics. Handlers see the client's address as `ConnectInfo`, and the request
//! id as `X-Request-Id`, so audit rows carry both without knowing about proxies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics;
use crate::proxy::{TrustedProxies, acceptable_request_id};

/// What the edge of a listener needs to know.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Reported as the plane of requests no plane answered (misdirected, not found).
    pub listener: &'static str,
    pub trusted: TrustedProxies,
}

/// Which plane answered a request, and through which route template: set on the response by
/// [`mark`], read by [`observe`].
#[derive(Debug, Clone)]
pub struct Answered {
    pub plane: &'static str,
    pub route: String,
}

/// The address the connection came from, before proxy rules: kept for the log line.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Marks responses of a plane's router with the plane and the matched route template.
pub async fn mark(State(plane): State<&'static str>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Answered { plane, route });
    }
    response
}

/// The outermost layer of a listener (see the module comment).
pub async fn observe(
    State(edge): State<Arc<EdgeConfig>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let trusted_peer = edge.trusted.trusts(peer.ip());
    let (client, _proto) = edge.trusted.client(peer.ip(), req.headers());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| trusted_peer && acceptable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let id_header = HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("-"));
    req.headers_mut().insert("x-request-id", id_header.clone());
    req.extensions_mut().insert(PeerAddr(peer));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    let method = req.method().as_str().to_owned();

    let mut response = next.run(req).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let (plane, route) = match response.extensions().get::<Answered>() {
        Some(a) => (a.plane, a.route.clone()),
        None => (edge.listener, "unmatched".to_owned()),
    };
    metrics::observe_request(plane, &method, &route, status, elapsed.as_secs_f64());
    tracing::info!(
        target: "opentrusty::request",
        request_id = %request_id,
        plane,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        client = %client,
        "request"
    );
    let h = response.headers_mut();
    h.insert("x-request-id", id_header);
    // No answer of ours is meant to be framed or sniffed; pages set a fuller policy of their own.
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}
