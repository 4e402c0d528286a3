//! Signing keys as the API shows them and the rotation request and answer.

use opentrusty_core::Timestamp;
use opentrusty_store::StoredKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
