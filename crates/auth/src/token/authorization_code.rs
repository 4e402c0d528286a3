//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6): a code redeemed once by the
//! client it was issued to, with its redirect URI and PKCE verifier.

use super::*;

pub(super) async fn authorization_code(
    state: &AuthState,
    client: &OAuthClient,
    form: &Form,
    origin: &Origin,
    presented: Presented,
) -> Result<Response, TokenError> {
    let invalid = || TokenError::new(ErrorCode::InvalidGrant, "the authorization code is invalid");
    let Presented::Code(digest, grant) = presented else {
        // Missing, or repeated (which is its own error).
        param(form, "code")?;
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "code is required",
        ));
    };
    let mut grant = grant.ok_or_else(invalid)?;
    if grant.used {
        match state.store().revoke_replayed_code(&digest, origin).await? {
            // Its earlier redemption was never delivered and is undone.
            Redemption::Restored => grant.used = false,
            _ => return Err(invalid()),
        }
    }
    if grant.client_id != client.id || grant.expires_at <= now() {
        return Err(invalid());
    }
    // RFC 6749 §4.1.3: required only if the authorization request carried it, and then
    // identical; when present it must match in any case.
    match param(form, "redirect_uri")? {
        Some(given) if given != grant.redirect_uri => {
            return Err(TokenError::new(
                ErrorCode::InvalidGrant,
                "redirect_uri does not match the authorization request",
            ));
        }
        None if grant.redirect_uri_given => {
            return Err(TokenError::new(
                ErrorCode::InvalidRequest,
                "redirect_uri is required: the authorization request carried it",
            ));
        }
        _ => {}
    }
    let verifier = param(form, "code_verifier")?;
    match (&grant.code_challenge, grant.code_challenge_method, verifier) {
        (Some(challenge), Some(PkceMethod::S256), Some(v)) if pkce::verify_s256(v, challenge) => {}
        (None, None, None) => {}
        _ => {
            return Err(TokenError::new(
                ErrorCode::InvalidGrant,
                "PKCE verification failed",
            ));
        }
    }
    let user = grant_user(client, grant.user.take())?;
    let scopes = Scopes::parse(&grant.scope).unwrap_or_default();
    let scope = scopes.to_string();
    let subject = user.id.to_string();
    let minted = mint_access_token(state, client, &subject, Some(user.id), &scope).await?;
    let id_token = if scopes.contains("openid") {
        Some(
            mint_id_token(
                state,
                client,
                &user,
                &scopes,
                grant.nonce.as_deref(),
                grant.auth_time.unix_timestamp(),
                grant.session_id.map(|s| s.to_string()),
                &minted.token,
            )
            .await?,
        )
    } else {
        None
    };
    let refresh = allows_grant(client, GrantType::RefreshToken).then(random_token);
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
        expires_at: now() + time::Duration::seconds(client.refresh_token_ttl_secs),
        refresh_digest: refresh.as_deref().map(token_digest),
    };
    match state
        .store()
        .redeem_authorization_code(&digest, &minted.record, &family, origin)
        .await?
    {
        Redemption::Issued(_) => Ok(token_response(&minted, &scope, id_token, refresh)),
        Redemption::Replayed | Redemption::Invalid | Redemption::Restored => Err(invalid()),
    }
}
