//! Token signing keys: listed and rotated by platform administrators.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use opentrusty_core::now;
use opentrusty_core::rbac::{Permission, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::Caller;
use crate::input::{self, Cursor};
use crate::problem::ApiError;
use crate::views::*;

use super::{ApiResult, Errors};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default()
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(PageQuery),
    responses((status = 200, body = KeyList), Errors))]
pub async fn list_keys(
    State(state): State<AdminState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<KeyList>> {
    caller.require(Permission::PlatformManageKeys, Scope::Platform)?;
    let q: PageQuery = input::query(q.as_deref())?;
    let limit = input::limit(q.limit.as_deref())?;
    // Keys are few: page over the full, newest-first list by position.
    let skip = match q.cursor.as_deref() {
        None => 0,
        Some(c) => match Cursor::decode(c)? {
            Cursor::Skip(n) => n as usize,
            _ => return Err(ApiError::validation("cursor", "belongs to another list")),
        },
    };
    let keys = state.store().list_signing_keys().await?;
    let end = (skip + limit as usize).min(keys.len());
    let next_cursor = (end < keys.len()).then(|| Cursor::Skip(end as u32).encode());
    let items = keys
        .into_iter()
        .skip(skip)
        .take(limit as usize)
        .map(KeyView::from)
        .collect();
    Ok(Json(KeyList { items, next_cursor }))
}

#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", request_body(content = Option<RotateKeys>),
    responses((status = 200, body = RotatedKeys), Errors))]
pub async fn rotate_keys(
    State(state): State<AdminState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RotatedKeys>> {
    caller.require(Permission::PlatformManageKeys, Scope::Platform)?;
    let req: RotateKeys = if body.is_empty() {
        RotateKeys::default()
    } else {
        input::json(&headers, &body)?
    };
    if let Some(alg) = &req.alg
        && opentrusty_core::signing::Algorithm::parse(alg).is_none()
    {
        return Err(ApiError::validation("alg", "use RS256, ES256 or EdDSA"));
    }
    let store = state.store();
    // A retired key stays published for as long as any token it signed may live.
    let keep = store.longest_token_lifetime_secs().await?.max(3600) + 300;
    let until = now() + time::Duration::seconds(keep);
    let rotated = store
        .promote_next_signing_keys(req.alg.as_deref(), until, caller.origin())
        .await?;
    Ok(Json(RotatedKeys {
        rotated: rotated
            .into_iter()
            .map(|(alg, retired_kid, active_kid)| RotatedKey {
                alg,
                retired_kid,
                active_kid,
            })
            .collect(),
    }))
}
