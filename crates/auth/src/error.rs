//! The auth plane's two error types, each the one place a failure becomes an answer: JSON in
//! RFC 6749 §5.2's shape for the protocol endpoints (token, introspection, revocation, the
//! console's sign-in), and an HTML page for the browser. A storage failure reaches a caller only
//! through one of them: 503 with `Retry-After` when the database is unavailable (counted into
//! the outage's log line), 500 otherwise (logged), never the error's text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_store::StoreError;
use serde_json::json;

use crate::http::no_store_json;
use crate::pages;

/// The status a storage failure is answered with, after reporting it once.
fn storage_status(e: &StoreError) -> StatusCode {
    if e.is_unavailable() {
        opentrusty_store::outage::refused(e);
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        tracing::error!(error = %e, "storage failure");
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// An error a JSON endpoint answers: `{"error", "error_description"}` with the status its code
/// implies, `WWW-Authenticate` for a failed client authentication or bearer token (RFC 6750
/// §3), `Retry-After` with 503.
#[derive(Debug)]
pub struct JsonError {
    pub code: ErrorCode,
    pub description: &'static str,
    pub status: StatusCode,
    challenge: Challenge,
}

/// The `WWW-Authenticate` challenge an error carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    /// Basic for `invalid_client`, none otherwise.
    ByCode,
    /// A protected resource's: Bearer, naming the error when a token was presented.
    Bearer { names_error: bool },
}

impl JsonError {
    pub fn new(code: ErrorCode, description: &'static str) -> Self {
        let status = match code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description,
            status,
            challenge: Challenge::ByCode,
        }
    }

    /// A protected resource's refusal (RFC 6750 §3.1): `invalid_request` (400),
    /// `invalid_token` (401) or `insufficient_scope` (403).
    pub fn bearer(code: ErrorCode, description: &'static str) -> Self {
        let status = match code {
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            challenge: Challenge::Bearer { names_error: true },
            status,
            ..Self::new(code, description)
        }
    }

    /// A protected resource asked for without any token (RFC 6750 §3.1: the challenge names no
    /// error).
    pub fn bearer_required(description: &'static str) -> Self {
        Self {
            challenge: Challenge::Bearer { names_error: false },
            status: StatusCode::UNAUTHORIZED,
            ..Self::new(ErrorCode::InvalidRequest, description)
        }
    }

    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    pub fn invalid_request(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// A parameter that must appear at most once appeared again.
    pub fn repeated() -> Self {
        Self::invalid_request("a parameter was repeated")
    }
}

impl From<StoreError> for JsonError {
    fn from(e: StoreError) -> Self {
        if storage_status(&e) == StatusCode::SERVICE_UNAVAILABLE {
            Self::new(ErrorCode::TemporarilyUnavailable, "try again later")
        } else {
            Self::new(ErrorCode::ServerError, "the request could not be completed")
        }
    }
}

impl From<crate::keys::KeyError> for JsonError {
    fn from(e: crate::keys::KeyError) -> Self {
        e.report();
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "signing keys are unavailable",
        )
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let mut r = no_store_json(
            self.status,
            json!({ "error": self.code.as_str(), "error_description": self.description }),
        );
        match self.challenge {
            Challenge::ByCode if self.code == ErrorCode::InvalidClient => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"opentrusty\""),
                );
            }
            Challenge::ByCode => {}
            Challenge::Bearer { names_error } => {
                let challenge = if names_error {
                    format!(
                        "Bearer realm=\"opentrusty\", error=\"{}\", error_description=\"{}\"",
                        self.code.as_str(),
                        self.description
                    )
                } else {
                    "Bearer realm=\"opentrusty\"".to_owned()
                };
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

/// A storage failure on a page: a page of its own saying what did not happen ("Your password
/// was not changed.") to the person in front of the browser.
#[derive(Debug)]
pub struct PageError {
    error: StoreError,
    message: &'static str,
}

impl PageError {
    pub fn storage(error: StoreError, message: &'static str) -> Self {
        Self { error, message }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        pages::error(
            storage_status(&self.error),
            "Something went wrong",
            self.message,
        )
    }
}

/// Reports a storage failure whose caller is answered otherwise (the answer was already made,
/// or a step that may fail without failing the request).
pub fn report_storage_failure(e: &StoreError) {
    storage_status(e);
}
