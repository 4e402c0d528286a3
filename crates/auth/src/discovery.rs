//! The documents anyone may read: OpenID Connect Discovery and the JWKS.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opentrusty_oidc::claims;

use crate::AuthState;

fn public_json(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn discovery(State(state): State<AuthState>) -> Response {
    public_json(claims::discovery(state.issuer()).to_string())
}

pub async fn jwks(State(state): State<AuthState>) -> Response {
    match state.keys().jwks().await {
        Ok(doc) => public_json(doc.as_ref().clone()),
        Err(e) => e.into_response(),
    }
}
