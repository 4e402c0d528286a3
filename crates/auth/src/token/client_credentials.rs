//! The client credentials grant (RFC 6749 §4.4): a confidential client's own token.

use opentrusty_core::Timestamp;
use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::client::GrantType;
use opentrusty_oidc::error::ErrorCode;
use opentrusty_oidc::scope::Scopes;
use opentrusty_store::{ClientAccess, Confirmation};

use super::client_auth::ClaimedClient;
use super::{Issued, mint_access_token, param, requested_scope, require_grant};
use crate::AuthState;
use crate::error::JsonError;
use crate::http::Form;

/// Decisions on a remembered client, each a read (`find_client_for_issuance`) and a confirmed
/// write; past them an administrator is changing the client right now.
const ISSUANCE_ATTEMPTS: usize = 3;

/// A client credentials token request.
pub(super) struct Request {
    /// The narrower scope asked for, as written.
    pub scope: Option<String>,
}

impl Request {
    pub(super) fn decode(form: &Form) -> Result<Request, JsonError> {
        Ok(Request {
            scope: param(form, "scope")?.map(str::to_owned),
        })
    }
}

/// Client credentials, decided on the client this process remembers when it has one. The token
/// is recorded (and only then answered) if the client is still at the revision decided on,
/// active, in an active tenant; when it is not, or when a remembered client refuses the
/// request, the client is read afresh and the request decided again. So nothing older than
/// the write lets a token out, and nothing older than a read refuses one. `origin` is the
/// caller's, its actor set here to the client.
pub(super) async fn exchange(
    state: &AuthState,
    claimed: &ClaimedClient,
    request: Request,
    origin: Origin,
    at: Timestamp,
) -> Result<Issued, JsonError> {
    let store = state.store();
    let mut fresh = false;
    for _ in 0..ISSUANCE_ATTEMPTS {
        let found = store.find_client_for_issuance(&claimed.id, fresh).await?;
        let decided = match &found {
            Some(f) => scope(claimed, &f.access, &request).map(|s| (f, s)),
            None => Err(JsonError::invalid_client()),
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
        let origin = origin.clone().by(Actor::Client(client.id));
        let minted = mint_access_token(state, client, &client.client_id, None, &scope, at).await?;
        match store
            .issue_client_token(&minted.record, found.access.revision, &origin)
            .await?
        {
            Confirmation::Issued => {
                return Ok(Issued {
                    minted,
                    scope,
                    id_token: None,
                    refresh_token: None,
                });
            }
            Confirmation::Stale => fresh = true,
        }
    }
    Err(JsonError::new(
        ErrorCode::TemporarilyUnavailable,
        "the client is being changed; try again",
    ))
}

/// The scope a client-credentials request gets from `access`, or why it gets none.
fn scope(
    claimed: &ClaimedClient,
    access: &ClientAccess,
    request: &Request,
) -> Result<String, JsonError> {
    claimed.check(access)?;
    let client = &access.client;
    require_grant(client, GrantType::ClientCredentials)?;
    if client.token_endpoint_auth_method.is_public() {
        return Err(JsonError::new(
            ErrorCode::UnauthorizedClient,
            "public clients cannot use client_credentials",
        ));
    }
    // User-facing scopes mean nothing without a user.
    let allowed = Scopes::from_list(&client.allowed_scopes).without(&["openid", "offline_access"]);
    let scopes = requested_scope(
        request.scope.as_deref(),
        allowed,
        "the requested scope exceeds what the client may ask for",
    )?;
    Ok(scopes.to_string())
}

/// The grant's rules decided in process, on a real store.
#[cfg(test)]
mod tests {
    use opentrusty_core::client::TokenEndpointAuthMethod;
    use opentrusty_testkit::TestDb;
    use opentrusty_testkit::world::{self, PUBLIC, SERVICE};

    use super::*;
    use crate::token::test_world::state;

    fn claimed(id: &str, secret: Option<&str>) -> ClaimedClient {
        ClaimedClient {
            id: id.to_owned(),
            secret: secret.map(str::to_owned),
            method: if secret.is_some() {
                TokenEndpointAuthMethod::ClientSecretBasic
            } else {
                TokenEndpointAuthMethod::None
            },
        }
    }

    fn scope(s: Option<&str>) -> Request {
        Request {
            scope: s.map(str::to_owned),
        }
    }

    async fn a_service_gets_only_its_own_scopes_with_its_own_secret(db: &TestDb) {
        let state = state(db.store().await);
        world::seed(state.store()).await;
        state
            .keys()
            .ensure(opentrusty_oidc::jose::Algorithm::ES256)
            .await
            .unwrap();
        let at = opentrusty_core::now();
        let service = claimed(SERVICE.client_id, SERVICE.secret);
        let refused = |r: Result<Issued, JsonError>| match r {
            Ok(_) => panic!("issued"),
            Err(e) => e.code,
        };

        let issued = exchange(&state, &service, scope(None), Origin::system(), at)
            .await
            .unwrap();
        assert_eq!(issued.scope, "api:read api:write");
        assert!(issued.refresh_token.is_none() && issued.id_token.is_none());
        let issued = exchange(
            &state,
            &service,
            scope(Some("api:read")),
            Origin::system(),
            at,
        )
        .await
        .unwrap();
        assert_eq!(issued.scope, "api:read");

        // User-facing scopes mean nothing without a user; others it may not ask for at all.
        for asked in ["openid", "offline_access", "api:delete", "api:read email"] {
            let r = exchange(&state, &service, scope(Some(asked)), Origin::system(), at).await;
            assert_eq!(refused(r), ErrorCode::InvalidScope, "{asked}");
        }
        // Another secret, or a public client, gets nothing.
        let wrong = claimed(SERVICE.client_id, Some("not-the-secret"));
        let r = exchange(&state, &wrong, scope(None), Origin::system(), at).await;
        assert_eq!(refused(r), ErrorCode::InvalidClient);
        let public = claimed(PUBLIC.client_id, None);
        let r = exchange(&state, &public, scope(None), Origin::system(), at).await;
        assert_eq!(refused(r), ErrorCode::UnauthorizedClient);
    }

    opentrusty_testkit::each_backend!(a_service_gets_only_its_own_scopes_with_its_own_secret);
}
