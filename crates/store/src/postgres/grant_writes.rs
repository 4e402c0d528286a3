//! The statements behind the group commit (`batch.rs`) of the two grant writes on PostgreSQL:
//! code redemptions and refresh-token rotations. Each row keeps its own condition (the code not
//! yet claimed, the refresh token not yet spent); a row whose condition failed is reported back
//! and its caller decides alone what it means (`grants.rs`: replay and reuse detection).

use std::sync::LazyLock;

use opentrusty_core::Timestamp;
use opentrusty_core::audit::{AuditEvent, Origin, action};
use opentrusty_core::ids::TokenFamilyId;

use crate::StoreError;
use crate::postgres::batch::{
    GroupWrite, SharedColumns, WritePool, access_arrays, audit_arrays, first_column,
    group_statement,
};
use crate::tokens::{NewAccessToken, NewTokenFamily, issue_event};

/// A code to claim, with the family, the access token and the audit row its redemption records.
pub(crate) struct RedeemWrite {
    code_digest: [u8; 32],
    pub(crate) family_id: TokenFamilyId,
    family: NewTokenFamily,
    access: NewAccessToken,
    event: AuditEvent,
    at: Timestamp,
}

impl RedeemWrite {
    pub(crate) fn new(
        code_digest: &[u8; 32],
        access: &NewAccessToken,
        family: &NewTokenFamily,
        origin: &Origin,
        at: Timestamp,
    ) -> RedeemWrite {
        RedeemWrite {
            code_digest: *code_digest,
            family_id: TokenFamilyId::new(),
            family: family.clone(),
            access: access.clone(),
            event: issue_event(
                access,
                Some(family.refresh_digest.is_some()),
                action::TOKEN_ISSUED,
                origin,
            ),
            at,
        }
    }
}

/// The statement of [`RedeemWrite::write_all`].
pub(crate) static REDEMPTIONS: LazyLock<String> = LazyLock::new(|| {
    group_statement(
        &[
            "code_hash",
            "family_id",
            "family_tenant",
            "family_client",
            "family_user",
            "family_session",
            "family_scope",
            "family_auth_time",
            "family_expires",
            "refresh_hash",
            "at",
            "offline",
        ],
        concat!(
            "WITH n AS (SELECT * FROM UNNEST(:code_hash::bytea[], :family_id::uuid[], \
         :family_tenant::uuid[], :family_client::uuid[], :family_user::uuid[], \
         :family_session::uuid[], :family_scope::text[], :family_auth_time::timestamptz[], \
         :family_expires::timestamptz[], :refresh_hash::bytea[], :at::timestamptz[], \
         :offline::bool[]) AS n (code_hash, \
         family_id, tenant_id, client_id, user_id, session_id, scope, auth_time, \
         expires_at, refresh_hash, at, offline)), \
         claimed AS (UPDATE authorization_codes a SET used_at = n.at, \
         family_id = n.family_id FROM n WHERE a.code_hash = n.code_hash AND ",
            crate::grants::code_claimable!("a", "n.at"),
            " RETURNING n.family_id), \
         family AS (INSERT INTO token_families (id, tenant_id, client_id, user_id, \
         session_id, scope, auth_time, created_at, expires_at, offline) \
         SELECT n.family_id, n.tenant_id, n.client_id, n.user_id, n.session_id, \
         n.scope, n.auth_time, n.at, n.expires_at, n.offline \
         FROM n JOIN claimed USING (family_id) \
         RETURNING id), \
         first_refresh AS (INSERT INTO refresh_tokens (token_hash, family_id, \
         created_at, expires_at) SELECT n.refresh_hash, n.family_id, n.at, n.expires_at \
         FROM n JOIN family ON family.id = n.family_id \
         WHERE n.refresh_hash IS NOT NULL), \
         token AS (INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, \
         user_id, family_id, scope, created_at, expires_at) \
         SELECT t.jti, t.token_hash, t.tenant_id, t.client_id, t.user_id, t.family_id, \
         t.scope, t.at, t.expires_at FROM UNNEST(",
            access_arrays!(),
            ", :family_id::uuid[], :at::timestamptz[]) AS t (jti, token_hash, tenant_id, client_id, \
         user_id, scope, expires_at, family_id, at) \
         JOIN family ON family.id = t.family_id), \
         trail AS (INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 FROM UNNEST(",
            audit_arrays!(),
            ", :family_id::uuid[]) \
         AS e (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, family_id) \
         JOIN family ON family.id = e.family_id) \
         SELECT id FROM family"
        ),
    )
});

