//! An access token presented back to the plane (UserInfo, revocation, introspection): where to
//! look it up, and its record.

use opentrusty_core::Timestamp;
use opentrusty_core::secret::token_digest;
use opentrusty_store::{AccessTokenKey, AccessTokenRecord};
use serde_json::Value;

use crate::AuthState;
use crate::error::JsonError;

/// Resolves a presented access token (JWT or opaque) to its record at `at`, whatever its state.
pub(crate) async fn resolve(
    state: &AuthState,
    token: &str,
    at: Timestamp,
) -> Result<Option<AccessTokenRecord>, JsonError> {
    let found = match key(state, token).await {
        Some(AccessTokenKey::Jti(jti)) => state.store().find_access_token(jti, at).await?,
        Some(AccessTokenKey::Digest(digest)) => {
            state
                .store()
                .find_access_token_by_digest(&digest, at)
                .await?
        }
        None => None,
    };
    Ok(found)
}

/// Where to look a presented access token up; `None` for a JWT that is not one of ours (bad
/// signature, wrong type or issuer, no `jti`).
pub(crate) async fn key(state: &AuthState, token: &str) -> Option<AccessTokenKey> {
    if !token.contains('.') {
        return Some(AccessTokenKey::Digest(token_digest(token)));
    }
    let (header, claims) = state.keys().verify(token).await.ok()?;
    if header.typ.as_deref() != Some("at+jwt")
        || claims.get("iss").and_then(Value::as_str) != Some(state.issuer())
    {
        return None;
    }
    claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::parse_str(j).ok())
        .map(AccessTokenKey::Jti)
}
