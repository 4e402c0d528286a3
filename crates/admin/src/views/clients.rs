//! OAuth clients as the API shows them and the requests that register and change them.

use opentrusty_core::DomainError;
use opentrusty_core::Timestamp;
use opentrusty_core::client::{
    AccessTokenFormat, ClientSettings, GrantType, OAuthClient, TokenEndpointAuthMethod,
};
use opentrusty_core::signing::Algorithm;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::roles::AssignmentView;

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    /// Internal id, used in the API's paths.
    pub id: Uuid,
    /// The public identifier applications are configured with.
    pub client_id: String,
    pub tenant_id: Uuid,
    pub client_name: String,
    pub token_endpoint_auth_method: AuthMethodName,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Origins (`https://app.example`) of a single-page app: CORS on the token, revocation and
    /// UserInfo endpoints for this public client's requests.
    pub web_origins: Vec<String>,
    pub grant_types: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub access_token_format: TokenFormatName,
    pub id_token_signed_response_alg: String,
    pub first_party: bool,
    pub require_pkce: bool,
    /// Lifetimes in seconds.
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub id_token_ttl: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodName {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: no secret, PKCE required.
    None,
}

impl From<AuthMethodName> for TokenEndpointAuthMethod {
    fn from(m: AuthMethodName) -> Self {
        match m {
            AuthMethodName::ClientSecretBasic => Self::ClientSecretBasic,
            AuthMethodName::ClientSecretPost => Self::ClientSecretPost,
            AuthMethodName::None => Self::None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormatName {
    Jwt,
    Opaque,
}

impl From<TokenFormatName> for AccessTokenFormat {
    fn from(f: TokenFormatName) -> Self {
        match f {
            TokenFormatName::Jwt => Self::Jwt,
            TokenFormatName::Opaque => Self::Opaque,
        }
    }
}

impl From<OAuthClient> for ClientView {
    fn from(c: OAuthClient) -> Self {
        Self {
            id: c.id.0,
            client_id: c.client_id,
            tenant_id: c.tenant_id.0,
            client_name: c.name,
            token_endpoint_auth_method: match c.token_endpoint_auth_method {
                TokenEndpointAuthMethod::ClientSecretBasic => AuthMethodName::ClientSecretBasic,
                TokenEndpointAuthMethod::ClientSecretPost => AuthMethodName::ClientSecretPost,
                TokenEndpointAuthMethod::None => AuthMethodName::None,
            },
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            web_origins: c.web_origins,
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            allowed_scopes: c.allowed_scopes,
            access_token_format: match c.access_token_format {
                AccessTokenFormat::Jwt => TokenFormatName::Jwt,
                AccessTokenFormat::Opaque => TokenFormatName::Opaque,
            },
            id_token_signed_response_alg: c.id_token_signed_response_alg.as_str().to_owned(),
            first_party: c.first_party,
            require_pkce: c.require_pkce,
            access_token_ttl: c.access_token_ttl_secs,
            refresh_token_ttl: c.refresh_token_ttl_secs,
            id_token_ttl: c.id_token_ttl_secs,
            created_at: c.created_at,
        }
    }
}

/// A client with the roles it holds as a service account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientDetail {
    #[serde(flatten)]
    pub client: ClientView,
    pub roles: Vec<AssignmentView>,
}

/// A client to register. Omitted settings take the defaults: grant types
/// `authorization_code` and `refresh_token`, scopes `openid profile email offline_access`,
/// JWT access tokens, RS256 ID tokens, PKCE required, lifetimes 900 s (access and ID token)
/// and 30 days (refresh token).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    #[schema(min_length = 1, max_length = 100)]
    pub client_name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Only for public clients (`token_endpoint_auth_method` `none`) that run in a browser.
    #[serde(default)]
    pub web_origins: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub allowed_scopes: Option<Vec<String>>,
    /// Default `client_secret_basic`; `none` registers a public client.
    pub token_endpoint_auth_method: Option<AuthMethodName>,
    pub access_token_format: Option<TokenFormatName>,
    /// `RS256`, `ES256` or `EdDSA`.
    pub id_token_signed_response_alg: Option<String>,
    pub first_party: Option<bool>,
    pub require_pkce: Option<bool>,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub id_token_ttl: Option<i64>,
}

/// Absent fields stay as they are. The authentication method cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub web_origins: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub allowed_scopes: Option<Vec<String>>,
    pub access_token_format: Option<TokenFormatName>,
    pub id_token_signed_response_alg: Option<String>,
    pub first_party: Option<bool>,
    pub require_pkce: Option<bool>,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub id_token_ttl: Option<i64>,
}

impl UpdateClient {
    /// Writes the fields this change names into `s`; a grant type or an algorithm that does not
    /// exist is refused here, the rules between fields by [`ClientSettings::validate`].
    pub fn apply(self, s: &mut ClientSettings) -> Result<(), DomainError> {
        if let Some(v) = self.client_name {
            s.name = v;
        }
        if let Some(v) = self.redirect_uris {
            s.redirect_uris = v;
        }
        if let Some(v) = self.post_logout_redirect_uris {
            s.post_logout_redirect_uris = v;
        }
        if let Some(v) = self.web_origins {
            s.web_origins = v;
        }
        if let Some(v) = self.grant_types {
            s.grant_types = GrantType::parse_all(&v)?;
        }
        if let Some(v) = self.allowed_scopes {
            s.allowed_scopes = v;
        }
        if let Some(v) = self.access_token_format {
            s.access_token_format = v.into();
        }
        if let Some(v) = self.id_token_signed_response_alg {
            s.id_token_signed_response_alg =
                Algorithm::parse_field(&v, "id_token_signed_response_alg")?;
        }
        if let Some(v) = self.first_party {
            s.first_party = v;
        }
        if let Some(v) = self.require_pkce {
            s.require_pkce = v;
        }
        if let Some(v) = self.access_token_ttl {
            s.access_token_ttl_secs = v;
        }
        if let Some(v) = self.refresh_token_ttl {
            s.refresh_token_ttl_secs = v;
        }
        if let Some(v) = self.id_token_ttl {
            s.id_token_ttl_secs = v;
        }
        Ok(())
    }
}

impl CreateClient {
    /// The registration as changes to the default settings.
    pub fn into_changes(self) -> UpdateClient {
        UpdateClient {
            client_name: Some(self.client_name),
            redirect_uris: Some(self.redirect_uris),
            post_logout_redirect_uris: Some(self.post_logout_redirect_uris),
            web_origins: Some(self.web_origins),
            grant_types: self.grant_types,
            allowed_scopes: self.allowed_scopes,
            access_token_format: self.access_token_format,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            first_party: self.first_party,
            require_pkce: self.require_pkce,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            id_token_ttl: self.id_token_ttl,
        }
    }
}

/// A registered client and, for a confidential client, its secret: shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedClient {
    pub client: ClientView,
    pub client_secret: Option<String>,
}

/// The client's new secret, shown this once only; the old one stops working at once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    pub client: ClientView,
    pub client_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    pub items: Vec<ClientView>,
    pub next_cursor: Option<String>,
}
