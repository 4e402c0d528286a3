//! OpenID Connect and OAuth 2.0 protocol logic: JOSE (signing keys, JWS, JWKs, key encryption at
//! rest), authorization request validation, PKCE, token grants and claims. No HTTP and no
//! database: the auth plane calls into this crate and stores what it returns.

pub mod authorize;
pub mod claims;
pub mod error;
pub mod jose;
pub mod pkce;
pub mod redirect;
pub mod scope;
