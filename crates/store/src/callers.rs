//! Who is calling the admin plane, read in one statement: a console session with its user, the
//! user's tenant state and grants, or a service account's bearer token with its client's grants.
//! Every admin request starts here: one round trip where it took up to four.

use opentrusty_core::Timestamp;
use opentrusty_core::rbac::Grant;
use opentrusty_core::session::Session;
use opentrusty_core::user::User;

use crate::grants::{AccessRow, JoinedUser, access_select, joined_user_columns};
use crate::rbac::JoinedGrant;
use crate::rows::DbTime;
use crate::sessions::{SessionRow, idle_since, live_session, session_columns};
use crate::{AccessTokenRecord, Store, StoreError, on_pool};

/// A console session that is live, with what the admin plane decides on.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub session: Session,
    /// The session's user, unless deleted (the caller checks its status).
    pub user: Option<User>,
    /// Whether the user's tenant is active (true for platform users, who have none).
    pub tenant_active: bool,
    pub grants: Vec<Grant>,
}

/// A bearer access token as [`Store::find_access_token_by_digest`] reads it, with the grants
/// of the client it was issued to.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    pub token: AccessTokenRecord,
    pub grants: Vec<Grant>,
}

/// The columns of a grant joined with `LEFT JOIN role_assignments ra LEFT JOIN role_permissions
/// rp` (see [`JoinedGrant`]): one row per permission the subject holds.
macro_rules! joined_grant_columns {
    () => {
        "rp.permission_name AS grant_permission, ra.scope_kind AS grant_scope_kind, \
         ra.scope_tenant_id AS grant_scope_tenant_id, ra.scope_client_id AS grant_scope_client_id"
    };
}

#[derive(sqlx::FromRow)]
struct SessionCallerRow {
    #[sqlx(flatten)]
    session: SessionRow,
    #[sqlx(flatten)]
    user: JoinedUser,
    tenant_active: bool,
    #[sqlx(flatten)]
    grant: JoinedGrant,
}

#[derive(sqlx::FromRow)]
struct TokenCallerRow {
    #[sqlx(flatten)]
    access: AccessRow,
    #[sqlx(flatten)]
    grant: JoinedGrant,
}

impl Store {
    /// The live session whose cookie has `token_digest` (not expired, seen within `idle_secs`),
    /// its user, the user's tenant state and grants. Marks the session seen as
    /// [`Store::authenticate_session`] does.
    pub async fn find_session_caller(
        &self,
        token_digest: &[u8; 32],
        at: Timestamp,
        idle_secs: i64,
    ) -> Result<Option<SessionCaller>, StoreError> {
        let rows: Vec<SessionCallerRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            "SELECT ",
            session_columns!("s."),
            ", ",
            joined_user_columns!(),
            ", COALESCE(u.tenant_id IS NULL OR t.status = 'active', FALSE) AS tenant_active, ",
            joined_grant_columns!(),
            " FROM sessions s \
             LEFT JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL \
             LEFT JOIN tenants t ON t.id = u.tenant_id \
             LEFT JOIN role_assignments ra ON ra.user_id = u.id \
             LEFT JOIN role_permissions rp ON rp.role_name = ra.role_name \
             WHERE ",
            live_session!("s.")
        ))
        .bind(&token_digest[..])
        .bind(DbTime(at))
        .bind(idle_since(at, idle_secs))
        .fetch_all(pool)
        .await)?;
        let Some(((session, user, tenant_active), grants)) =
            with_grants(rows, |r| ((r.session, r.user, r.tenant_active), r.grant))
        else {
            return Ok(None);
        };
        let session = session.into_session();
        self.mark_session_seen(&session, at).await?;
        Ok(Some(SessionCaller {
            session,
            user: user.into_user(),
            tenant_active,
            grants,
        }))
    }

    /// The access token whose digest is `digest` and the grants of its client.
    pub async fn find_token_caller(
        &self,
        digest: &[u8; 32],
        at: Timestamp,
    ) -> Result<Option<TokenCaller>, StoreError> {
        let rows: Vec<TokenCallerRow> = on_pool!(self, |pool| sqlx::query_as(access_select!(
            concat!(", ", joined_grant_columns!()),
            " LEFT JOIN role_assignments ra ON ra.client_id = a.client_id \
             LEFT JOIN role_permissions rp ON rp.role_name = ra.role_name",
            "a.token_hash = $1"
        ))
        .bind(&digest[..])
        .bind(DbTime(at))
        .fetch_all(pool)
        .await)?;
        Ok(
            with_grants(rows, |r| (r.access, r.grant)).map(|(access, grants)| TokenCaller {
                token: access.into_record(),
                grants,
            }),
        )
    }
}

/// The caller's columns from the first of `rows` (they repeat on every row) and the grants of
/// all of them (one row per permission held); `None` when there are no rows.
fn with_grants<R, C>(
    rows: Vec<R>,
    split: impl Fn(R) -> (C, JoinedGrant),
) -> Option<(C, Vec<Grant>)> {
    let mut rows = rows.into_iter().map(split);
    let (caller, first) = rows.next()?;
    let grants = std::iter::once(first)
        .chain(rows.map(|(_, grant)| grant))
        .filter_map(JoinedGrant::into_grant)
        .collect();
    Some((caller, grants))
}
