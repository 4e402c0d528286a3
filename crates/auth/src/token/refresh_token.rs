//! The refresh token grant (RFC 6749 §6): a refresh token rotated once, its family revoked on
//! reuse, the scope narrowed only.

use opentrusty_core::Timestamp;
use opentrusty_core::audit::Origin;
use opentrusty_core::client::OAuthClient;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{RefreshGrant, Rotation};

use super::{Issued, SignInContext, grant_user, mint_user_tokens, param, requested_scope};
use crate::AuthState;
use crate::error::JsonError;
use crate::http::Form;

/// A refresh token request.
pub(super) struct Request {
    pub refresh_token: String,
    /// The narrower scope asked for, as written.
    pub scope: Option<String>,
}

impl Request {
    pub(super) fn decode(form: &Form) -> Result<Request, JsonError> {
        let refresh_token = param(form, "refresh_token")?
            .ok_or(JsonError::invalid_request("refresh_token is required"))?;
        Ok(Request {
            refresh_token: refresh_token.to_owned(),
            scope: param(form, "scope")?.map(str::to_owned),
        })
    }
}

/// Rotates the presented refresh token (its digest and grant, read with the client) for
/// `client`, at `at`.
pub(super) async fn exchange(
    state: &AuthState,
    client: &OAuthClient,
    request: Request,
    presented: Option<([u8; 32], Option<RefreshGrant>)>,
    origin: &Origin,
    at: Timestamp,
) -> Result<Issued, JsonError> {
    let invalid = || JsonError::new(ErrorCode::InvalidGrant, "the refresh token is invalid");
    let (digest, grant) = presented.ok_or_else(invalid)?;
    let mut grant = grant.ok_or_else(invalid)?;
    if grant.client_id != client.id || grant.family_revoked || grant.expires_at <= at {
        return Err(invalid());
    }
    // Without offline access the family belongs to its browser session and ends with it.
    if !grant.session_allows(at, state.settings().session_idle_secs) {
        return Err(JsonError::new(
            ErrorCode::InvalidGrant,
            "the sign-in this refresh token belongs to has ended",
        ));
    }
    // What the client may still ask for bounds what a refresh grants: a scope removed from
    // the client since the grant is no longer issued.
    let granted = Scopes::parse(&grant.scope)
        .unwrap_or_default()
        .intersection(&Scopes::from_list(&client.allowed_scopes));
    let scopes = requested_scope(
        request.scope.as_deref(),
        granted,
        "a refresh cannot widen the granted scope",
    )?;
    if grant.user_id.is_none() {
        return Err(invalid());
    }
    let user = grant_user(client, grant.user.take())?;
    let scope = scopes.to_string();
    let sign_in = SignInContext {
        nonce: None,
        auth_time: grant.auth_time.map_or(0, |t| t.unix_timestamp()),
        session: grant.session_id,
    };
    let (minted, id_token) = mint_user_tokens(state, client, &user, &scopes, sign_in, at).await?;
    let next = random_token();
    if !grant.offline
        && let (Some(session), Some((_, last_seen_at))) = (grant.session_id, grant.session)
    {
        // A refresh is a use of the session it belongs to.
        state
            .store()
            .touch_session(session, last_seen_at, at)
            .await?;
    }
    match state
        .store()
        .rotate_refresh_token(
            &digest,
            &token_digest(&next),
            &minted.record,
            state.settings().refresh_grace_secs,
            origin,
        )
        .await?
    {
        Rotation::Rotated => Ok(Issued {
            minted,
            scope,
            id_token,
            refresh_token: Some(next),
        }),
        Rotation::Reused | Rotation::Invalid => Err(invalid()),
    }
}

/// The grant's rules decided in process, on a real store, with the time given.
#[cfg(test)]
mod tests {
    use opentrusty_core::secret::token_digest;
    use opentrusty_oidc::error::ErrorCode;
    use opentrusty_testkit::TestDb;
    use opentrusty_testkit::world::{CALLBACK, OPAQUE};

    use super::*;
    use crate::token::authorization_code;
    use crate::token::test_world::{VERIFIER, issued_code, state};

