//! The refresh token grant (RFC 6749 §6): a refresh token rotated once, its family revoked on
//! reuse, the scope narrowed only.

use super::*;

pub(super) async fn refresh_token(
    state: &AuthState,
    client: &OAuthClient,
    form: &Form,
    origin: &Origin,
    presented: Presented,
) -> Result<Response, TokenError> {
    let invalid = || TokenError::new(ErrorCode::InvalidGrant, "the refresh token is invalid");
    let Presented::Refresh(digest, grant) = presented else {
        param(form, "refresh_token")?;
        return Err(TokenError::new(
            ErrorCode::InvalidRequest,
            "refresh_token is required",
        ));
    };
    let mut grant = grant.ok_or_else(invalid)?;
    let at = now();
    if grant.client_id != client.id || grant.family_revoked || grant.expires_at <= at {
        return Err(invalid());
    }
    // Without offline access the family belongs to its browser session and ends with it.
    if !grant.session_allows(at, state.settings().session_idle_secs) {
        return Err(TokenError::new(
            ErrorCode::InvalidGrant,
            "the sign-in this refresh token belongs to has ended",
        ));
    }
    // What the client may still ask for bounds what a refresh grants: a scope removed from
    // the client since the grant is no longer issued.
    let granted = Scopes::parse(&grant.scope)
        .unwrap_or_default()
        .intersection(&Scopes::from_list(&client.allowed_scopes));
    let scopes = requested_scope(form, granted, "a refresh cannot widen the granted scope")?;
    if grant.user_id.is_none() {
        return Err(invalid());
    }
    let user = grant_user(client, grant.user.take())?;
    let scope = scopes.to_string();
    let minted =
        mint_access_token(state, client, &user.id.to_string(), Some(user.id), &scope).await?;
    let id_token = if scopes.contains("openid") {
        Some(
            mint_id_token(
                state,
                client,
                &user,
                &scopes,
                None,
                grant.auth_time.map_or(0, |t| t.unix_timestamp()),
                grant.session_id.map(|s| s.to_string()),
                &minted.token,
            )
            .await?,
        )
    } else {
        None
    };
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
        Rotation::Rotated => Ok(token_response(&minted, &scope, id_token, Some(next))),
        Rotation::Reused | Rotation::Invalid => Err(invalid()),
    }
}
