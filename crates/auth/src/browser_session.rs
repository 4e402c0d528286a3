//! The browser's session: the one it has now, and a new one started by a sign-in (its
//! cookie, and the session it replaces).

use axum::http::{HeaderMap, header};
use axum::response::Response;
use opentrusty_core::now;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::session::{NewSession, Session};
use opentrusty_store::StoreError;

use crate::AuthState;
use crate::authorize::storage_page;
use crate::http::{self, SESSION_COOKIE};

/// The browser's session if it is valid now, with its cookie digest.
pub(crate) async fn current_session(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<Option<(Session, [u8; 32])>, StoreError> {
    let Some(cookie) = http::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = token_digest(&cookie);
    let session = state
        .store()
        .authenticate_session(&digest, now(), state.settings().session_idle_secs)
        .await?;
    Ok(session.map(|s| (s, digest)))
}

/// A session just written: its cookie and the digest that identifies it.
pub(crate) struct StartedSession {
    pub cookie: axum::http::HeaderValue,
    pub digest: [u8; 32],
}

/// A successful sign-in whose session is not written yet: the cookie value, the session to
/// store (replacing the browser's previous one) and the origin its audit rows name.
pub(crate) struct SignIn {
    token: String,
    pub(crate) new: NewSession,
    pub(crate) replacing: Option<[u8; 32]>,
    pub(crate) origin: opentrusty_core::audit::Origin,
}

impl SignIn {
    pub(crate) fn new(
        state: &AuthState,
        headers: &HeaderMap,
        user: &opentrusty_core::user::User,
        origin: opentrusty_core::audit::Origin,
    ) -> Self {
        let token = random_token();
        let new = NewSession {
            user_id: user.id,
            tenant_id: user.tenant_id,
            token_digest: token_digest(&token),
            expires_at: now() + time::Duration::seconds(state.settings().session_lifetime_secs),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
        };
        Self {
            token,
            new,
            replacing: http::cookie(headers, SESSION_COOKIE).map(|c| token_digest(&c)),
            origin,
        }
    }

    /// Writes the session alone.
    pub(crate) async fn start(self, state: &AuthState) -> Result<StartedSession, StoreError> {
        state
            .store()
            .create_session(&self.new, self.replacing.as_ref(), &self.origin)
            .await?;
        Ok(StartedSession {
            cookie: self.cookie(state),
            digest: self.new.token_digest,
        })
    }

    /// Writes the session alone and answers `answer` with its cookie.
    pub(crate) async fn answer(self, state: &AuthState, mut answer: Response) -> Response {
        match self.start(state).await {
            Ok(started) => {
                answer
                    .headers_mut()
                    .append(header::SET_COOKIE, started.cookie);
                answer
            }
            Err(e) => storage_page(e),
        }
    }

    /// `answer` with the cookie of this session (written by the caller).
    pub(crate) fn with_cookie(&self, state: &AuthState, mut answer: Response) -> Response {
        answer
            .headers_mut()
            .append(header::SET_COOKIE, self.cookie(state));
        answer
    }

    fn cookie(&self, state: &AuthState) -> axum::http::HeaderValue {
        let lifetime = state.settings().session_lifetime_secs;
        http::set_cookie(state, SESSION_COOKIE, &self.token, Some(lifetime), true)
    }
}
