//! Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3):
//! the credentials a request offers (HTTP Basic, or `client_id` and `client_secret` in the body;
//! public clients send `client_id` alone), checked against the client as stored.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opentrusty_core::client::{OAuthClient, TokenEndpointAuthMethod, client_secret_matches};
use opentrusty_core::now;
use opentrusty_store::{AccessTokenKey, AccessTokenRecord, ClientAccess};

use crate::AuthState;
use crate::error::JsonError;
use crate::http::{self, Form};

fn form_urldecode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// The client id and secret of an HTTP Basic `Authorization` value; `None` if it is anything
/// else. RFC 6749 §2.3.1: both parts are form-encoded before Base64.
pub(crate) fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// The client a request names and the proof it offers, before anything is looked up.
pub(super) struct ClaimedClient {
    pub id: String,
    pub secret: Option<String>,
    pub method: TokenEndpointAuthMethod,
}

impl ClaimedClient {
    /// Reads the client's credentials from the request.
    pub(super) fn decode(headers: &HeaderMap, form: &Form) -> Result<ClaimedClient, JsonError> {
        let basic = match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(value) => Some(basic_credentials(value).ok_or_else(JsonError::invalid_client)?),
            None => None,
        };
        let body_id = http::single(form, "client_id").map_err(|()| JsonError::repeated())?;
        let body_secret =
            http::single(form, "client_secret").map_err(|()| JsonError::repeated())?;
        match (basic, body_id, body_secret) {
            (Some(_), _, Some(_)) => Err(JsonError::invalid_request(
                "use one client authentication method",
            )),
            (Some((id, secret)), body, None) => {
                if body.is_some_and(|b| b != id) {
                    return Err(JsonError::invalid_client());
                }
                Ok(ClaimedClient {
                    id,
                    secret: Some(secret),
                    method: TokenEndpointAuthMethod::ClientSecretBasic,
                })
            }
            (None, Some(id), Some(secret)) => Ok(ClaimedClient {
                id: id.to_owned(),
                secret: Some(secret.to_owned()),
                method: TokenEndpointAuthMethod::ClientSecretPost,
            }),
            (None, Some(id), None) => Ok(ClaimedClient {
                id: id.to_owned(),
                secret: None,
                method: TokenEndpointAuthMethod::None,
            }),
            (None, None, _) => Err(JsonError::invalid_client()),
        }
    }

    /// The client as stored, if the claim holds for it: live and usable, registered for this
    /// authentication method, and the secret matching.
    pub(super) fn verify(&self, access: Option<ClientAccess>) -> Result<OAuthClient, JsonError> {
        let access = access.ok_or_else(JsonError::invalid_client)?;
        self.check(&access)?;
        Ok(access.client)
    }

    /// [`ClaimedClient::verify`] on a client that was found.
    pub(super) fn check(&self, access: &ClientAccess) -> Result<(), JsonError> {
        if !access.usable || access.client.token_endpoint_auth_method != self.method {
            return Err(JsonError::invalid_client());
        }
        if let Some(secret) = &self.secret
            && !access
                .secret_hash
                .as_deref()
                .is_some_and(|h| client_secret_matches(secret, h))
        {
            return Err(JsonError::invalid_client());
        }
        Ok(())
    }
}

/// Authenticates the calling client by the method it is registered with.
pub(crate) async fn authenticate_client(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<OAuthClient, JsonError> {
    authenticate_client_with_access_token(state, headers, form, None)
        .await
        .map(|(client, _)| client)
}

/// [`authenticate_client`], reading the access token `key` names (if any) in the same round
/// trip; the token is returned whoever it was issued to.
pub(crate) async fn authenticate_client_with_access_token(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
    key: Option<AccessTokenKey>,
) -> Result<(OAuthClient, Option<AccessTokenRecord>), JsonError> {
    let claimed = ClaimedClient::decode(headers, form)?;
    let store = state.store();
    let (access, token) = match key {
        Some(key) => store
            .find_client_with_access_token(&claimed.id, key, now())
            .await?
            .map_or((None, None), |(access, token)| (Some(access), token)),
        None => (store.find_client_for_request(&claimed.id).await?, None),
    };
    Ok((claimed.verify(access)?, token))
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    /// The Basic credentials parser and the form decoder take raw client input: no panic.
    #[test]
    fn basic_credentials_and_forms_never_panic() {
        let runs = opentrusty_testkit::fuzz(
            "basic+form",
            &[
                b"Basic YWNtZS13ZWI6c2VjcmV0",
                b"Basic JUZGJTAwOiUyNQ==",
                b"grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fa.example",
            ],
            |b| {
                let text = String::from_utf8_lossy(b);
                let _ = basic_credentials(&text);
                let pairs = http::pairs(b);
                let _ = http::single(&pairs, "grant_type");
                let _ = form_urldecode(&text);
            },
        );
        eprintln!("basic+form: {runs} inputs");
    }
}
