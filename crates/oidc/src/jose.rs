//! JOSE: signing keys, compact JWS, JWKs, and encryption of private keys at rest.
