//! The JSON shapes of the admin API: requests the handlers decode and responses they send. The
//! OpenAPI document is generated from these same types.

use opentrusty_core::DomainError;
use opentrusty_core::audit::{Actor, AuditEvent};
use opentrusty_core::client::{
    AccessTokenFormat, ClientSettings, GrantType, OAuthClient, TokenEndpointAuthMethod,
};
use opentrusty_core::rbac::{Role, Scope};
use opentrusty_core::session::Session;
use opentrusty_core::signing::Algorithm;
use opentrusty_core::tenant::Tenant;
use opentrusty_core::user::User;
use opentrusty_core::{Timestamp, now};
use opentrusty_store::StoredKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::input::double_option;

// ---------------------------------------------------------------- tenants

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
    pub status: TenantStatusName,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Lifecycle state of a tenant (`deleted` tenants are never returned).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatusName {
    Active,
    Suspended,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            display_name: t.display_name,
            logo_url: t.logo_url,
            accent_color: t.accent_color,
            status: match t.status {
                opentrusty_core::tenant::TenantStatus::Active => TenantStatusName::Active,
                _ => TenantStatusName::Suspended,
            },
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique among live tenants, compared case-insensitively; 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub display_name: Option<String>,
}

/// Absent fields stay as they are; `null` clears an optional one. `name` and `status` need
/// `platform:manage_tenants`; the display settings need `tenant:update_settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub display_name: Option<Option<String>>,
    /// An https image URL shown on the tenant's sign-in pages.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub logo_url: Option<Option<String>>,
    /// `#rrggbb`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub accent_color: Option<Option<String>>,
    pub status: Option<TenantStatusName>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub items: Vec<TenantView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- users

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub email: String,
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub status: UserStatusName,
    /// Whether sign-in is locked after repeated failures right now.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UserStatusName {
    Active,
    Disabled,
}

impl From<UserStatusName> for opentrusty_core::user::UserStatus {
    fn from(s: UserStatusName) -> Self {
        match s {
            UserStatusName::Active => Self::Active,
            UserStatusName::Disabled => Self::Disabled,
        }
    }
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            tenant_id: u.tenant_id.map(|t| t.0),
            email: u.email,
            email_verified: u.email_verified,
            given_name: u.given_name,
            family_name: u.family_name,
            status: match u.status {
                opentrusty_core::user::UserStatus::Active => UserStatusName::Active,
                opentrusty_core::user::UserStatus::Disabled => UserStatusName::Disabled,
            },
            locked: u.locked_until.is_some_and(|t| t > now()),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A user with the roles they hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    pub roles: Vec<AssignmentView>,
}

/// The roles a tenant's users and service accounts may be given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum TenantRoleName {
    #[serde(rename = "tenant_owner")]
    Owner,
    #[serde(rename = "tenant_admin")]
    Admin,
    #[serde(rename = "tenant_member")]
    Member,
    /// For a service-account client that is an API: it may introspect the tenant's tokens.
    #[serde(rename = "tenant_resource_server")]
    ResourceServer,
}

impl From<TenantRoleName> for Role {
    fn from(r: TenantRoleName) -> Self {
        match r {
            TenantRoleName::Owner => Role::TenantOwner,
            TenantRoleName::Admin => Role::TenantAdmin,
            TenantRoleName::Member => Role::TenantMember,
            TenantRoleName::ResourceServer => Role::TenantResourceServer,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// An email address, at most 254 characters.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"
    )]
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// A tenant role to grant at once.
    pub role: Option<TenantRoleName>,
}

/// Absent fields stay as they are; `null` clears a name. Disabling ends the user's sessions and
/// revokes their tokens.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub family_name: Option<Option<String>>,
    pub status: Option<UserStatusName>,
}

/// A new user and the link with which they set their password.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    /// Single-use link to the auth plane where the user sets a password.
    pub enrollment_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrollment_expires_at: Timestamp,
}

