//! The client credentials grant (RFC 6749 §4.4): a confidential client's own token.

use super::*;

/// Decisions on a remembered client, each a read (`find_client_for_issuance`) and a confirmed
/// write; past them an administrator is changing the client right now.
const ISSUANCE_ATTEMPTS: usize = 3;

/// Client credentials, decided on the client this process remembers when it has one. The token
/// is recorded (and only then answered) if the client is still at the revision decided on,
/// active, in an active tenant; when it is not, or when a remembered client refuses the
/// request, the client is read afresh and the request decided again. So nothing older than
/// the write lets a token out, and nothing older than a read refuses one.
pub(super) async fn client_credentials(
    state: &AuthState,
    claimed: &ClaimedClient,
    form: &Form,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Response, TokenError> {
    let store = state.store();
    let mut fresh = false;
    for _ in 0..ISSUANCE_ATTEMPTS {
        let found = store.find_client_for_issuance(&claimed.id, fresh).await?;
        let decided = match &found {
            Some(f) => client_credentials_scope(claimed, &f.access, form).map(|s| (f, s)),
            None => Err(TokenError::invalid_client()),
        };
        let (found, scope) = match decided {
            Ok(decided) => decided,
            Err(_) if found.as_ref().is_some_and(|f| f.remembered) => {
                fresh = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let client = &found.access.client;
        let origin = http::origin(headers, peer, Some(Actor::Client(client.id)));
        let minted = mint_access_token(state, client, &client.client_id, None, &scope).await?;
        match store
            .issue_client_token(&minted.record, found.access.revision, &origin)
            .await?
        {
            Confirmation::Issued => return Ok(token_response(&minted, &scope, None, None)),
            Confirmation::Stale => fresh = true,
        }
    }
    Err(TokenError::new(
        ErrorCode::TemporarilyUnavailable,
        "the client is being changed; try again",
    ))
}

/// The scope a client-credentials request gets from `access`, or why it gets none.
fn client_credentials_scope(
    claimed: &ClaimedClient,
    access: &ClientAccess,
    form: &Form,
) -> Result<String, TokenError> {
    check_client(claimed, access)?;
    let client = &access.client;
    require_grant(client, GrantType::ClientCredentials)?;
    if client.token_endpoint_auth_method.is_public() {
        return Err(TokenError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        ));
    }
    // User-facing scopes mean nothing without a user.
    let allowed = Scopes::from_list(&client.allowed_scopes).without(&["openid", "offline_access"]);
    let scopes = requested_scope(
        form,
        allowed,
        "the requested scope exceeds what the client may ask for",
    )?;
    Ok(scopes.to_string())
}
