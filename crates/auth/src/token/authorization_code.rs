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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use opentrusty_core::secret::MasterKey;
    use opentrusty_oidc::error::ErrorCode;
    use opentrusty_store::NewAuthorizationCode;
    use opentrusty_testkit::TestDb;
    use opentrusty_testkit::world::{self, CALLBACK, OPAQUE};

    use super::*;

    const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

    fn challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ))
    }

    fn state(store: opentrusty_store::Store) -> AuthState {
        let settings = crate::AuthSettings {
            issuer: "http://localhost:8080".to_owned(),
            cookie_secure: false,
            cookie_domain: None,
            session_idle_secs: 1800,
            session_lifetime_secs: 86400,
            code_ttl_secs: 60,
            refresh_grace_secs: 0,
            access_token_alg: opentrusty_oidc::jose::Algorithm::ES256,
            console_origins: Vec::new(),
            lockout: Default::default(),
            hash_workers: 1,
            hash_queue: 1,
            rate_limits: Default::default(),
        };
        let hasher = opentrusty_password::PasswordHasher::new(opentrusty_password::HashParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        AuthState::new(
            store,
            MasterKey::parse(world::SECRET_KEY).unwrap(),
            settings,
            hasher,
        )
    }

    /// A code for the seeded opaque-token client (no signing key needed), issued at `at` for
    /// 60 seconds; its digest, its grant as the token endpoint reads it, and the client.
    async fn issued_code(
        state: &AuthState,
        at: Timestamp,
    ) -> ([u8; 32], Option<CodeGrant>, OAuthClient) {
        let store = state.store();
        let seed = world::seed(store).await;
        let access = store
            .find_client_for_request(OPAQUE.client_id)
            .await
            .unwrap()
            .unwrap();
        let digest = token_digest("the-code");
        let code = NewAuthorizationCode {
            code_digest: digest,
            tenant_id: seed.tenant_a,
            client_id: access.client.id,
            user_id: seed.alice,
            session_id: None,
            redirect_uri: CALLBACK.to_owned(),
            scope: "profile".to_owned(),
            nonce: None,
            code_challenge: Some(challenge(VERIFIER)),
            code_challenge_method: Some(PkceMethod::S256),
            auth_time: at,
            expires_at: at + time::Duration::seconds(60),
            redirect_uri_given: true,
        };
        store
            .issue_authorization_code(&code, &Origin::system())
            .await
            .unwrap();
        let (_, grant) = store
            .find_client_with_code(OPAQUE.client_id, &digest)
            .await
            .unwrap()
            .unwrap();
        (digest, grant, access.client)
    }

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
        let (digest, grant, client) = issued_code(&state, issued_at).await;
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