    fn request(token: &str, scope: Option<&str>) -> Request {
        Request {
            refresh_token: token.to_owned(),
            scope: scope.map(str::to_owned),
        }
    }

    /// The grant as the token endpoint reads it for `token`.
    async fn presented(state: &AuthState, token: &str) -> Option<([u8; 32], Option<RefreshGrant>)> {
        let digest = token_digest(token);
        let (_, grant) = state
            .store()
            .find_client_with_refresh_token(OPAQUE.client_id, &digest)
            .await
            .unwrap()
            .unwrap();
        Some((digest, grant))
    }

    /// The refresh token an offline-access code for the seeded client is redeemed for at `at`.
    async fn first_refresh_token(state: &AuthState, at: Timestamp) -> (OAuthClient, String) {
        let (digest, grant, client) = issued_code(state, "profile offline_access", at).await;
        let code_request = authorization_code::Request {
            code: "the-code".to_owned(),
            redirect_uri: Some(CALLBACK.to_owned()),
            code_verifier: Some(VERIFIER.to_owned()),
        };
        let issued = authorization_code::exchange(
            state,
            &client,
            code_request,
            Some((digest, grant)),
            &Origin::system(),
            at,
        )
        .await
        .unwrap();
        (client, issued.refresh_token.unwrap())
    }

    async fn a_refresh_token_is_rotated_once_narrowed_only_and_not_past_its_family(db: &TestDb) {
        let state = state(db.store().await);
        let start = opentrusty_core::now();
        let (client, first) = first_refresh_token(&state, start).await;
        let origin = Origin::system();
        let refused = |r: Result<Issued, JsonError>| match r {
            Ok(_) => panic!("issued"),
            Err(e) => (e.code, e.description),
        };
        let at = start + time::Duration::seconds(10);

        // A scope the grant does not hold is refused; the token stays usable.
        let r = exchange(
            &state,
            &client,
            request(&first, Some("profile email")),
            presented(&state, &first).await,
            &origin,
            at,
        )
        .await;
        assert_eq!(
            refused(r),
            (
                ErrorCode::InvalidScope,
                "a refresh cannot widen the granted scope"
            )
        );

        // A narrower one is granted, with the next refresh token.
        let issued = exchange(
            &state,
            &client,
            request(&first, Some("profile")),
            presented(&state, &first).await,
            &origin,
            at,
        )
        .await
        .unwrap();
        assert_eq!(issued.scope, "profile");
        let second = issued.refresh_token.unwrap();
        assert_ne!(second, first);

        // The first token again: reuse, refused (and its family revoked).
        let r = exchange(
            &state,
            &client,
            request(&first, None),
            presented(&state, &first).await,
            &origin,
            at,
        )
        .await;
        assert_eq!(refused(r).0, ErrorCode::InvalidGrant);
        let r = exchange(
            &state,
            &client,
            request(&second, None),
            presented(&state, &second).await,
            &origin,
            at,
        )
        .await;
        assert_eq!(
            refused(r).0,
            ErrorCode::InvalidGrant,
            "the reuse revoked the whole family"
        );
    }

    async fn a_refresh_token_ends_with_its_family(db: &TestDb) {
        let state = state(db.store().await);
        let start = opentrusty_core::now();
        let (client, token) = first_refresh_token(&state, start).await;
        let origin = Origin::system();
        // At the family's end, decided by the time given.
        let end = start + time::Duration::seconds(client.refresh_token_ttl_secs);
        let r = exchange(
            &state,
            &client,
            request(&token, None),
            presented(&state, &token).await,
            &origin,
            end,
        )
        .await;
        assert!(matches!(r, Err(e) if e.code == ErrorCode::InvalidGrant));
        // A moment before it, the same token is still good.
        let before = end - time::Duration::seconds(1);
        let issued = exchange(
            &state,
            &client,
            request(&token, None),
            presented(&state, &token).await,
            &origin,
            before,
        )
        .await
        .unwrap();
        assert_eq!(issued.scope, "offline_access profile");
    }

    opentrusty_testkit::each_backend!(
        a_refresh_token_is_rotated_once_narrowed_only_and_not_past_its_family,
        a_refresh_token_ends_with_its_family,
    );
}
