//! OAuth clients: applications of a tenant that obtain tokens. The tenant of every OAuth request
//! is the tenant of its client, never a header.

use serde::{Deserialize, Serialize};

use crate::{ClientId, TenantId, Timestamp};

/// How a client proves its identity at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (no secret; PKCE is mandatory).
    None,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn is_public(self) -> bool {
        self == TokenEndpointAuthMethod::None
    }
}

/// An OAuth client as stored (its secret only as a hash, never here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthClient {
    pub id: ClientId,
    /// The public identifier applications are configured with.
    pub client_id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub first_party: bool,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// The parts of a client to register. Validation of URIs and grant types belongs to the
/// protocol layer; this is the storage shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub tenant_id: TenantId,
    pub client_id: String,
    pub name: String,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// PHC or digest of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub first_party: bool,
}