impl GroupWrite for RedeemWrite {
    /// Claims every code still pending, and for each claimed one creates its family (with the
    /// first refresh token, if any), the access token and the audit row. Two writes of one code
    /// in a batch claim it once: the other is not made.
    async fn write_all(pool: &WritePool, batch: &[&RedeemWrite]) -> Result<Vec<bool>, StoreError> {
        let shared: SharedColumns = batch.iter().map(|w| (&w.event, &w.access)).collect();
        let families: Vec<&NewTokenFamily> = batch.iter().map(|w| &w.family).collect();
        let q = shared
            .query(&REDEMPTIONS)
            .bind(
                batch
                    .iter()
                    .map(|w| w.code_digest.to_vec())
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|w| w.family_id.0).collect::<Vec<_>>())
            .bind(families.iter().map(|f| f.tenant_id.0).collect::<Vec<_>>())
            .bind(families.iter().map(|f| f.client_id.0).collect::<Vec<_>>())
            .bind(
                families
                    .iter()
                    .map(|f| f.user_id.map(|u| u.0))
                    .collect::<Vec<_>>(),
            )
            .bind(
                families
                    .iter()
                    .map(|f| f.session_id.map(|s| s.0))
                    .collect::<Vec<_>>(),
            )
            .bind(
                families
                    .iter()
                    .map(|f| f.scope.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(families.iter().map(|f| f.auth_time).collect::<Vec<_>>())
            .bind(families.iter().map(|f| f.expires_at).collect::<Vec<_>>())
            .bind(
                families
                    .iter()
                    .map(|f| f.refresh_digest.map(|d| d.to_vec()))
                    .collect::<Vec<_>>(),
            )
            .bind(batch.iter().map(|w| w.at).collect::<Vec<_>>())
            .bind(families.iter().map(|f| f.offline).collect::<Vec<_>>());
        let issued: Vec<uuid::Uuid> = first_column(q, pool).await?;
        Ok(batch
            .iter()
            .map(|w| issued.contains(&w.family_id.0))
            .collect())
    }
}

/// A refresh token to spend, with its successor, the access token and the audit row.
pub(crate) struct RotateWrite {
    old: [u8; 32],
    new: [u8; 32],
    access: NewAccessToken,
    event: AuditEvent,
    at: Timestamp,
}

impl RotateWrite {
    pub(crate) fn new(
        old: &[u8; 32],
        new: &[u8; 32],
        access: &NewAccessToken,
        origin: &Origin,
        at: Timestamp,
    ) -> RotateWrite {
        RotateWrite {
            old: *old,
            new: *new,
            access: access.clone(),
            event: issue_event(access, Some(true), action::TOKEN_REFRESHED, origin),
            at,
        }
    }
}

/// The statement of [`RotateWrite::write_all`].
pub(crate) static ROTATIONS: LazyLock<String> = LazyLock::new(|| {
    group_statement(
        &["old_hash", "new_hash", "at"],
        concat!(
            "WITH n AS (SELECT * FROM UNNEST(:old_hash::bytea[], :new_hash::bytea[], \
         :at::timestamptz[]) \
         WITH ORDINALITY AS n (old_hash, new_hash, at, ord)), \
         spent AS (UPDATE refresh_tokens r SET rotated_at = n.at FROM n \
         WHERE r.token_hash = n.old_hash AND ",
            crate::grants::refresh_spendable!("r", "n.at"),
            " RETURNING r.family_id, n.ord), \
         family AS (SELECT f.id, f.expires_at, spent.ord FROM token_families f \
         JOIN spent ON spent.family_id = f.id), \
         successor AS (INSERT INTO refresh_tokens (token_hash, family_id, created_at, \
         expires_at) SELECT n.new_hash, family.id, n.at, family.expires_at \
         FROM n JOIN family USING (ord)), \
         token AS (INSERT INTO access_tokens (jti, token_hash, tenant_id, client_id, \
         user_id, family_id, scope, created_at, expires_at) \
         SELECT t.jti, t.token_hash, t.tenant_id, t.client_id, t.user_id, family.id, \
         t.scope, t.at, t.expires_at FROM UNNEST(",
            access_arrays!(),
            ", :at::timestamptz[]) WITH ORDINALITY AS t (jti, token_hash, tenant_id, \
         client_id, user_id, scope, expires_at, at, ord) JOIN family USING (ord)), \
         trail AS (INSERT INTO audit_events (",
            crate::audit::audit_columns!(),
            ") SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 FROM UNNEST(",
            audit_arrays!(),
            ") WITH ORDINALITY AS e (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, ord) \
         JOIN family USING (ord)) \
         SELECT ord FROM family"
        ),
    )
});

impl GroupWrite for RotateWrite {
    /// Spends every live, unexpired token of a live family, and for each spent one records its
    /// successor (expiring with the family), the access token and the audit row. Rows are
    /// matched by their place in the batch: two writes of one token spend it once, and the
    /// other is not made.
    async fn write_all(pool: &WritePool, batch: &[&RotateWrite]) -> Result<Vec<bool>, StoreError> {
        let shared: SharedColumns = batch.iter().map(|w| (&w.event, &w.access)).collect();
        let q = shared
            .query(&ROTATIONS)
            .bind(batch.iter().map(|w| w.old.to_vec()).collect::<Vec<_>>())
            .bind(batch.iter().map(|w| w.new.to_vec()).collect::<Vec<_>>())
            .bind(batch.iter().map(|w| w.at).collect::<Vec<_>>());
        let rotated: Vec<i64> = first_column(q, pool).await?;
        Ok((1..=batch.len() as i64)
            .map(|ord| rotated.contains(&ord))
            .collect())
    }
}
