//! The admin plane's one error type and its rendering as an RFC 9457 problem document. Every
//! failure of every handler becomes one of these kinds; none carries internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_core::rbac::Role;
use opentrusty_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Identifies the kind of problem: `urn:opentrusty:problem:<kind>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:opentrusty:problem:validation")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, for the person who sent the request.
    pub detail: String,
    /// The input field at fault (validation problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The role the caller may not grant (role-hierarchy problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "tenant_owner")]
    pub role: Option<Role>,
}

/// Which rule of the role hierarchy refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HierarchyRule {
    /// The user or client acted on holds the role (`rbac::may_act_on`).
    Target,
    /// The request grants or revokes the role (`rbac::may_grant`).
    Grant,
}

/// Why an admin request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed as a whole (bad JSON syntax, a forbidden header).
    BadRequest(String),
    /// No valid session cookie or bearer token; `bearer` adds the RFC 6750 challenge.
    Unauthenticated { detail: &'static str, bearer: bool },
    /// Authenticated, but lacking the permission (or failing the CSRF rules).
    Forbidden(&'static str),
    /// Holding the permission, but the role hierarchy refuses: `role` is one the caller may not
    /// grant, held by the target or named by the request.
    RoleHierarchy { rule: HierarchyRule, role: Role },
    /// No such resource, or one the caller may not know exists.
    NotFound,
    /// The change conflicts with what exists.
    Conflict(String),
    /// A field is invalid.
    Validation { field: String, message: String },
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The database is unreachable right now.
    Unavailable,
    /// Something failed that the caller cannot fix; details are in the server log only.
    Internal,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthenticated { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RoleHierarchy { .. } => {
                (StatusCode::FORBIDDEN, "role-hierarchy", "Role hierarchy")
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Validation { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid input",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(d) | ApiError::Conflict(d) => d.clone(),
            ApiError::Unauthenticated { detail, .. } | ApiError::Forbidden(detail) => {
                (*detail).to_owned()
            }
            ApiError::RoleHierarchy {
                rule: HierarchyRule::Target,
                role,
            } => format!(
                "a caller may act on a user or a client only if it may grant every role that \
                 target holds: this one holds {}, which you may not grant",
                role.as_str()
            ),
            ApiError::RoleHierarchy {
                rule: HierarchyRule::Grant,
                role,
            } => format!(
                "nobody grants or revokes a role with a permission they do not hold: you may not \
                 grant {}",
                role.as_str()
            ),
            ApiError::NotFound => "no such resource".to_owned(),
            ApiError::Validation { field, message } => format!("{field}: {message}"),
            ApiError::UnsupportedMediaType => "send the body as application/json".to_owned(),
            ApiError::Unavailable => "the database is unavailable; retry shortly".to_owned(),
            ApiError::Internal => "the request could not be completed".to_owned(),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        Problem {
            kind: format!("urn:opentrusty:problem:{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            field: match self {
                ApiError::Validation { field, .. } => Some(field.clone()),
                _ => None,
            },
            role: match self {
                ApiError::RoleHierarchy { role, .. } => Some(*role),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthenticated { bearer: true, .. } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"opentrusty\", error=\"invalid_token\"",
                    ),
                );
            }
            ApiError::Unauthenticated { bearer: false, .. } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"opentrusty\""),
                );
            }
            ApiError::Unavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StoreError::Refused(why) => ApiError::Conflict(why),
            StoreError::Invalid(d) => ApiError::validation(d.field, d.message),
            StoreError::Unavailable(_) | StoreError::InDoubt(_) | StoreError::Unwritable(_) => {
                opentrusty_store::outage::refused(&e);
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::Internal
            }
        }
    }
}

impl From<opentrusty_core::DomainError> for ApiError {
    fn from(d: opentrusty_core::DomainError) -> Self {
        ApiError::validation(d.field, d.message)
    }
}
