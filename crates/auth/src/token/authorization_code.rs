//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6): a code redeemed once by the
//! client it was issued to, with its redirect URI and PKCE verifier.

use opentrusty_core::Timestamp;
use opentrusty_core::audit::Origin;
use opentrusty_core::client::{GrantType, OAuthClient};
use opentrusty_core::pkce::PkceMethod;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::pkce;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{CodeGrant, NewTokenFamily, Redemption};

use super::{Issued, SignInContext, grant_user, mint_user_tokens, param};
use crate::AuthState;
use crate::error::JsonError;
use crate::http::Form;

/// An authorization code token request.
pub(super) struct Request {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
}

impl Request {
    pub(super) fn decode(form: &Form) -> Result<Request, JsonError> {
        let code = param(form, "code")?.ok_or(JsonError::invalid_request("code is required"))?;
        Ok(Request {
            code: code.to_owned(),
            redirect_uri: param(form, "redirect_uri")?.map(str::to_owned),
            code_verifier: param(form, "code_verifier")?.map(str::to_owned),
        })
    }
}

/// Redeems the presented code (its digest and grant, read with the client) for `client`, at
/// `at`.
pub(super) async fn exchange(
    state: &AuthState,
    client: &OAuthClient,
    request: Request,
    presented: Option<([u8; 32], Option<CodeGrant>)>,
    origin: &Origin,
    at: Timestamp,
) -> Result<Issued, JsonError> {
    let invalid = || JsonError::new(ErrorCode::InvalidGrant, "the authorization code is invalid");
    let (digest, grant) = presented.ok_or_else(invalid)?;
    let mut grant = grant.ok_or_else(invalid)?;
    if grant.used {
        match state.store().revoke_replayed_code(&digest, origin).await? {
            // Its earlier redemption was never delivered and is undone.
            Redemption::Restored => grant.used = false,
            _ => return Err(invalid()),
        }
    }
    if grant.client_id != client.id || grant.expires_at <= at {
        return Err(invalid());
    }
    // RFC 6749 §4.1.3: required only if the authorization request carried it, and then
    // identical; when present it must match in any case.
    match &request.redirect_uri {
        Some(given) if *given != grant.redirect_uri => {
            return Err(JsonError::new(
                ErrorCode::InvalidGrant,
                "redirect_uri does not match the authorization request",
            ));
        }
        None if grant.redirect_uri_given => {
            return Err(JsonError::invalid_request(
                "redirect_uri is required: the authorization request carried it",
            ));
        }
        _ => {}
    }
    match (
        &grant.code_challenge,
        grant.code_challenge_method,
        request.code_verifier.as_deref(),
    ) {
        (Some(challenge), Some(PkceMethod::S256), Some(v)) if pkce::verify_s256(v, challenge) => {}
        (None, None, None) => {}
        _ => {
            return Err(JsonError::new(
                ErrorCode::InvalidGrant,
                "PKCE verification failed",
            ));
        }
    }
    let user = grant_user(client, grant.user.take())?;
    let scopes = Scopes::parse(&grant.scope).unwrap_or_default();
    let scope = scopes.to_string();
    let sign_in = SignInContext {
        nonce: grant.nonce.as_deref(),
        auth_time: grant.auth_time.unix_timestamp(),
        session: grant.session_id,
    };
    let (minted, id_token) = mint_user_tokens(state, client, &user, &scopes, sign_in, at).await?;
    let refresh = client
        .grant_types
        .contains(&GrantType::RefreshToken)
        .then(random_token);
    // The code's scope holds offline_access only if the user consented to it (or the client is
    // first-party): only then does the family outlive the browser session.
    let family = NewTokenFamily {
        offline: scopes.contains("offline_access"),
        tenant_id: client.tenant_id,
        client_id: client.id,
        user_id: Some(user.id),
        session_id: grant.session_id,
        scope: scope.clone(),
        auth_time: Some(grant.auth_time),
        expires_at: at + time::Duration::seconds(client.refresh_token_ttl_secs),
        refresh_digest: refresh.as_deref().map(token_digest),
    };
    match state
        .store()
        .redeem_authorization_code(&digest, &minted.record, &family, origin)
        .await?
    {
        Redemption::Issued(_) => Ok(Issued {
            minted,
            scope,
            id_token,
            refresh_token: refresh,
        }),
        Redemption::Replayed | Redemption::Invalid | Redemption::Restored => Err(invalid()),
    }
}

/// The grant's rules decided in process, on a real store, with the time given: no HTTP, no
/// sleeping to reach an expiry.
#[cfg(test)]
mod tests {
    use opentrusty_oidc::error::ErrorCode;
    use opentrusty_testkit::TestDb;
    use opentrusty_testkit::world::{CALLBACK, OPAQUE};

    use super::*;
    use crate::token::test_world::{VERIFIER, issued_code, state};

    fn request(verifier: &str) -> Request {
        Request {
            code: "the-code".to_owned(),
            redirect_uri: Some(CALLBACK.to_owned()),
            code_verifier: Some(verifier.to_owned()),
        }
    }

    async fn a_code_is_redeemed_once_before_its_expiry_with_its_verifier(db: &TestDb) {
        let state = state(db.store().await);
        let issued_at = opentrusty_core::now();
        let (digest, grant, client) = issued_code(&state, "profile", issued_at).await;
        let origin = Origin::system();
        let refused = |r: Result<Issued, JsonError>| match r {
            Ok(_) => panic!("issued"),
            Err(e) => (e.code, e.description),
        };

        // Expired at the instant its lifetime ends: decided by the time given, not the clock.
        let at_expiry = issued_at + time::Duration::seconds(60);
        let r = exchange(
            &state,
            &client,
            request(VERIFIER),
            Some((digest, grant.clone())),
            &origin,
            at_expiry,
        )
        .await;
        assert_eq!(refused(r).0, ErrorCode::InvalidGrant);

        // The wrong verifier, in time.
        let in_time = issued_at + time::Duration::seconds(59);
        let r = exchange(
            &state,
            &client,
            request(&format!("{VERIFIER}x")),
            Some((digest, grant.clone())),
            &origin,
            in_time,
        )
        .await;
        assert_eq!(
            refused(r),
            (ErrorCode::InvalidGrant, "PKCE verification failed")
        );

        // A redirect URI other than the authorization request's.
        let mut other = request(VERIFIER);
        other.redirect_uri = Some("http://127.0.0.1:9/elsewhere".to_owned());
        let r = exchange(
            &state,
            &client,
            other,
            Some((digest, grant.clone())),
            &origin,
            in_time,
        )
        .await;
        assert_eq!(refused(r).0, ErrorCode::InvalidGrant);

        // In time, with its verifier: tokens, the scope granted and a refresh token (the client
        // may refresh).
        let issued = exchange(
            &state,
            &client,
            request(VERIFIER),
            Some((digest, grant.clone())),
            &origin,
            in_time,
        )
        .await
        .unwrap();
        assert_eq!(issued.scope, "profile");
        assert!(issued.id_token.is_none(), "no openid scope, no ID token");
        assert!(issued.refresh_token.is_some());

        // Once only: the same code again is refused.
        let (_, again) = state
            .store()
            .find_client_with_code(OPAQUE.client_id, &digest)
            .await
            .unwrap()
            .unwrap();
        let r = exchange(
            &state,
            &client,
            request(VERIFIER),
            Some((digest, again)),
            &origin,
            in_time,
        )
        .await;
        assert_eq!(refused(r).0, ErrorCode::InvalidGrant);
    }

    opentrusty_testkit::each_backend!(a_code_is_redeemed_once_before_its_expiry_with_its_verifier);
}
