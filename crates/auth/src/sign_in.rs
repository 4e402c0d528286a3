//! Checking a password, wherever one is asked for: the sign-in page, the console's sign-in and a
//! password change. One Argon2 computation whatever the account (a dummy hash for an unknown
//! one), lockout and account status applied after it so the answer never tells them apart, and
//! a refusal recorded (it counts toward lockout) before it is answered: a refusal that cannot
//! be recorded is answered as unavailable, so no guess goes uncounted.

use opentrusty_core::audit::{Actor, Origin};
use opentrusty_core::user::{User, UserStatus};
use opentrusty_core::{TenantId, now};
use opentrusty_password::Verification;
use opentrusty_store::StoreError;

use crate::AuthState;

/// A password presented for an account (`None`: no such account; `hash` `None`: it has no
/// password).
pub(crate) struct Attempt<'a> {
    pub tenant: Option<TenantId>,
    pub user: Option<User>,
    pub hash: Option<String>,
    pub password: &'a str,
    /// The audit row's reason when refused (`invalid_credentials`, `wrong_current_password`).
    pub refusal: &'static str,
}

/// Checks `attempt`: the user when the password is right and the account may sign in, `None`
/// when refused (and the refusal recorded with `origin`).
pub(crate) async fn verify(
    state: &AuthState,
    attempt: Attempt<'_>,
    origin: &Origin,
) -> Result<Option<User>, SignInError> {
    let Attempt {
        tenant,
        user,
        hash,
        password,
        refusal,
    } = attempt;
    match check_password(state, user, hash, password).await? {
        Ok(user) => Ok(Some(user)),
        Err(user) => {
            state
                .store()
                .record_login_failure(
                    tenant,
                    user,
                    refusal,
                    Some(&state.settings().lockout),
                    origin,
                )
                .await?;
            Ok(None)
        }
    }
}

/// Why a password could not be checked.
#[derive(Debug)]
pub(crate) enum SignInError {
    Store(StoreError),
    /// The hashing pool is full: answer 503 with `Retry-After`.
    Saturated,
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        SignInError::Store(e)
    }
}

impl From<crate::hashing::Saturated> for SignInError {
    fn from(_: crate::hashing::Saturated) -> Self {
        SignInError::Saturated
    }
}

/// Verifies `password` against a user's stored hash (or the dummy hash), upgrading the hash
/// when it was made with older parameters; counts the outcome in the metrics.
async fn check_password(
    state: &AuthState,
    user: Option<User>,
    hash: Option<String>,
    password: &str,
) -> Result<Result<User, Option<opentrusty_core::UserId>>, SignInError> {
    let outcome = compare_password(state, user, hash, password).await;
    let label = match &outcome {
        Ok(Ok(_)) => "success",
        Ok(Err(_)) => "failure",
        Err(_) => "error",
    };
    opentrusty_web::metrics::count("opentrusty_logins_total", &[("outcome", label)]);
    outcome
}

/// The verification itself: always one Argon2 computation (against a dummy hash for unknown
/// accounts), a rehash when the parameters changed.
async fn compare_password(
    state: &AuthState,
    user: Option<User>,
    hash: Option<String>,
    password: &str,
) -> Result<Result<User, Option<opentrusty_core::UserId>>, SignInError> {
    let inner = state.0.clone();
    let presented = password.to_owned();
    let presented_hash = hash.clone();
    let verification = state
        .0
        .hash_pool
        .run(move |memory| {
            let phc = presented_hash.as_deref().unwrap_or(&inner.dummy_hash);
            inner.hasher.verify_in(&presented, phc, memory)
        })
        .await?;
    let Some(user) = user else {
        return Ok(Err(None));
    };
    let Verification::Match { needs_rehash } = verification else {
        return Ok(Err(Some(user.id)));
    };
    // A locked account fails like a wrong password, after the same hashing work: the answer
    // never tells the two apart.
    if opentrusty_core::lockout::is_locked(user.locked_until, now()) {
        return Ok(Err(Some(user.id)));
    }
    if hash.is_none() || user.status != UserStatus::Active {
        return Ok(Err(Some(user.id)));
    }
    if needs_rehash {
        // The hash predates the current Argon2 parameters: replace it while the password is
        // known. A failure here does not fail the sign-in; the next one tries again.
        let upgraded = state.hash_password(password).await;
        if let Ok(phc) = upgraded {
            let origin = Origin {
                actor: Some(Actor::User(user.id)),
                ..Origin::system()
            };
            match state
                .store()
                .set_password_hash(user.id, &phc, &origin)
                .await
            {
                Ok(()) => {
                    tracing::info!(user = %user.id, "upgraded a password hash to the current parameters")
                }
                Err(e) => {
                    tracing::warn!(user = %user.id, error = %e, "could not upgrade a password hash")
                }
            }
        }
    }
    Ok(Ok(user))
}
