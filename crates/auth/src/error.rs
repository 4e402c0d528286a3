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
/// implies, `WWW-Authenticate` for a failed client authentication, `Retry-After` with 503.
#[derive(Debug)]
pub struct JsonError {
    pub code: ErrorCode,
    pub description: &'static str,
    pub status: StatusCode,
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
        if self.code == ErrorCode::InvalidClient {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"opentrusty\""),
            );
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
