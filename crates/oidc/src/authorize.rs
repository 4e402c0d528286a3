//! Validation of authorization requests (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).
//! Until the client and its redirect URI are known to be good, errors are shown to the user and
//! never redirected (RFC 6749 §4.1.2.1); after that, they go back to the client.

use opentrusty_core::client::OAuthClient;
use opentrusty_core::pkce::PkceMethod;

use crate::error::{ErrorCode, OAuthError};
use crate::pkce;
use crate::scope::Scopes;

/// The raw parameters of an authorization request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    /// A request object (OIDC Core §6.1), by value or by reference: not supported, and never
    /// ignored (the parameters it carries, such as `state` and `nonce`, would be lost).
    pub request: Option<String>,
    pub request_uri: Option<String>,
    /// Parameters that appeared more than once (RFC 6749 §3.1 forbids it).
    pub repeated: Vec<String>,
}

impl AuthorizeParams {
    /// Collects the parameters we understand from decoded pairs; unknown ones are ignored.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut p = AuthorizeParams::default();
        for (k, v) in pairs {
            let slot = match k {
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "response_type" => &mut p.response_type,
                "scope" => &mut p.scope,
                "state" => &mut p.state,
                "nonce" => &mut p.nonce,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                "prompt" => &mut p.prompt,
                "max_age" => &mut p.max_age,
                "request" => &mut p.request,
                "request_uri" => &mut p.request_uri,
                _ => continue,
            };
            if slot.is_some() {
                p.repeated.push(k.to_owned());
            }
            // An empty value counts as absent (RFC 6749 §3.1).
            *slot = (!v.is_empty()).then(|| v.to_owned());
        }
        p
    }
}

/// Which `prompt` values were asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (else the client's only registered one is
    /// used): the token request must then repeat it (RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// How `code_challenge` was derived; `Some` exactly when it is.
    pub code_challenge_method: Option<PkceMethod>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
}

