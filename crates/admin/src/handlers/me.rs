//! `GET /auth/me`: who the caller is and what they hold.

use axum::Json;
use axum::extract::State;
use opentrusty_core::rbac::Permission;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::caller::{Caller, Credential};
use crate::views::*;

use super::{ApiResult, Errors};

pub(super) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::default().routes(routes!(me))
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "session",
    responses((status = 200, body = MeView), Errors))]
pub async fn me(State(state): State<AdminState>, caller: Caller) -> ApiResult<Json<MeView>> {
    caller.require(Permission::ControlPlaneLogin, caller.home())?;
    let store = state.store();
    let tenant = match caller.tenant {
        Some(t) => store.get_tenant(t).await?.map(TenantView::from),
        None => None,
    };
    let client = match (caller.client, caller.tenant) {
        (Some(c), Some(t)) => store.get_client(t, c).await?.map(ClientView::from),
        _ => None,
    };
    let mut permissions: Vec<String> = caller
        .grants()
        .iter()
        .map(|g| g.permission.as_str().to_owned())
        .collect();
    permissions.sort();
    permissions.dedup();
    let csrf_token = match &caller.credential {
        Credential::Session { digest } => Some(opentrusty_core::secret::session_csrf_token(
            state.master_key(),
            digest,
        )),
        Credential::Bearer => None,
    };
    Ok(Json(MeView {
        kind: if caller.user.is_some() {
            "user"
        } else {
            "client"
        }
        .to_owned(),
        roles: store
            .assignments_of(caller.subject)
            .await?
            .into_iter()
            .map(AssignmentView::from)
            .collect(),
        user: caller.user.clone().map(UserView::from),
        client,
        tenant,
        permissions,
        csrf_token,
    }))
}
