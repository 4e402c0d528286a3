//! The OpenAPI 3.1 document of the admin API: its description here, its paths from the routes as
//! declared (`crate::declared`) with the request and response types they use; served at
//! `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenTrusty admin API",
        description = "Management API of OpenTrusty: tenants, users, roles, OAuth clients, \
                       sessions, audit trail and signing keys. Authenticate with the session \
                       cookie of the auth plane's sign-in (changes also need `X-CSRF-Token`) or \
                       with a bearer access token of a service-account client. Errors are RFC 9457 \
                       problem documents.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&SecuritySchemes),
    security(("session" = []), ("bearer" = [])),
    tags(
        (name = "session", description = "The caller"),
        (name = "tenants", description = "Tenants (platform administrators)"),
        (name = "users", description = "A tenant's users"),
        (name = "roles", description = "Tenant roles of users and service-account clients"),
        (name = "clients", description = "A tenant's OAuth clients"),
        (name = "sessions", description = "Users' browser sessions"),
        (name = "audit", description = "The audit trail, newest first"),
        (name = "keys", description = "Token signing keys (platform administrators)"),
        (name = "meta", description = "This document"),
    )
)]
pub(crate) struct AdminApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                opentrusty_web::SESSION_COOKIE,
                "The session cookie set by the auth plane's sign-in",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token the auth plane issued to a client_credentials client",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, built once from the routes as declared.
pub(crate) fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| crate::declared().1)
}

/// The document as JSON text, built once.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".to_owned()))
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}