/// Why a request was refused, and how the user or client learns of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The client or redirect URI cannot be trusted: show this message, do not redirect.
    Page(&'static str),
    /// Send the error back to the (validated) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// Longest `state` and `nonce` accepted, to bound what we store and echo.
const MAX_ECHOED_LEN: usize = 2048;

/// Validates a request against its client. `client` is `None` when no live client has that
/// `client_id`; `client_usable` is false when the client or its tenant is disabled.
pub fn validate(
    params: &AuthorizeParams,
    client: Option<&OAuthClient>,
    client_usable: bool,
) -> Result<AuthorizeRequest, Rejection> {
    if params
        .repeated
        .iter()
        .any(|k| k == "client_id" || k == "redirect_uri")
    {
        return Err(Rejection::Page(
            "The request repeats a parameter it may carry only once.",
        ));
    }
    let Some(client) = client.filter(|_| client_usable) else {
        return Err(Rejection::Page(
            "The application that sent you here is not known or is disabled.",
        ));
    };
    let redirect_uri = match (&params.redirect_uri, client.redirect_uris.as_slice()) {
        (Some(given), registered) if registered.iter().any(|r| r == given) => given.clone(),
        (None, [only]) => only.clone(),
        _ => {
            return Err(Rejection::Page(
                "The application asked to send you to an address it has not registered.",
            ));
        }
    };
    let state = params.state.clone();
    let reject = |code: ErrorCode, description: &str| Rejection::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone().filter(|s| s.len() <= MAX_ECHOED_LEN),
        error: OAuthError::new(code, description),
    };

    if !params.repeated.is_empty() {
        return Err(reject(
            ErrorCode::InvalidRequest,
            "a parameter was repeated",
        ));
    }
    if params.request.is_some() {
        return Err(reject(
            ErrorCode::RequestNotSupported,
            "request objects are not supported; send the parameters in the query",
        ));
    }
    if params.request_uri.is_some() {
        return Err(reject(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported; send the parameters in the query",
        ));
    }
    if state.as_ref().is_some_and(|s| s.len() > MAX_ECHOED_LEN)
        || params
            .nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_ECHOED_LEN)
    {
        return Err(reject(
            ErrorCode::InvalidRequest,
            "state or nonce is too long",
        ));
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(reject(
                ErrorCode::InvalidRequest,
                "response_type is required",
            ));
        }
        Some(_) => {
            return Err(reject(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    if !client
        .grant_types
        .contains(&opentrusty_core::client::GrantType::AuthorizationCode)
    {
        return Err(reject(
            ErrorCode::UnauthorizedClient,
            "the client may not use the authorization code grant",
        ));
    }
    let Some(scopes) = Scopes::parse(params.scope.as_deref().unwrap_or("")) else {
        return Err(reject(ErrorCode::InvalidScope, "the scope is malformed"));
    };
    if scopes.is_empty() {
        return Err(reject(ErrorCode::InvalidScope, "a scope is required"));
    }
    if !scopes.is_subset(&Scopes::from_list(&client.allowed_scopes)) {
        return Err(reject(
            ErrorCode::InvalidScope,
            "the requested scope exceeds what the client may ask for",
        ));
    }
    let method = params
        .code_challenge_method
        .as_deref()
        .map(PkceMethod::parse);
    let code_challenge = match (&params.code_challenge, method) {
        (None, None) if !(client.require_pkce || client.token_endpoint_auth_method.is_public()) => {
            None
        }
        (None, _) => {
            return Err(reject(
                ErrorCode::InvalidRequest,
                "code_challenge (PKCE, S256) is required",
            ));
        }
        (Some(c), Some(Some(PkceMethod::S256))) if pkce::is_valid_challenge(c) => {
            Some((c.clone(), PkceMethod::S256))
        }
        (Some(_), Some(Some(PkceMethod::S256))) => {
            return Err(reject(
                ErrorCode::InvalidRequest,
                "code_challenge is malformed",
            ));
        }
        (Some(_), _) => {
            return Err(reject(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256",
            ));
        }
    };
    let (code_challenge, code_challenge_method) = code_challenge.unzip();
    let mut prompt = Prompt::default();
    for value in params
        .prompt
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            _ => {
                return Err(reject(
                    ErrorCode::InvalidRequest,
                    "unsupported prompt value",
                ));
            }
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(reject(
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match params.max_age.as_deref() {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(reject(
                    ErrorCode::InvalidRequest,
                    "max_age must be a number",
                ));
            }
        },
    };
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_given: params.redirect_uri.is_some(),
        scopes,
        state,
        nonce: params.nonce.clone(),
        code_challenge,
        code_challenge_method,
        prompt,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentrusty_core::TenantId;
    use opentrusty_core::client::{NewClient, TokenEndpointAuthMethod};

    fn client(method: TokenEndpointAuthMethod) -> OAuthClient {
        let n = NewClient::new(TenantId::new(), "app", "App", method, None);
        OAuthClient {
            id: opentrusty_core::ClientId::new(),
            client_id: n.client_id,
            tenant_id: n.tenant_id,
            name: n.name,
            token_endpoint_auth_method: method,
            redirect_uris: vec![
                "https://app.example/cb".into(),
                "https://app.example/cb2".into(),
            ],
            post_logout_redirect_uris: vec![],
            web_origins: vec![],
            grant_types: n.grant_types,
            allowed_scopes: n.allowed_scopes,
            first_party: false,
            access_token_format: n.access_token_format,
            id_token_signed_response_alg: n.id_token_signed_response_alg,
            require_pkce: n.require_pkce,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 900,
            id_token_ttl_secs: 900,
            active: true,
            created_at: opentrusty_core::now(),
        }
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &[(&str, &str)]) -> AuthorizeParams {
        let mut pairs = vec![
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", "xyz"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k, v));
        }
        AuthorizeParams::from_pairs(pairs)
    }

    fn redirect_error(r: Result<AuthorizeRequest, Rejection>) -> (ErrorCode, Option<String>) {
        match r {
            Err(Rejection::Redirect { error, state, .. }) => (error.code, state),
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes() {
        let c = client(TokenEndpointAuthMethod::ClientSecretBasic);
        let r = validate(
            &params(&[("prompt", "login"), ("max_age", "60")]),
            Some(&c),
            true,
        )
        .unwrap();
        assert_eq!(r.scopes.to_string(), "openid profile");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert!(r.prompt.login);
        assert_eq!(r.max_age, Some(60));
    }

    #[test]
    fn unknown_client_or_unregistered_redirect_is_a_page_not_a_redirect() {
        let c = client(TokenEndpointAuthMethod::ClientSecretBasic);
        assert!(matches!(
            validate(&params(&[]), None, true),
            Err(Rejection::Page(_))
        ));
        assert!(matches!(
            validate(&params(&[]), Some(&c), false),
            Err(Rejection::Page(_))
        ));
        for uri in [
            "https://evil.example/cb",
            "https://app.example/cb/",
            "https://app.example/CB",
        ] {
            let r = validate(&params(&[("redirect_uri", uri)]), Some(&c), true);
            assert!(matches!(r, Err(Rejection::Page(_))), "{uri}");
        }
        // Two registered URIs: the parameter is required.
        let mut p = params(&[]);
        p.redirect_uri = None;
        assert!(matches!(
            validate(&p, Some(&c), true),
            Err(Rejection::Page(_))
        ));
    }

    #[test]
    fn protocol_errors_redirect_with_state() {
        let c = client(TokenEndpointAuthMethod::ClientSecretBasic);
        let cases: &[(&[(&str, &str)], ErrorCode)] = &[
            (
                &[("response_type", "token")],
                ErrorCode::UnsupportedResponseType,
            ),
            (&[("scope", "openid admin")], ErrorCode::InvalidScope),
            (
                &[("code_challenge_method", "plain")],
                ErrorCode::InvalidRequest,
            ),
            (&[("code_challenge", "short")], ErrorCode::InvalidRequest),
            (&[("prompt", "none login")], ErrorCode::InvalidRequest),
            (&[("prompt", "select_account")], ErrorCode::InvalidRequest),
            (&[("max_age", "soon")], ErrorCode::InvalidRequest),
            (
                &[("request", "eyJhbGciOiJub25lIn0.e30.")],
                ErrorCode::RequestNotSupported,
            ),
            (
                &[("request_uri", "https://app.example/request.jwt")],
                ErrorCode::RequestUriNotSupported,
            ),
            (
                &[("request", "x"), ("request_uri", "urn:example:r")],
                ErrorCode::RequestNotSupported,
            ),
        ];
        for (extra, code) in cases {
            let (got, state) = redirect_error(validate(&params(extra), Some(&c), true));
            assert_eq!(got, *code, "{extra:?}");
            assert_eq!(state.as_deref(), Some("xyz"));
        }
        let mut p = params(&[]);
        p.code_challenge = None;
        p.code_challenge_method = None;
        assert_eq!(
            redirect_error(validate(&p, Some(&c), true)).0,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn a_request_without_redirect_uri_uses_the_only_registered_one_and_says_so() {
        let mut c = client(TokenEndpointAuthMethod::ClientSecretBasic);
        assert!(
            validate(&params(&[]), Some(&c), true)
                .unwrap()
                .redirect_uri_given
        );
        c.redirect_uris.truncate(1);
        let mut p = params(&[]);
        p.redirect_uri = None;
        let r = validate(&p, Some(&c), true).unwrap();
        assert_eq!(r.redirect_uri, "https://app.example/cb");
        assert!(!r.redirect_uri_given);
    }

    #[test]
    fn public_clients_always_need_pkce() {
        let mut c = client(TokenEndpointAuthMethod::None);
        c.require_pkce = false;
        let mut p = params(&[]);
        p.code_challenge = None;
        p.code_challenge_method = None;
        assert_eq!(
            redirect_error(validate(&p, Some(&c), true)).0,
            ErrorCode::InvalidRequest
        );
        let mut confidential = client(TokenEndpointAuthMethod::ClientSecretBasic);
        confidential.require_pkce = false;
        assert!(validate(&p, Some(&confidential), true).is_ok());
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let c = client(TokenEndpointAuthMethod::ClientSecretBasic);
        let p = AuthorizeParams::from_pairs([("client_id", "app"), ("client_id", "other")]);
        assert!(matches!(
            validate(&p, Some(&c), true),
            Err(Rejection::Page(_))
        ));
        let mut p = params(&[]);
        p.repeated.push("scope".into());
        assert_eq!(
            redirect_error(validate(&p, Some(&c), true)).0,
            ErrorCode::InvalidRequest
        );
    }
}
