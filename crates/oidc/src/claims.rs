//! Token and UserInfo claims (OIDC Core §2, §5.1, §5.4; RFC 9068 §2.2).

use opentrusty_core::user::User;
use serde_json::{Map, Value, json};

use crate::scope::Scopes;

/// Everything an ID token says.
#[derive(Debug, Clone)]
pub struct IdTokenClaims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub at_hash: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub user: &'a User,
    pub scopes: &'a Scopes,
}

impl IdTokenClaims<'_> {
    pub fn to_json(&self) -> Value {
        let mut claims = serde_json::Map::new();
        for (name, value) in [
            ("iss", json!(self.issuer)),
            ("sub", json!(self.subject)),
            ("aud", json!(self.client_id)),
            ("azp", json!(self.client_id)),
            ("exp", json!(self.expires_at)),
            ("iat", json!(self.issued_at)),
            ("auth_time", json!(self.auth_time)),
        ] {
            claims.insert(name.into(), value);
        }
        let map = &mut claims;
        if let Some(n) = self.nonce {
            map.insert("nonce".into(), n.into());
        }
        if let Some(h) = self.at_hash {
            map.insert("at_hash".into(), h.into());
        }
        if let Some(s) = self.session_id {
            map.insert("sid".into(), s.into());
        }
        add_profile_claims(map, self.user, self.scopes);
        Value::Object(claims)
    }
}

/// Claims of an RFC 9068 access token.
pub fn access_token_claims(
    issuer: &str,
    subject: &str,
    client_id: &str,
    scope: &str,
    jti: &str,
    issued_at: i64,
    expires_at: i64,
) -> Value {
    json!({
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "client_id": client_id,
        "scope": scope,
        "jti": jti,
        "iat": issued_at,
        "exp": expires_at,
    })
}

/// UserInfo response: `sub` plus the claims the scopes release.
pub fn userinfo(user: &User, scopes: &Scopes) -> Value {
    let mut map = Map::new();
    map.insert("sub".into(), user.id.to_string().into());
    add_profile_claims(&mut map, user, scopes);
    Value::Object(map)
}

fn add_profile_claims(map: &mut Map<String, Value>, user: &User, scopes: &Scopes) {
    if scopes.contains("email") {
        map.insert("email".into(), user.email.clone().into());
        map.insert("email_verified".into(), user.email_verified.into());
    }
    if scopes.contains("profile") {
        if let Some(g) = &user.given_name {
            map.insert("given_name".into(), g.clone().into());
        }
        if let Some(f) = &user.family_name {
            map.insert("family_name".into(), f.clone().into());
        }
        let name = [user.given_name.as_deref(), user.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            map.insert("name".into(), name.into());
        }
    }
}

/// The discovery document (OpenID Connect Discovery 1.0 §3) for `issuer`.
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "sid",
            "email", "email_verified", "name", "given_name", "family_name"
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The discovery document relying parties configure themselves from: a change to it is a
    /// change to the protocol surface and shows here as a snapshot to review.
    #[test]
    fn the_discovery_document_is_as_published() {
        insta::assert_json_snapshot!(discovery("https://idp.example"));
    }
}