/// A password-reset link; earlier unused links of the user stop working.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentLinkView {
    pub enrollment_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrollment_expires_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only users whose email starts with this (case-insensitive).
    pub email_prefix: Option<String>,
    pub status: Option<UserStatusName>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

// ---------------------------------------------------------------- roles

/// A role held at a scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignmentView {
    pub role: String,
    /// `platform`, `tenant` or `client`.
    pub scope: String,
    pub tenant_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
}

impl From<(Role, Scope)> for AssignmentView {
    fn from((role, scope): (Role, Scope)) -> Self {
        let (tenant_id, client_id) = match scope {
            Scope::Platform => (None, None),
            Scope::Tenant(t) => (Some(t.0), None),
            Scope::Client { tenant, client } => (Some(tenant.0), Some(client.0)),
        };
        Self {
            role: role.as_str().to_owned(),
            scope: scope.kind().as_str().to_owned(),
            tenant_id,
            client_id,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    pub role: TenantRoleName,
}

// ---------------------------------------------------------------- clients

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

// ---------------------------------------------------------------- sessions

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub auth_time: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            id: s.id.0,
            auth_time: s.auth_time,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    /// How many sessions ended.
    pub ended: u64,
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActorView {
    /// `system`, `user`, `client` or `anonymous`.
    pub kind: String,
    pub id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTargetView {
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    pub tenant_id: Option<Uuid>,
    /// The action, `<thing>.<past tense>` (`user.created`).
    #[serde(rename = "type")]
    pub action: String,
    pub actor: AuditActorView,
    pub target: Option<AuditTargetView>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// What changed (before and after), without secrets.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id.0,
            occurred_at: e.occurred_at,
            tenant_id: e.tenant_id.map(|t| t.0),
            action: e.action,
            actor: AuditActorView {
                kind: e.actor.kind().to_owned(),
                id: match e.actor {
                    Actor::User(u) => Some(u.0),
                    Actor::Client(c) => Some(c.0),
                    Actor::System | Actor::Anonymous => None,
                },
            },
            target: e.target.map(|t| AuditTargetView {
                kind: t.kind,
                id: t.id,
            }),
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            metadata: e.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The event type (action), exactly: `user.created`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub action: Option<String>,
    /// The actor's id.
    #[param(value_type = Option<String>, format = Uuid)]
    pub actor: Option<String>,
    /// The target's id.
    pub target: Option<String>,
    /// Events at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Events before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}

// ---------------------------------------------------------------- keys

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    /// `next` (published, not yet signing), `active` (signing) or `retired`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<Timestamp>,
    /// A retired key stays in the JWKS until then.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub publish_until: Option<Timestamp>,
    /// The public half, as a JWK.
    #[schema(value_type = Object)]
    pub public_jwk: serde_json::Value,
}

impl From<StoredKey> for KeyView {
    fn from(k: StoredKey) -> Self {
        Self {
            kid: k.kid,
            alg: k.alg,
            status: k.status,
            created_at: k.created_at,
            activated_at: k.activated_at,
            retired_at: k.retired_at,
            publish_until: k.publish_until,
            public_jwk: k.public_jwk,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    /// `RS256`, `ES256` or `EdDSA`; omitted: every algorithm with an active key.
    pub alg: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    pub alg: String,
    pub retired_kid: String,
    pub active_kid: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKeys {
    pub rotated: Vec<RotatedKey>,
}

// ---------------------------------------------------------------- me

/// The caller: a console user or a service-account client, where it lives and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `user` or `client`.
    pub kind: String,
    pub user: Option<UserView>,
    pub client: Option<ClientView>,
    /// The caller's tenant; absent for platform operators.
    pub tenant: Option<TenantView>,
    pub roles: Vec<AssignmentView>,
    /// Permission names the caller holds anywhere.
    pub permissions: Vec<String>,
    /// For cookie sessions: the value to send as `X-CSRF-Token` on changes.
    pub csrf_token: Option<String>,
}
