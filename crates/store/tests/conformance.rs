//! The storage conformance suite: every test runs against SQLite and, when
//! `OPENTRUSTY_TEST_DATABASE_URL` is set, against PostgreSQL, each on its own fresh database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::BTreeSet;

use opentrusty_core::audit::{Actor, Origin, action};
use opentrusty_core::client::{NewClient, TokenEndpointAuthMethod};
use opentrusty_core::email::Email;
use opentrusty_core::rbac::{Permission, Role, Scope, allows};
use opentrusty_core::session::NewSession;
use opentrusty_core::tenant::{TenantName, TenantPatch, TenantStatus};
use opentrusty_core::user::NewUser;
use opentrusty_core::{ClientId, SessionId, TenantId, UserId, now, secret};
use opentrusty_store::{
    AccessTokenKey, AuditQuery, Backend, BootstrapOutcome, ConnectOptions, EnrollmentPurpose,
    NewAccessToken, NewAuthorizationCode, NewEnrollmentLink, NewTokenFamily, Store, StoreError,
    Subject, UserFilter,
};
use opentrusty_testkit::TestDb;
use sqlx::Connection;
use time::Duration;

opentrusty_testkit::each_backend!(
    migrations_are_recorded_and_idempotent,
    seeded_roles_match_the_domain,
    tenant_lifecycle_is_audited,
    tenant_names_are_unique_case_insensitively_among_live_tenants,
    deleting_a_tenant_ends_its_sessions_clients_codes_and_tokens,
    users_are_unique_per_tenant_by_normalized_email,
    users_need_a_live_tenant,
    passwords_are_stored_and_replaced,
    permissions_come_from_assignments_at_their_scope,
    assignments_cannot_leave_the_subjects_tenant,
    clients_act_as_service_accounts,
    bootstrap_creates_one_admin_once,
    concurrent_bootstraps_create_exactly_one_admin,
    audit_rows_cannot_be_changed_or_deleted,
    a_client_row_with_a_value_this_release_does_not_know_is_refused,
    failed_changes_leave_no_audit_row,
    tenant_scoped_queries_never_return_other_tenants_rows,
    sessions_are_found_by_digest_until_they_expire,
    concurrent_redemptions_of_one_code_issue_exactly_once,
    concurrent_refreshes_of_one_token_rotate_exactly_once,
    concurrent_grant_writes_are_each_recorded_and_fail_alone,
    disabling_a_user_revokes_every_token_of_theirs_and_no_one_elses,
    a_refresh_token_is_read_with_its_clients_public_id,
    a_tenant_keeps_an_owner_under_concurrent_removals,
    a_role_gained_voids_the_users_pending_links,
    a_link_is_issued_only_against_the_roles_it_was_approved_for,
    an_email_gets_console_roles_in_one_place_under_concurrent_grants,
    the_janitor_deletes_what_expired_and_nothing_else,
    failed_passwords_lock_an_account_until_unlocked_or_signed_in,
    concurrent_issuances_are_each_recorded_and_audited_and_fail_alone,
    writes_abandoned_at_any_step_leave_no_transaction_open,
    a_token_request_reads_its_client_and_grant_in_one_look_up,
    concurrent_client_look_ups_each_get_their_own_client_as_committed,
    a_sign_in_writes_its_session_and_code_together_or_neither,
    token_families_follow_their_session_unless_offline,
    a_sign_in_form_reads_its_client_and_account_in_one_look_up,
    a_client_token_is_written_only_while_its_client_is_unchanged,
    a_client_token_is_recorded_by_its_audit_row_alone,
    an_admin_caller_is_read_with_its_grants_in_one_look_up,
    a_small_pool_serves_more_callers_than_it_has_connections,
    reads_abandoned_at_any_step_leave_nothing_for_the_next,
);

fn admin_origin() -> Origin {
    Origin {
        actor: Some(Actor::User(UserId::new())),
        ip: Some("198.51.100.7".into()),
        user_agent: Some("conformance".into()),
        request_id: Some("req-42".into()),
    }
}

async fn tenant(store: &Store, name: &str) -> TenantId {
    store
        .create_tenant(&TenantName::parse(name).unwrap(), None, &Origin::system())
        .await
        .unwrap()
        .id
}

async fn user(store: &Store, tenant: TenantId, email: &str) -> UserId {
    let new = NewUser::new(Some(tenant), email, Some("Test"), None).unwrap();
    store
        .create_user(&new, Some("$argon2id$stub"), &Origin::system())
        .await
        .unwrap()
        .id
}

async fn client(store: &Store, tenant: TenantId, client_id: &str) -> ClientId {
    let mut new = NewClient::new(
        tenant,
        client_id,
        &format!("{client_id} app"),
        TokenEndpointAuthMethod::ClientSecretBasic,
        Some("digest".into()),
    );
    new.redirect_uris = vec!["https://app.example.com/cb".into()];
    store
        .create_client(&new, &Origin::system())
        .await
        .unwrap()
        .id
}

async fn session(store: &Store, tenant: Option<TenantId>, user: UserId) -> [u8; 32] {
    let digest = secret::token_digest(&secret::random_token());
    let new = NewSession {
        user_id: user,
        tenant_id: tenant,
        token_digest: digest,
        expires_at: now() + Duration::hours(1),
        ip: None,
        user_agent: None,
    };
    store
        .create_session(&new, None, &Origin::system())
        .await
        .unwrap();
    digest
}

/// A platform user holding the platform administrator role.
async fn platform_admin(store: &Store) -> opentrusty_core::user::User {
    let new = NewUser::new(None, "root@example.com", None, None).unwrap();
    let op = store
        .create_user(&new, None, &Origin::system())
        .await
        .unwrap();
    assign(
        store,
        Subject::User(op.id),
        Role::PlatformAdmin,
        Scope::Platform,
    )
    .await;
    op
}

async fn assign(store: &Store, subject: Subject, role: Role, at: Scope) {
    store
        .assign_role(subject, role, at, &admin_origin())
        .await
        .unwrap();
}

async fn actions(store: &Store, tenant: Option<TenantId>) -> Vec<String> {
    audit(store, tenant)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The audit trail of `tenant` (the platform's with `None`), newest first.
async fn audit(store: &Store, tenant: Option<TenantId>) -> Vec<opentrusty_core::audit::AuditEvent> {
    store
        .list_audit(&AuditQuery {
            tenant,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn migrations_are_recorded_and_idempotent(migrated: &TestDb) {
    // Start from an empty database of the same backend rather than the migrated one.
    let db = match Backend::of_url(migrated.url()) {
        Some(Backend::Postgres) => TestDb::postgres(false).await.unwrap(),
        _ => TestDb::sqlite(false).await,
    };
    {
        let store = db.store().await;
        let before = store.migration_status().await.unwrap();
        assert!(before.applied.is_empty());
        assert_eq!(before.pending.len(), opentrusty_store::MIGRATIONS.len());
        assert!(store.readiness().await.unwrap_err().contains("pending"));

        // Two migrators at once: every migration is applied exactly once. On PostgreSQL one
        // applies them all and the other waits and finds nothing to do (an advisory lock over
        // the whole run); on SQLite each migration takes the write lock on its own, so the two
        // may share the work.
        let other = db.store().await;
        let (a, b) = tokio::join!(store.migrate(), other.migrate());
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut applied: Vec<i64> = a.iter().chain(&b).copied().collect();
        applied.sort_unstable();
        let all: Vec<i64> = opentrusty_store::MIGRATIONS
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(applied, all, "{a:?} {b:?}");
        if store.backend() == Backend::Postgres {
            assert!(a.is_empty() || b.is_empty(), "{a:?} {b:?}");
        }

        assert!(
            store.migrate().await.unwrap().is_empty(),
            "second run is a no-op"
        );
        let after = store.migration_status().await.unwrap();
        assert!(after.pending.is_empty());
        assert_eq!(after.applied.len(), opentrusty_store::MIGRATIONS.len());
        assert_eq!(after.applied[0].version, 1);
        store.readiness().await.unwrap();
    }
}

async fn seeded_roles_match_the_domain(db: &TestDb) {
    let store = db.store().await;
    let mut expected: Vec<String> = Permission::ALL
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(store.permission_names().await.unwrap(), expected);
    for required in ["user:change_password", "platform:view_audit"] {
        assert!(expected.iter().any(|p| p == required));
    }
    let mut table: Vec<(String, String)> = Role::ALL
        .iter()
        .flat_map(|r| {
            r.permissions()
                .iter()
                .map(|p| (r.as_str().to_owned(), p.as_str().to_owned()))
        })
        .collect();
    table.sort();
    assert_eq!(store.role_permission_table().await.unwrap(), table);
}

async fn tenant_lifecycle_is_audited(db: &TestDb) {
    let store = db.store().await;
    let origin = admin_origin();
    let t = store
        .create_tenant(
            &TenantName::parse(" Acme ").unwrap(),
            Some("Acme Inc."),
            &origin,
        )
        .await
        .unwrap();
    assert_eq!(t.name, "Acme");
    assert_eq!(t.status, TenantStatus::Active);
    assert_eq!(store.get_tenant(t.id).await.unwrap().unwrap(), t);

    let status = |s| TenantPatch {
        status: Some(s),
        ..TenantPatch::default()
    };
    let renamed = store
        .update_tenant(
            t.id,
            &TenantPatch {
                name: Some(TenantName::parse("Acme Two").unwrap()),
                accent_color: Some(Some("#112233".into())),
                ..TenantPatch::default()
            },
            &origin,
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Two");
    assert_eq!(renamed.accent_color.as_deref(), Some("#112233"));
    // A patch that changes nothing writes nothing.
    store
        .update_tenant(t.id, &TenantPatch::default(), &origin)
        .await
        .unwrap();
    let suspended = store
        .update_tenant(t.id, &status(TenantStatus::Suspended), &origin)
        .await
        .unwrap();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    let active = store
        .update_tenant(t.id, &status(TenantStatus::Active), &origin)
        .await
        .unwrap();
    assert_eq!(active.status, TenantStatus::Active);
    assert!(matches!(
        store
            .update_tenant(t.id, &status(TenantStatus::Deleted), &origin)
            .await,
        Err(StoreError::Invalid(_))
    ));

    let events = store
        .list_audit(&AuditQuery {
            tenant: Some(t.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        names,
        [
            action::TENANT_ACTIVATED,
            action::TENANT_SUSPENDED,
            action::TENANT_UPDATED,
            action::TENANT_CREATED
        ]
    );
    let created = events.last().unwrap();
    assert_eq!(created.actor, origin.actor());
    assert_eq!(created.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(created.user_agent.as_deref(), Some("conformance"));
    assert_eq!(created.request_id.as_deref(), Some("req-42"));
    assert_eq!(created.target.as_ref().unwrap().id, t.id.to_string());
    assert_eq!(created.occurred_at.offset(), time::UtcOffset::UTC);
    assert_eq!(
        events[2].metadata,
        serde_json::json!({"changes": {
            "name": {"from": "Acme", "to": "Acme Two"},
            "accent_color": {"from": null, "to": "#112233"},
        }})
    );

    let second = tenant(&store, "Beta").await;
    let listed = store.list_tenants(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [t.id, second]
    );
    let page2 = store.list_tenants(Some(t.id), 10).await.unwrap();
    assert_eq!(page2.iter().map(|t| t.id).collect::<Vec<_>>(), [second]);
}

async fn tenant_names_are_unique_case_insensitively_among_live_tenants(db: &TestDb) {
    let store = db.store().await;
    let first = tenant(&store, "Acme").await;
    let dup = store
        .create_tenant(&TenantName::parse("ACME").unwrap(), None, &Origin::system())
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let other = tenant(&store, "Other").await;
    let rename = store
        .update_tenant(
            other,
            &TenantPatch {
                name: Some(TenantName::parse("acme").unwrap()),
                ..TenantPatch::default()
            },
            &Origin::system(),
        )
        .await;
    assert!(matches!(rename, Err(StoreError::Conflict(_))), "{rename:?}");
    store.delete_tenant(first, &Origin::system()).await.unwrap();
    tenant(&store, "Acme").await;
}

async fn deleting_a_tenant_ends_its_sessions_clients_codes_and_tokens(db: &TestDb) {
    let store = db.store().await;
    let doomed = tenant(&store, "Doomed").await;
    let kept = tenant(&store, "Kept").await;
    let mut grants = Vec::new();
    for t in [doomed, kept] {
        let u = user(&store, t, "ada@example.com").await;
        let c = client(&store, t, &format!("app-{t}")).await;
        let cookie = session(&store, Some(t), u).await;
        let code = secret::token_digest(&secret::random_token());
        store
            .issue_authorization_code(
                &NewAuthorizationCode {
                    code_digest: code,
                    tenant_id: t,
                    client_id: c,
                    user_id: u,
                    session_id: None,
                    redirect_uri: "https://app.example.com/cb".into(),
                    scope: "openid".into(),
                    nonce: None,
                    code_challenge: Some("x".into()),
                    code_challenge_method: Some(opentrusty_core::pkce::PkceMethod::S256),
                    redirect_uri_given: true,
                    auth_time: now(),
                    expires_at: now() + Duration::seconds(60),
                },
                &Origin::system(),
            )
            .await
            .unwrap();
        let jti = uuid::Uuid::now_v7();
        let family = store
            .issue_tokens(
                &NewAccessToken {
                    jti,
                    token_digest: None,
                    tenant_id: t,
                    client_id: c,
                    user_id: Some(u),
                    scope: "openid".into(),
                    expires_at: now() + Duration::minutes(15),
                },
                Some(&NewTokenFamily {
                    tenant_id: t,
                    client_id: c,
                    user_id: Some(u),
                    session_id: None,
                    scope: "openid".into(),
                    auth_time: Some(now()),
                    expires_at: now() + Duration::days(30),
                    refresh_digest: Some(secret::token_digest(&secret::random_token())),
                    offline: false,
                }),
                &Origin::system(),
            )
            .await
            .unwrap()
            .unwrap();
        grants.push((t, u, c, cookie, code, jti, family));
    }
    for (_, _, _, cookie, code, jti, family) in &grants {
        assert!(store.find_session(cookie, now()).await.unwrap().is_some());
        assert!(store.authorization_code_pending(code, now()).await.unwrap());
        assert!(store.access_token_active(*jti, now()).await.unwrap());
        assert_eq!(
            store.token_family_revoked(*family).await.unwrap(),
            Some(false)
        );
    }

    store.delete_tenant(doomed, &admin_origin()).await.unwrap();
    assert!(matches!(
        store.delete_tenant(doomed, &admin_origin()).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.get_tenant(doomed).await.unwrap().is_none());

    let (t, u, c, cookie, code, jti, family) = grants[0];
    assert_eq!(t, doomed);
    assert!(store.find_session(&cookie, now()).await.unwrap().is_none());
    assert!(store.get_client(doomed, c).await.unwrap().is_none());
    assert!(
        store
            .find_client(&format!("app-{doomed}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .authorization_code_pending(&code, now())
            .await
            .unwrap()
    );
    assert!(!store.access_token_active(jti, now()).await.unwrap());
    assert_eq!(
        store.token_family_revoked(family).await.unwrap(),
        Some(true)
    );
    assert!(
        store.get_user(doomed, u).await.unwrap().is_some(),
        "users are kept"
    );

    // The other tenant is untouched.
    let (t, _, c, cookie, code, jti, family) = grants[1];
    assert_eq!(t, kept);
    assert!(store.find_session(&cookie, now()).await.unwrap().is_some());
    assert!(store.get_client(kept, c).await.unwrap().is_some());
    assert!(
        store
            .authorization_code_pending(&code, now())
            .await
            .unwrap()
    );
    assert!(store.access_token_active(jti, now()).await.unwrap());
    assert_eq!(
        store.token_family_revoked(family).await.unwrap(),
        Some(false)
    );

    let events = store
        .list_audit(&AuditQuery {
            tenant: Some(doomed),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events[0].action, action::TENANT_DELETED);
    assert_eq!(
        events[0].metadata["ended"],
        serde_json::json!({
            "sessions": 1, "clients": 1, "token_families": 1, "access_tokens": 1,
            "authorization_codes": 1, "enrollment_links": 0
        })
    );
}

async fn users_are_unique_per_tenant_by_normalized_email(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let b = tenant(&store, "B").await;
    let ada = user(&store, a, " Ada@Example.COM").await;
    let found = store
        .find_user_for_sign_in(Some(a), "ada@example.com")
        .await
        .unwrap()
        .map(|(user, _)| user)
        .unwrap();
    assert_eq!(found.id, ada);
    assert_eq!(found.email, "Ada@Example.COM");
    assert_eq!(found.tenant_id, Some(a));

    let dup = NewUser::new(Some(a), "ada@example.com", None, None).unwrap();
    let err = store.create_user(&dup, None, &Origin::system()).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");

    // The same address in another tenant is a different person.
    let other = user(&store, b, "ada@example.com").await;
    assert_ne!(other, ada);
    assert!(
        store
            .find_user_for_sign_in(Some(b), "ada@example.com")
            .await
            .unwrap()
            .map(|(user, _)| user)
            .is_some()
    );

    // A platform operator may share the address too, once.
    let op = NewUser::new(None, "ADA@example.com", None, None).unwrap();
    store
        .create_user(&op, None, &Origin::system())
        .await
        .unwrap();
    assert!(matches!(
        store.create_user(&op, None, &Origin::system()).await,
        Err(StoreError::Conflict(_))
    ));
    let platform = store
        .find_user_for_sign_in(None, "ada@example.com")
        .await
        .unwrap()
        .map(|(user, _)| user)
        .unwrap();
    assert_eq!(platform.tenant_id, None);

    // The sign-in lookup: the right account per tenant (or among operators), with its hash.
    store
        .set_password_hash(ada, "$argon2id$ada", &Origin::system())
        .await
        .unwrap();
    let (u, hash) = store
        .find_user_for_sign_in(Some(a), "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.id, hash.as_deref()), (ada, Some("$argon2id$ada")));
    let (u, hash) = store
        .find_user_for_sign_in(Some(b), "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.id, hash.as_deref()), (other, Some("$argon2id$stub")));
    let (u, hash) = store
        .find_user_for_sign_in(None, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.id, hash),
        (platform.id, None),
        "created without a password"
    );
    store.delete_user(a, ada, &Origin::system()).await.unwrap();
    assert!(
        store
            .find_user_for_sign_in(Some(a), "ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_user_for_sign_in(Some(TenantId::new()), "ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn users_need_a_live_tenant(db: &TestDb) {
    let store = db.store().await;
    let nowhere = NewUser::new(Some(TenantId::new()), "a@example.com", None, None).unwrap();
    assert!(matches!(
        store.create_user(&nowhere, None, &Origin::system()).await,
        Err(StoreError::NotFound)
    ));
    let t = tenant(&store, "Gone").await;
    store.delete_tenant(t, &Origin::system()).await.unwrap();
    let late = NewUser::new(Some(t), "a@example.com", None, None).unwrap();
    assert!(matches!(
        store.create_user(&late, None, &Origin::system()).await,
        Err(StoreError::NotFound)
    ));
}

async fn passwords_are_stored_and_replaced(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "A").await;
    let new = NewUser::new(Some(t), "nopass@example.com", None, None).unwrap();
    let u = store
        .create_user(&new, None, &Origin::system())
        .await
        .unwrap();
    assert_eq!(store.password_hash(u.id).await.unwrap(), None);
    store
        .set_password_hash(u.id, "$argon2id$first", &admin_origin())
        .await
        .unwrap();
    store
        .set_password_hash(u.id, "$argon2id$second", &admin_origin())
        .await
        .unwrap();
    assert_eq!(
        store.password_hash(u.id).await.unwrap().as_deref(),
        Some("$argon2id$second")
    );
    let events = actions(&store, Some(t)).await;
    assert_eq!(
        events
            .iter()
            .filter(|a| *a == action::USER_PASSWORD_SET)
            .count(),
        2
    );
    assert!(matches!(
        store
            .set_password_hash(UserId::new(), "x", &Origin::system())
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn permissions_come_from_assignments_at_their_scope(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let b = tenant(&store, "B").await;
    let admin = user(&store, a, "admin@a.example").await;
    let member = user(&store, a, "member@a.example").await;
    store
        .assign_role(
            Subject::User(admin),
            Role::TenantAdmin,
            Scope::Tenant(a),
            &admin_origin(),
        )
        .await
        .unwrap();
    store
        .assign_role(
            Subject::User(member),
            Role::TenantMember,
            Scope::Tenant(a),
            &admin_origin(),
        )
        .await
        .unwrap();
    let dup = store
        .assign_role(
            Subject::User(admin),
            Role::TenantAdmin,
            Scope::Tenant(a),
            &admin_origin(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let g = store.grants_of(Subject::User(admin)).await.unwrap();
    assert!(allows(&g, Permission::TenantManageUsers, &Scope::Tenant(a)));
    assert!(!allows(
        &g,
        Permission::TenantManageUsers,
        &Scope::Tenant(b)
    ));
    assert!(!allows(
        &g,
        Permission::PlatformManageTenants,
        &Scope::Platform
    ));
    let g = store.grants_of(Subject::User(member)).await.unwrap();
    assert!(!allows(
        &g,
        Permission::ControlPlaneLogin,
        &Scope::Tenant(a)
    ));
    assert!(allows(
        &g,
        Permission::UserChangePassword,
        &Scope::Tenant(a)
    ));

    let op = platform_admin(&store).await;
    let g = store.grants_of(Subject::User(op.id)).await.unwrap();
    for at in [Scope::Platform, Scope::Tenant(a), Scope::Tenant(b)] {
        assert!(allows(&g, Permission::TenantManageClients, &at));
    }
    assert!(allows(&g, Permission::PlatformViewAudit, &Scope::Platform));
    assert_eq!(
        store.assignments_of(Subject::User(op.id)).await.unwrap(),
        [(Role::PlatformAdmin, Scope::Platform)]
    );
    assert!(
        actions(&store, Some(a))
            .await
            .contains(&action::ROLE_ASSIGNED.to_owned())
    );
}

async fn assignments_cannot_leave_the_subjects_tenant(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let b = tenant(&store, "B").await;
    let u = user(&store, a, "u@a.example").await;
    for (role, scope) in [
        (Role::TenantAdmin, Scope::Tenant(b)),
        (Role::PlatformAdmin, Scope::Platform),
        (Role::TenantOwner, Scope::Platform),
    ] {
        let r = store
            .assign_role(Subject::User(u), role, scope, &Origin::system())
            .await;
        assert!(
            matches!(r, Err(StoreError::Invalid(_))),
            "{role:?} {scope:?}: {r:?}"
        );
    }
    assert!(store.grants_of(Subject::User(u)).await.unwrap().is_empty());
    assert!(matches!(
        store
            .assign_role(
                Subject::User(UserId::new()),
                Role::TenantAdmin,
                Scope::Tenant(a),
                &Origin::system()
            )
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn clients_act_as_service_accounts(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let c = client(&store, a, "automation").await;
    store
        .assign_role(
            Subject::Client(c),
            Role::TenantAdmin,
            Scope::Tenant(a),
            &admin_origin(),
        )
        .await
        .unwrap();
    let g = store.grants_of(Subject::Client(c)).await.unwrap();
    assert!(allows(&g, Permission::TenantManageUsers, &Scope::Tenant(a)));
    let found = store.find_client("automation").await.unwrap().unwrap();
    assert_eq!(found.tenant_id, a);
    assert_eq!(found.redirect_uris, ["https://app.example.com/cb"]);
    assert_eq!(
        found.grant_types,
        [
            opentrusty_core::client::GrantType::AuthorizationCode,
            opentrusty_core::client::GrantType::RefreshToken
        ]
    );
    assert_eq!(
        found.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic
    );
    assert!(found.active);
    let dup = NewClient::new(
        a,
        "automation",
        "again",
        TokenEndpointAuthMethod::None,
        None,
    );
    assert!(matches!(
        store.create_client(&dup, &Origin::system()).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn bootstrap_creates_one_admin_once(db: &TestDb) {
    let store = db.store().await;
    assert!(!store.platform_admin_exists().await.unwrap());
    let email = Email::parse("Root@Example.com").unwrap();
    let first = store
        .bootstrap_platform_admin(&email, "$argon2id$h", &Origin::system())
        .await
        .unwrap();
    let BootstrapOutcome::Created(id) = first else {
        panic!("expected a new admin, got {first:?}");
    };
    assert!(store.platform_admin_exists().await.unwrap());
    let other = Email::parse("other@example.com").unwrap();
    assert_eq!(
        store
            .bootstrap_platform_admin(&other, "$argon2id$h", &Origin::system())
            .await
            .unwrap(),
        BootstrapOutcome::AlreadyPresent
    );
    let admin = store
        .find_user_for_sign_in(None, "root@example.com")
        .await
        .unwrap()
        .map(|(user, _)| user)
        .unwrap();
    assert_eq!(admin.id, id);
    assert!(
        store
            .find_user_for_sign_in(None, "other@example.com")
            .await
            .unwrap()
            .map(|(user, _)| user)
            .is_none()
    );
    let g = store.grants_of(Subject::User(id)).await.unwrap();
    assert!(allows(
        &g,
        Permission::PlatformManageTenants,
        &Scope::Platform
    ));
    let events = actions(&store, None).await;
    assert_eq!(
        events
            .iter()
            .filter(|a| *a == action::PLATFORM_ADMIN_BOOTSTRAPPED)
            .count(),
        1
    );
}

async fn concurrent_bootstraps_create_exactly_one_admin(db: &TestDb) {
    let stores: Vec<Store> = futures_join(db).await;
    let mut handles = Vec::new();
    for (i, store) in stores.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let email = Email::parse(&format!("root{i}@example.com")).unwrap();
            store
                .bootstrap_platform_admin(&email, "$argon2id$h", &Origin::system())
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for h in handles {
        if let BootstrapOutcome::Created(_) = h.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

/// Eight independent pools on one database, as eight processes would have.
async fn futures_join(db: &TestDb) -> Vec<Store> {
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(db.store().await);
    }
    stores
}

/// Runs `sql` on a connection of its own, bypassing the store (an attacker with the
/// application's SQL access, or an operator's manual fix); the rows it changed.
async fn execute_by_hand(db: &TestDb, sql: &'static str) -> Result<u64, sqlx::Error> {
    match Backend::of_url(db.url()) {
        Some(Backend::Postgres) => {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
        }
    }
}

/// A stored grant type or signing algorithm this release does not know (written by a later
/// release, or by hand) makes the client unreadable with an error, never a default.
async fn a_client_row_with_a_value_this_release_does_not_know_is_refused(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Vocabulary").await;
    let id = client(&store, t, "vocabulary-app").await;
    assert!(store.find_client("vocabulary-app").await.unwrap().is_some());
    for sql in [
        "UPDATE oauth_clients SET id_token_signed_response_alg = 'HS256' \
         WHERE client_id = 'vocabulary-app'",
        "UPDATE oauth_clients SET id_token_signed_response_alg = 'RS256', \
         grant_types = '[\"authorization_code\", \"password\"]' \
         WHERE client_id = 'vocabulary-app'",
    ] {
        assert_eq!(execute_by_hand(db, sql).await.unwrap(), 1);
        let read = store.find_client("vocabulary-app").await;
        assert!(
            matches!(read, Err(StoreError::Database(_))),
            "{sql}: {read:?}"
        );
        assert!(store.get_client(t, id).await.is_err(), "{sql}");
    }
}

async fn audit_rows_cannot_be_changed_or_deleted(db: &TestDb) {
    let store = db.store().await;
    tenant(&store, "Audited").await;
    let before = store
        .list_audit(&AuditQuery {
            tenant: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!before.is_empty());
    // An attacker with the application's SQL access, bypassing the store.
    let attempts = [
        "UPDATE audit_events SET action = 'tampered'",
        "DELETE FROM audit_events",
    ];
    for sql in attempts {
        let err = execute_by_hand(db, sql).await.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if store.backend() == Backend::Postgres {
        let err = execute_by_hand(db, "TRUNCATE audit_events")
            .await
            .expect_err("truncate");
        assert!(err.to_string().contains("append-only"));
    }
    let after = store
        .list_audit(&AuditQuery {
            tenant: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before, after);
}

async fn failed_changes_leave_no_audit_row(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Acme").await;
    let before = actions(&store, None).await.len();
    let _ = store
        .create_tenant(&TenantName::parse("acme").unwrap(), None, &Origin::system())
        .await
        .unwrap_err();
    user(&store, t, "a@example.com").await;
    let dup = NewUser::new(Some(t), "A@example.com", None, None).unwrap();
    let _ = store
        .create_user(&dup, None, &Origin::system())
        .await
        .unwrap_err();
    let after = actions(&store, None).await;
    assert_eq!(
        after.len(),
        before + 1,
        "only the successful user creation: {after:?}"
    );
}

async fn tenant_scoped_queries_never_return_other_tenants_rows(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let b = tenant(&store, "B").await;
    let ua = user(&store, a, "same@example.com").await;
    let ub = user(&store, b, "same@example.com").await;
    let ca = client(&store, a, "client-a").await;
    let cb = client(&store, b, "client-b").await;
    session(&store, Some(a), ua).await;
    session(&store, Some(b), ub).await;

    // Reads by id with the other tenant's id answer nothing.
    assert!(store.get_user(a, ub).await.unwrap().is_none());
    assert!(store.get_user(b, ua).await.unwrap().is_none());
    assert!(store.get_client(a, cb).await.unwrap().is_none());
    assert!(store.get_client(b, ca).await.unwrap().is_none());
    assert!(
        store
            .list_sessions(a, ub, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_sessions(a, ua, None, 10).await.unwrap().len(), 1);

    // Lookups and listings see only their tenant.
    assert_eq!(
        store
            .find_user_for_sign_in(Some(a), "same@example.com")
            .await
            .unwrap()
            .map(|(user, _)| user)
            .unwrap()
            .id,
        ua
    );
    let users: BTreeSet<_> = store
        .list_users(a, &UserFilter::default(), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(users, BTreeSet::from([ua]));
    let clients: BTreeSet<_> = store
        .list_clients(a, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(clients, BTreeSet::from([ca]));
    let events = store
        .list_audit(&AuditQuery {
            tenant: Some(a),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.tenant_id == Some(a)));
    let b_ids = [ub.to_string(), cb.to_string(), b.to_string()];
    assert!(
        events
            .iter()
            .all(|e| e.target.as_ref().is_none_or(|t| !b_ids.contains(&t.id)))
    );
}

async fn sessions_are_found_by_digest_until_they_expire(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "A").await;
    let u = user(&store, t, "a@example.com").await;
    let digest = session(&store, Some(t), u).await;
    let s = store.find_session(&digest, now()).await.unwrap().unwrap();
    assert_eq!(s.user_id, u);
    assert_eq!(s.tenant_id, Some(t));
    assert!(
        store
            .find_session(&digest, now() + Duration::hours(2))
            .await
            .unwrap()
            .is_none()
    );
    let unknown = secret::token_digest("not a session");
    assert!(store.find_session(&unknown, now()).await.unwrap().is_none());

    // Signing in again from the same browser ends the session it had, in the same write.
    let next = secret::token_digest(&secret::random_token());
    let replaced = store
        .create_session(
            &NewSession {
                user_id: u,
                tenant_id: Some(t),
                token_digest: next,
                expires_at: now() + Duration::hours(1),
                ip: Some("192.0.2.7".into()),
                user_agent: Some("test".into()),
            },
            Some(&digest),
            &Origin::system(),
        )
        .await
        .unwrap();
    assert!(store.find_session(&digest, now()).await.unwrap().is_none());
    let found = store.find_session(&next, now()).await.unwrap().unwrap();
    assert_eq!(found, replaced);
    assert_eq!(found.ip.as_deref(), Some("192.0.2.7"));
    let events = actions(&store, Some(t)).await;
    assert_eq!(
        events
            .iter()
            .filter(|a| *a == action::LOGIN_SUCCEEDED)
            .count(),
        2,
        "{events:?}"
    );
}

/// A user, a client and an unredeemed code for them; returns what the redemption needs.
async fn pending_code(store: &Store) -> ([u8; 32], TenantId, ClientId, UserId) {
    let t = tenant(store, "Racing").await;
    let u = user(store, t, "racer@example.com").await;
    let c = client(store, t, "racer").await;
    (code_for(store, t, c, u).await, t, c, u)
}

/// An unredeemed code of user `u` for client `c`.
async fn code_for(store: &Store, t: TenantId, c: ClientId, u: UserId) -> [u8; 32] {
    let code = secret::token_digest(&secret::random_token());
    store
        .issue_authorization_code(
            &NewAuthorizationCode {
                code_digest: code,
                tenant_id: t,
                client_id: c,
                user_id: u,
                session_id: None,
                redirect_uri: "https://app.example.com/cb".into(),
                scope: "openid".into(),
                nonce: None,
                code_challenge: None,
                code_challenge_method: None,
                redirect_uri_given: true,
                auth_time: now(),
                expires_at: now() + Duration::seconds(60),
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    code
}

fn access(t: TenantId, c: ClientId, u: UserId) -> NewAccessToken {
    NewAccessToken {
        jti: uuid::Uuid::now_v7(),
        token_digest: None,
        tenant_id: t,
        client_id: c,
        user_id: Some(u),
        scope: "openid".into(),
        expires_at: now() + Duration::minutes(15),
    }
}

/// A client-credentials access token of `c`, with its digest, for five minutes.
fn client_token(t: TenantId, c: ClientId) -> NewAccessToken {
    NewAccessToken {
        jti: uuid::Uuid::now_v7(),
        token_digest: Some(secret::token_digest(&secret::random_token())),
        tenant_id: t,
        client_id: c,
        user_id: None,
        scope: "api".into(),
        expires_at: now() + Duration::minutes(5),
    }
}

fn family(t: TenantId, c: ClientId, u: UserId, refresh: [u8; 32]) -> NewTokenFamily {
    NewTokenFamily {
        tenant_id: t,
        client_id: c,
        user_id: Some(u),
        session_id: None,
        scope: "openid".into(),
        auth_time: Some(now()),
        expires_at: now() + Duration::days(1),
        refresh_digest: Some(refresh),
        offline: false,
    }
}

/// Redeems `code` with `access` and a family of user `u` whose first refresh token is
/// `refresh`; the family it created.
async fn redeem(
    store: &Store,
    code: &[u8; 32],
    access: &NewAccessToken,
    (t, c, u): (TenantId, ClientId, UserId),
    refresh: [u8; 32],
) -> opentrusty_core::ids::TokenFamilyId {
    let redeemed = store
        .redeem_authorization_code(code, access, &family(t, c, u, refresh), &Origin::system())
        .await
        .unwrap();
    match redeemed {
        opentrusty_store::Redemption::Issued(family_id) => family_id,
        other => panic!("{other:?}"),
    }
}

async fn concurrent_redemptions_of_one_code_issue_exactly_once(db: &TestDb) {
    use opentrusty_store::Redemption;
    let store = db.store().await;
    let (code, t, c, u) = pending_code(&store).await;
    let mut racers = Vec::new();
    for pool in futures_join(db).await {
        for _ in 0..3 {
            let pool = pool.clone();
            racers.push(tokio::spawn(async move {
                let a = access(t, c, u);
                let f = family(t, c, u, secret::token_digest(&secret::random_token()));
                let r = pool
                    .redeem_authorization_code(&code, &a, &f, &Origin::system())
                    .await
                    .unwrap();
                (r, a.jti)
            }));
        }
    }
    let mut winners = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            (Redemption::Issued(f), jti) => winners.push((f, jti)),
            (Redemption::Replayed, _) => {}
            (Redemption::Invalid, _) => panic!("a redeemed code is a replay, not unknown"),
            (Redemption::Restored, _) => panic!("no redemption was in doubt"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 24 redemptions wins");
    let (family_id, jti) = winners[0];
    // The replays revoked what the winner received.
    assert_eq!(
        store.token_family_revoked(family_id).await.unwrap(),
        Some(true)
    );
    assert!(!store.access_token_active(jti, now()).await.unwrap());
}

async fn concurrent_refreshes_of_one_token_rotate_exactly_once(db: &TestDb) {
    use opentrusty_store::Rotation;
    let store = db.store().await;
    let (code, t, c, u) = pending_code(&store).await;
    let first = secret::token_digest(&secret::random_token());
    let family_id = redeem(&store, &code, &access(t, c, u), (t, c, u), first).await;
    let mut racers = Vec::new();
    for pool in futures_join(db).await {
        for _ in 0..3 {
            let pool = pool.clone();
            racers.push(tokio::spawn(async move {
                let next = secret::token_digest(&secret::random_token());
                pool.rotate_refresh_token(&first, &next, &access(t, c, u), 0, &Origin::system())
                    .await
                    .unwrap()
            }));
        }
    }
    let mut rotated = 0;
    for r in racers {
        match r.await.unwrap() {
            Rotation::Rotated => rotated += 1,
            Rotation::Reused | Rotation::Invalid => {}
        }
    }
    assert_eq!(rotated, 1, "exactly one of 24 refreshes rotates");
    // Without a grace period the losers count as reuse: the family is revoked.
    assert_eq!(
        store.token_family_revoked(family_id).await.unwrap(),
        Some(true)
    );
}

/// Redemptions and rotations arriving together (on PostgreSQL they share statements,
/// `grant_writes.rs`): each is recorded with its audit row, one bad row fails only its own
/// request, and two rotations of one token within the grace period both succeed.
async fn concurrent_grant_writes_are_each_recorded_and_fail_alone(db: &TestDb) {
    use opentrusty_store::{Redemption, Rotation};
    let store = db.store().await;
    let t = tenant(&store, "Granting").await;
    let u = user(&store, t, "granted@example.com").await;
    let c = client(&store, t, "granting").await;
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(code_for(&store, t, c, u).await);
    }
    // Code 17's access token names a client that does not exist: its row cannot be written.
    let mut racers = tokio::task::JoinSet::new();
    for (i, code) in codes.iter().copied().enumerate() {
        let store = store.clone();
        racers.spawn(async move {
            let a = access(t, if i == 17 { ClientId::new() } else { c }, u);
            let first = secret::token_digest(&secret::random_token());
            let f = family(t, c, u, first);
            let outcome = store
                .redeem_authorization_code(&code, &a, &f, &Origin::system())
                .await;
            (i, outcome, a.jti, first)
        });
    }
    let mut issued = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (i, outcome, jti, first) = joined.unwrap();
        match outcome {
            Ok(Redemption::Issued(f)) if i != 17 => issued.push((i, f, jti, first)),
            Err(_) if i == 17 => {}
            other => panic!("code {i}: {other:?}"),
        }
    }
    assert_eq!(issued.len(), 39);
    for (i, family_id, jti, first) in &issued {
        assert!(store.access_token_active(*jti, now()).await.unwrap(), "{i}");
        assert_eq!(
            store.token_family_revoked(*family_id).await.unwrap(),
            Some(false)
        );
        let refresh = store.find_refresh_token(first).await.unwrap().unwrap();
        assert_eq!((refresh.family_id, refresh.rotated_at), (*family_id, None));
    }
    // Code 17 was not claimed by the failed write: it is still pending.
    assert!(
        store
            .authorization_code_pending(&codes[17], now())
            .await
            .unwrap()
    );
    let count = |events: &[String], what: &str| events.iter().filter(|a| *a == what).count();
    assert_eq!(
        count(&actions(&store, Some(t)).await, action::TOKEN_ISSUED),
        39
    );

    // Every family's token rotated at once, the first one twice (grace period of 60 s), and
    // the fourth with an access token that cannot be written.
    let mut racers = tokio::task::JoinSet::new();
    let mut rotations: Vec<_> = issued
        .iter()
        .map(|&(i, f, _, first)| (i, f, first))
        .collect();
    rotations.push(rotations[0]);
    let bad = rotations[3].0;
    for (i, family_id, first) in rotations {
        let store = store.clone();
        racers.spawn(async move {
            let next = secret::token_digest(&secret::random_token());
            let a = access(t, if i == bad { ClientId::new() } else { c }, u);
            let outcome = store
                .rotate_refresh_token(&first, &next, &a, 60, &Origin::system())
                .await;
            (i, family_id, first, next, outcome)
        });
    }
    let mut rotated = 0;
    while let Some(joined) = racers.join_next().await {
        let (i, family_id, first, next, outcome) = joined.unwrap();
        match outcome {
            Ok(Rotation::Rotated) if i != bad => {
                rotated += 1;
                let successor = store.find_refresh_token(&next).await.unwrap().unwrap();
                assert_eq!(
                    (successor.family_id, successor.rotated_at),
                    (family_id, None)
                );
            }
            Err(_) if i == bad => {
                let unspent = store.find_refresh_token(&first).await.unwrap().unwrap();
                assert_eq!(unspent.rotated_at, None, "a failed rotation spends nothing");
            }
            other => panic!("refresh {i}: {other:?}"),
        }
        assert_eq!(
            store.token_family_revoked(family_id).await.unwrap(),
            Some(false)
        );
    }
    assert_eq!(rotated, 39, "38 tokens once, the first twice");
    let events = actions(&store, Some(t)).await;
    assert_eq!(count(&events, action::TOKEN_REFRESHED), 39);
    assert_eq!(count(&events, action::REFRESH_TOKEN_REUSED), 0);
}

/// Disabling a user revokes every access token of theirs, those of a token family and those
/// recorded without one (each found by an index: migration 3), and no one else's.
async fn disabling_a_user_revokes_every_token_of_theirs_and_no_one_elses(db: &TestDb) {
    use opentrusty_core::user::{UserPatch, UserStatus};
    let store = db.store().await;
    let t = tenant(&store, "Revoking").await;
    let c = client(&store, t, "revoking").await;
    let mut tokens = Vec::new();
    for email in ["alice@example.com", "bob@example.com"] {
        let u = user(&store, t, email).await;
        let code = code_for(&store, t, c, u).await;
        let in_family = access(t, c, u);
        let first = secret::token_digest(&secret::random_token());
        redeem(&store, &code, &in_family, (t, c, u), first).await;
        let alone = access(t, c, u);
        store
            .issue_tokens(&alone, None, &Origin::system())
            .await
            .unwrap();
        tokens.push((u, in_family.jti, alone.jti));
    }
    let (alice, bob) = (tokens[0], tokens[1]);
    let disable = UserPatch {
        status: Some(UserStatus::Disabled),
        ..Default::default()
    };
    store
        .update_user(t, alice.0, &disable, &Origin::system())
        .await
        .unwrap();
    for jti in [alice.1, alice.2] {
        assert!(!store.access_token_active(jti, now()).await.unwrap());
    }
    for jti in [bob.1, bob.2] {
        assert!(store.access_token_active(jti, now()).await.unwrap());
    }
    let trail = audit(&store, Some(t)).await;
    let disabled = trail
        .iter()
        .find(|e| e.action == action::USER_UPDATED)
        .expect("the change is audited");
    let ended = &disabled.metadata["ended"];
    assert_eq!(ended["access_tokens"], 2, "{ended}");
    assert_eq!(ended["token_families"], 1, "{ended}");
}

/// Introspection reads a refresh token with its client's public id in one look-up; a deleted
/// client's id is not given.
async fn a_refresh_token_is_read_with_its_clients_public_id(db: &TestDb) {
    let store = db.store().await;
    let (code, t, c, u) = pending_code(&store).await;
    let first = secret::token_digest(&secret::random_token());
    redeem(&store, &code, &access(t, c, u), (t, c, u), first).await;
    let grant = store.find_refresh_token(&first).await.unwrap().unwrap();
    let read = store.find_refresh_token_with_client(&first).await.unwrap();
    assert_eq!(read, Some((grant.clone(), Some("racer".to_owned()))));
    let unknown = secret::token_digest(&secret::random_token());
    assert_eq!(
        store
            .find_refresh_token_with_client(&unknown)
            .await
            .unwrap(),
        None
    );
    store.delete_client(t, c, &Origin::system()).await.unwrap();
    let (after, public_id) = store
        .find_refresh_token_with_client(&first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.family_id, after.family_revoked, public_id),
        (grant.family_id, true, None)
    );
}

/// Two owners removing each other's owner role at the same moment: exactly one removal wins,
/// so the tenant is never left without an owner.
async fn a_tenant_keeps_an_owner_under_concurrent_removals(db: &TestDb) {
    let store = db.store().await;
    for round in 0..8 {
        let t = tenant(&store, &format!("owners-{round}")).await;
        let mut owners = Vec::new();
        for n in 0..2 {
            let u = user(&store, t, &format!("owner{n}-{round}@example.com")).await;
            store
                .assign_role(
                    Subject::User(u),
                    Role::TenantOwner,
                    Scope::Tenant(t),
                    &Origin::system(),
                )
                .await
                .unwrap();
            owners.push(u);
        }
        let tasks: Vec<_> = owners
            .iter()
            .map(|u| {
                let (store, u) = (store.clone(), *u);
                tokio::spawn(async move {
                    store
                        .revoke_role(
                            Subject::User(u),
                            Role::TenantOwner,
                            Scope::Tenant(t),
                            &Origin::system(),
                        )
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => won += 1,
                Err(StoreError::Refused(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        let left = owner_roles_held(&store, &owners).await;
        assert_eq!(left, 1, "round {round}");
    }
}

fn new_reset_link() -> NewEnrollmentLink {
    NewEnrollmentLink {
        token_digest: secret::token_digest(&secret::random_token()),
        purpose: EnrollmentPurpose::Reset,
        expires_at: now() + Duration::hours(1),
    }
}

/// A reset link (its token's digest) for `u`, as the admin plane issues it: approved against
/// the roles `u` holds.
async fn reset_link(store: &Store, t: TenantId, u: UserId) -> [u8; 32] {
    let link = new_reset_link();
    let held = store.assignments_of(Subject::User(u)).await.unwrap();
    store
        .issue_enrollment_link(t, u, &held, &link, &admin_origin())
        .await
        .unwrap();
    link.token_digest
}

async fn link_works(store: &Store, digest: &[u8; 32]) -> bool {
    store
        .find_enrollment_link(digest, now())
        .await
        .unwrap()
        .is_some()
}

/// The `voided_links` count of the newest `role.assigned` row about `u`.
async fn voided_by_last_grant(store: &Store, t: TenantId, u: UserId) -> serde_json::Value {
    audit(store, Some(t))
        .await
        .into_iter()
        .find(|e| {
            e.action == action::ROLE_ASSIGNED
                && e.target.as_ref().is_some_and(|x| x.id == u.to_string())
        })
        .expect("the grant is audited")
        .metadata["voided_links"]
        .clone()
}

/// A user who gains a role through `assign_role` loses their unredeemed enrollment and reset
/// links in the same transaction (a link issued against lower roles must not open the promoted
/// account), and the grant's audit row counts them. Other users' links, a revocation and the
/// link issued with a role at provisioning are left alone.
async fn a_role_gained_voids_the_users_pending_links(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "links").await;
    let member = user(&store, t, "member@example.com").await;
    let other = user(&store, t, "other@example.com").await;
    assign(
        &store,
        Subject::User(member),
        Role::TenantMember,
        Scope::Tenant(t),
    )
    .await;
    let link = reset_link(&store, t, member).await;
    let others = reset_link(&store, t, other).await;
    assert!(link_works(&store, &link).await);

    assign(
        &store,
        Subject::User(member),
        Role::TenantOwner,
        Scope::Tenant(t),
    )
    .await;
    assert!(
        !link_works(&store, &link).await,
        "the link outlived the grant"
    );
    assert!(link_works(&store, &others).await);
    assert_eq!(voided_by_last_grant(&store, t, member).await, 1);
    assert!(
        store
            .redeem_enrollment_link(&link, "$argon2id$stub", &Origin::system())
            .await
            .unwrap()
            .is_none()
    );

    // A grant with nothing to void says so; a revocation voids nothing.
    let link = reset_link(&store, t, member).await;
    store
        .revoke_role(
            Subject::User(member),
            Role::TenantMember,
            Scope::Tenant(t),
            &admin_origin(),
        )
        .await
        .unwrap();
    assert!(link_works(&store, &link).await);
    assign(
        &store,
        Subject::User(other),
        Role::TenantMember,
        Scope::Tenant(t),
    )
    .await;
    assert_eq!(voided_by_last_grant(&store, t, other).await, 1);
    assign(
        &store,
        Subject::User(other),
        Role::TenantAdmin,
        Scope::Tenant(t),
    )
    .await;
    assert_eq!(voided_by_last_grant(&store, t, other).await, 0);

    // Provisioning creates the role and the link together: the link works.
    let digest = secret::token_digest(&secret::random_token());
    let new = NewUser::new(Some(t), "new-owner@example.com", None, None).unwrap();
    store
        .provision_user(
            &new,
            Some(Role::TenantOwner),
            &NewEnrollmentLink {
                token_digest: digest,
                purpose: EnrollmentPurpose::Enroll,
                expires_at: now() + Duration::hours(1),
            },
            &admin_origin(),
        )
        .await
        .unwrap();
    assert!(link_works(&store, &digest).await);

    // A client has no links; its grants are audited as before.
    let c = client(&store, t, "robot").await;
    assign(
        &store,
        Subject::Client(c),
        Role::TenantOwner,
        Scope::Tenant(t),
    )
    .await;
}

/// A link is issued only while the user holds no role beyond those the caller's authorization
/// was decided on; fewer is fine. Issued while an owner promotes the same user, a link never
/// ends up open on the promoted account: either the grant voids it or the issuance is refused.
async fn a_link_is_issued_only_against_the_roles_it_was_approved_for(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "approved").await;
    let u = user(&store, t, "member@example.com").await;
    let member = [(Role::TenantMember, Scope::Tenant(t))];
    assign(
        &store,
        Subject::User(u),
        Role::TenantMember,
        Scope::Tenant(t),
    )
    .await;
    assign(
        &store,
        Subject::User(u),
        Role::TenantAdmin,
        Scope::Tenant(t),
    )
    .await;
    let audited = actions(&store, Some(t)).await.len();
    let r = store
        .issue_enrollment_link(t, u, &member, &new_reset_link(), &admin_origin())
        .await;
    assert!(matches!(r, Err(StoreError::Refused(_))), "{r:?}");
    assert_eq!(
        actions(&store, Some(t)).await.len(),
        audited,
        "refused, not audited"
    );
    let both = store.assignments_of(Subject::User(u)).await.unwrap();
    assert_eq!(both.len(), 2);
    let link = new_reset_link();
    store
        .issue_enrollment_link(t, u, &both, &link, &admin_origin())
        .await
        .unwrap();
    assert!(link_works(&store, &link.token_digest).await);
    // A role lost since the decision leaves the user within what was approved.
    store
        .revoke_role(
            Subject::User(u),
            Role::TenantAdmin,
            Scope::Tenant(t),
            &admin_origin(),
        )
        .await
        .unwrap();
    store
        .issue_enrollment_link(t, u, &both, &new_reset_link(), &admin_origin())
        .await
        .unwrap();

    for round in 0..12 {
        let u = user(&store, t, &format!("race{round}@example.com")).await;
        assign(
            &store,
            Subject::User(u),
            Role::TenantMember,
            Scope::Tenant(t),
        )
        .await;
        let link = new_reset_link();
        let digest = link.token_digest;
        let promote = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .assign_role(
                        Subject::User(u),
                        Role::TenantOwner,
                        Scope::Tenant(t),
                        &admin_origin(),
                    )
                    .await
            })
        };
        let issue = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .issue_enrollment_link(t, u, &member, &link, &admin_origin())
                    .await
            })
        };
        promote.await.unwrap().unwrap();
        match issue.await.unwrap() {
            Ok(_) | Err(StoreError::Refused(_)) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
        assert!(
            !link_works(&store, &digest).await,
            "round {round}: a link opens the promoted account"
        );
    }
}

async fn owner_roles_held(store: &Store, users: &[UserId]) -> usize {
    let mut n = 0;
    for u in users {
        n += store
            .assignments_of(Subject::User(*u))
            .await
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == Role::TenantOwner)
            .count();
    }
    n
}

/// The same email in two tenants, given a console role in both at the same moment: exactly one
/// grant wins, so the console sign-in still resolves to one account.
async fn an_email_gets_console_roles_in_one_place_under_concurrent_grants(db: &TestDb) {
    let store = db.store().await;
    for round in 0..8 {
        let email = format!("twin{round}@example.com");
        let a = tenant(&store, &format!("twin-a-{round}")).await;
        let b = tenant(&store, &format!("twin-b-{round}")).await;
        let in_a = user(&store, a, &email).await;
        let in_b = user(&store, b, &email).await;
        let tasks: Vec<_> = [(in_a, a), (in_b, b)]
            .into_iter()
            .map(|(u, t)| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .assign_role(
                            Subject::User(u),
                            Role::TenantAdmin,
                            Scope::Tenant(t),
                            &Origin::system(),
                        )
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::Refused(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert_eq!(store.control_plane_accounts(&email).await.unwrap().len(), 1);
    }
}

/// One expired and one live row of every kind the janitor sweeps: the sweep deletes exactly the
/// expired ones (a family with its refresh tokens), in batches, and a second sweep finds nothing.
async fn the_janitor_deletes_what_expired_and_nothing_else(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Sweep").await;
    let u = user(&store, t, "sweep@example.com").await;
    let c = client(&store, t, "sweeper").await;
    let origin = Origin::system();
    let mut live = Vec::new();
    for (n, ttl) in [(0, -60i64), (1, 3600)] {
        let at = now() + Duration::seconds(ttl);
        let code = secret::token_digest(&secret::random_token());
        store
            .issue_authorization_code(
                &NewAuthorizationCode {
                    code_digest: code,
                    tenant_id: t,
                    client_id: c,
                    user_id: u,
                    session_id: None,
                    redirect_uri: "https://app.example.com/cb".into(),
                    scope: "openid".into(),
                    nonce: None,
                    code_challenge: None,
                    code_challenge_method: None,
                    redirect_uri_given: true,
                    auth_time: now(),
                    expires_at: at,
                },
                &origin,
            )
            .await
            .unwrap();
        let refresh = secret::token_digest(&secret::random_token());
        let access = secret::token_digest(&secret::random_token());
        store
            .issue_tokens(
                &NewAccessToken {
                    jti: uuid::Uuid::now_v7(),
                    token_digest: Some(access),
                    tenant_id: t,
                    client_id: c,
                    user_id: Some(u),
                    scope: "openid".into(),
                    expires_at: at,
                },
                Some(&NewTokenFamily {
                    tenant_id: t,
                    client_id: c,
                    user_id: Some(u),
                    session_id: None,
                    scope: "openid".into(),
                    auth_time: None,
                    expires_at: at,
                    refresh_digest: Some(refresh),
                    offline: false,
                }),
                &origin,
            )
            .await
            .unwrap();
        let cookie = secret::token_digest(&secret::random_token());
        store
            .create_session(
                &NewSession {
                    user_id: u,
                    tenant_id: Some(t),
                    token_digest: cookie,
                    expires_at: at,
                    ip: None,
                    user_agent: None,
                },
                None,
                &origin,
            )
            .await
            .unwrap();
        let invited = store
            .provision_user(
                &NewUser::new(Some(t), &format!("invited{n}@example.com"), None, None).unwrap(),
                None,
                &opentrusty_store::NewEnrollmentLink {
                    token_digest: secret::token_digest(&secret::random_token()),
                    purpose: opentrusty_store::EnrollmentPurpose::Enroll,
                    expires_at: at,
                },
                &origin,
            )
            .await
            .unwrap();
        if ttl > 0 {
            live.push((code, refresh, access, cookie, invited.id));
        }
    }
    // A batch of one: the sweep loops until each kind is done.
    let swept = store.sweep_expired(now(), 1, 100).await.unwrap();
    assert_eq!(
        swept,
        opentrusty_store::Swept {
            sessions: 1,
            authorization_codes: 1,
            access_tokens: 1,
            token_families: 1,
            enrollment_links: 1,
        }
    );
    assert_eq!(store.sweep_expired(now(), 1, 100).await.unwrap().total(), 0);
    let (code, refresh, access, cookie, _) = live[0];
    assert!(
        store
            .find_authorization_code(&code)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.find_refresh_token(&refresh).await.unwrap().is_some());
    assert!(
        store
            .find_access_token_by_digest(&access, now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.find_session(&cookie, now()).await.unwrap().is_some());
}

/// Failures counted in the user's row lock it at the threshold (audited once), a sign-in resets
/// the count, and the admin plane's unlock clears a lock.
async fn failed_passwords_lock_an_account_until_unlocked_or_signed_in(db: &TestDb) {
    use opentrusty_core::lockout::LockoutPolicy;
    let store = db.store().await;
    let t = tenant(&store, "Locks").await;
    let u = user(&store, t, "locked@example.com").await;
    let policy = LockoutPolicy::default();
    let fail = |n: usize| {
        let store = store.clone();
        async move {
            let mut last = false;
            for _ in 0..n {
                last = store
                    .record_login_failure(
                        Some(t),
                        Some(u),
                        "invalid_credentials",
                        Some(&policy),
                        &Origin::system(),
                    )
                    .await
                    .unwrap();
            }
            last
        }
    };
    assert!(!fail(4).await);
    // A success restarts the count.
    session(&store, Some(t), u).await;
    assert!(!fail(4).await);
    assert!(fail(1).await, "the fifth failure in a row locks");
    let user_row = store.get_user(t, u).await.unwrap().unwrap();
    assert!(user_row.locked_until.is_some_and(|l| l > now()));
    assert!(fail(3).await, "still locked");
    let events = actions(&store, Some(t)).await;
    assert_eq!(
        events.iter().filter(|a| *a == action::USER_LOCKED).count(),
        1
    );
    assert_eq!(
        events.iter().filter(|a| *a == action::LOGIN_FAILED).count(),
        12
    );
    store.unlock_user(t, u, &Origin::system()).await.unwrap();
    assert!(
        store
            .get_user(t, u)
            .await
            .unwrap()
            .unwrap()
            .locked_until
            .is_none()
    );
    assert!(!fail(4).await, "unlocking restarts the count");
    // Without a policy (unknown policy or lockout off) nothing is counted.
    for _ in 0..10 {
        assert!(
            !store
                .record_login_failure(
                    Some(t),
                    Some(u),
                    "invalid_credentials",
                    None,
                    &Origin::system()
                )
                .await
                .unwrap()
        );
    }
}

/// Client-credentials tokens issued at the same moment (on PostgreSQL they share statements):
/// each one that succeeds is recorded with its audit row, and a token whose client does not
/// exist fails on its own without taking the others with it.
async fn concurrent_issuances_are_each_recorded_and_audited_and_fail_alone(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Busy").await;
    let c = client(&store, t, "busy-service").await;
    let token = |client_id| NewAccessToken {
        jti: uuid::Uuid::now_v7(),
        token_digest: Some(secret::token_digest(&secret::random_token())),
        tenant_id: t,
        client_id,
        user_id: None,
        scope: "api".into(),
        expires_at: now() + Duration::minutes(5),
    };
    let mut tokens: Vec<NewAccessToken> = (0..40).map(|_| token(c)).collect();
    tokens[17] = token(ClientId::new());
    let mut racers = tokio::task::JoinSet::new();
    for (i, access) in tokens.iter().cloned().enumerate() {
        let store = store.clone();
        racers.spawn(async move {
            let outcome = store.issue_tokens(&access, None, &Origin::system()).await;
            (i, outcome)
        });
    }
    while let Some(joined) = racers.join_next().await {
        let (i, outcome) = joined.unwrap();
        assert_eq!(outcome.is_err(), i == 17, "token {i}: {outcome:?}");
    }
    for (i, access) in tokens.iter().enumerate() {
        let recorded = store
            .find_access_token_by_digest(access.token_digest.as_ref().unwrap(), now())
            .await
            .unwrap();
        assert_eq!(recorded.is_some(), i != 17, "token {i}");
    }
    let issued = actions(&store, Some(t))
        .await
        .into_iter()
        .filter(|a| a == action::TOKEN_ISSUED)
        .count();
    assert_eq!(issued, 39);
}

/// Polls `work` at most `polls` times, then drops it: what happens to a request's future when
/// its client goes away mid-request.
async fn abandon_after<F: std::future::Future>(polls: usize, work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut left = polls;
    std::future::poll_fn(move |cx| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        left -= 1;
        work.as_mut().poll(cx).map(Some)
    })
    .await
}

/// A write abandoned between any two of its steps (before `BEGIN` answered, between
/// statements, during `COMMIT`) must not leave a pooled connection inside a transaction: on
/// SQLite that connection would refuse every later transaction and hold the write lock from
/// every other connection and process.
async fn writes_abandoned_at_any_step_leave_no_transaction_open(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Abandoned").await;
    let c = client(&store, t, "abandoned-service").await;
    let token = || NewAccessToken {
        jti: uuid::Uuid::now_v7(),
        token_digest: None,
        tenant_id: t,
        client_id: c,
        user_id: None,
        scope: "api".into(),
        expires_at: now() + Duration::minutes(5),
    };
    // Every attempt is bounded: a write that waits for SQLite's write lock held by an abandoned
    // transaction waits for the busy timeout (seconds), which fails the test here.
    let attempt = std::time::Duration::from_secs(3);
    for _round in 0..5 {
        for polls in 1..40 {
            let (access, origin) = (token(), Origin::system());
            let abandoned = abandon_after(polls, store.issue_tokens(&access, None, &origin));
            tokio::time::timeout(attempt, abandoned)
                .await
                .expect("no write waits on an abandoned transaction");
        }
    }
    // Enough writes at once to go through every pooled connection.
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (store, access) = (store.clone(), token());
        writers.spawn(async move {
            tokio::time::timeout(
                attempt,
                store.issue_tokens(&access, None, &Origin::system()),
            )
            .await
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined
            .unwrap()
            .expect("a write is not kept waiting by an abandoned one")
            .expect("a write succeeds after abandoned ones");
    }
}

/// A code exchange, a refresh and an introspection read the client and the presented grant or
/// token (with its user) in one statement: the same grant the separate look-ups return,
/// whichever client presents it, and nothing for an unknown client.
async fn a_token_request_reads_its_client_and_grant_in_one_look_up(db: &TestDb) {
    let store = db.store().await;
    let (code, t, c, u) = pending_code(&store).await;
    let other = client(&store, t, "bystander").await;
    let unknown = secret::token_digest("no such grant");

    let (found, grant) = store
        .find_client_with_code("racer", &code)
        .await
        .unwrap()
        .expect("a live client");
    assert_eq!((found.client.id, found.usable), (c, true));
    assert_eq!(found.secret_hash.as_deref(), Some("digest"));
    let grant = grant.expect("the code");
    assert_eq!(
        Some(&grant),
        store.find_authorization_code(&code).await.unwrap().as_ref()
    );
    assert_eq!(grant.user.as_ref().map(|u| u.id), Some(u));
    assert!(!grant.used);
    // Presented by another client, the code is still read (the caller refuses it).
    let (found, grant) = store
        .find_client_with_code("bystander", &code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.client.id, other);
    assert_eq!(grant.map(|g| g.client_id), Some(c));
    let (_, none) = store
        .find_client_with_code("racer", &unknown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(none, None);
    assert!(
        store
            .find_client_with_code("nobody", &code)
            .await
            .unwrap()
            .is_none()
    );

    let refresh = secret::token_digest(&secret::random_token());
    let redeemed_access = access(t, c, u);
    let family_id = redeem(&store, &code, &redeemed_access, (t, c, u), refresh).await;
    let (_, used) = store
        .find_client_with_code("racer", &code)
        .await
        .unwrap()
        .unwrap();
    assert!(used.unwrap().used);
    let (found, grant) = store
        .find_client_with_refresh_token("racer", &refresh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.client.id, c);
    let grant = grant.expect("the refresh token");
    assert_eq!(
        Some(&grant),
        store.find_refresh_token(&refresh).await.unwrap().as_ref()
    );
    assert_eq!(
        (grant.family_id, grant.user.as_ref().map(|u| u.id)),
        (family_id, Some(u))
    );
    assert!(!grant.family_revoked && grant.rotated_at.is_none());
    let (_, none) = store
        .find_client_with_refresh_token("racer", &unknown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(none, None);
    assert!(
        store
            .find_client_with_refresh_token("nobody", &refresh)
            .await
            .unwrap()
            .is_none()
    );

    // Introspection reads the client and the presented access token (JWT by jti, opaque by
    // digest) together, the token as find_access_token reads it, whoever presents it.
    let jti = AccessTokenKey::Jti(redeemed_access.jti);
    let (found, token) = store
        .find_client_with_access_token("racer", jti, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.client.id, found.usable), (c, true));
    assert_eq!(
        token,
        store
            .find_access_token(redeemed_access.jti, now())
            .await
            .unwrap()
    );
    let token = token.expect("the access token");
    assert!(token.active);
    assert_eq!((token.client_id, token.user_id), (c, Some(u)));
    let (found, token) = store
        .find_client_with_access_token("bystander", jti, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.client.id, other);
    assert_eq!(token.map(|t| t.client_public_id), Some("racer".to_owned()));
    let opaque_digest = secret::token_digest(&secret::random_token());
    let opaque = NewAccessToken {
        token_digest: Some(opaque_digest),
        user_id: None,
        ..access(t, other, u)
    };
    store
        .issue_tokens(&opaque, None, &Origin::system())
        .await
        .unwrap();
    let (_, token) = store
        .find_client_with_access_token("racer", AccessTokenKey::Digest(opaque_digest), now())
        .await
        .unwrap()
        .unwrap();
    let token = token.expect("the opaque token");
    assert_eq!((token.jti, token.user_id), (opaque.jti, None));
    assert_eq!(
        Some(&token),
        store
            .find_access_token_by_digest(&opaque_digest, now())
            .await
            .unwrap()
            .as_ref()
    );
    for key in [
        AccessTokenKey::Jti(uuid::Uuid::now_v7()),
        AccessTokenKey::Digest(unknown),
    ] {
        let (found, none) = store
            .find_client_with_access_token("racer", key, now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.client.id, none), (c, None));
    }
    assert!(
        store
            .find_client_with_access_token("nobody", jti, now())
            .await
            .unwrap()
            .is_none()
    );
    // Past its expiry the token is still read, as inactive.
    let (_, expired) = store
        .find_client_with_access_token("racer", jti, now() + Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    assert!(!expired.expect("still recorded").active);

    // A deleted user is read as none; a suspended tenant makes its clients unusable.
    store.delete_user(t, u, &admin_origin()).await.unwrap();
    let (_, grant) = store
        .find_client_with_refresh_token("racer", &refresh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.expect("the token stays readable").user, None);
    let (_, grant) = store
        .find_client_with_code("racer", &code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.unwrap().user, None);
    store
        .update_tenant(
            t,
            &TenantPatch {
                status: Some(TenantStatus::Suspended),
                ..TenantPatch::default()
            },
            &admin_origin(),
        )
        .await
        .unwrap();
    let (found, _) = store
        .find_client_with_code("racer", &code)
        .await
        .unwrap()
        .unwrap();
    assert!(!found.usable);
    let (found, token) = store
        .find_client_with_access_token("racer", jti, now())
        .await
        .unwrap()
        .unwrap();
    assert!(!found.usable);
    assert!(!token.expect("still recorded").active);
}

/// Many requests naming clients at the same moment (PostgreSQL shares one statement among
/// them): each gets the client it named, nothing for an unknown or deleted one, and a look-up
/// made after a secret rotation committed sees the new secret.
async fn concurrent_client_look_ups_each_get_their_own_client_as_committed(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Lookups").await;
    let names: Vec<String> = (0..6).map(|i| format!("looked-up-{i}")).collect();
    let mut ids = Vec::new();
    for name in &names {
        ids.push(client(&store, t, name).await);
    }
    store
        .delete_client(t, ids[5], &admin_origin())
        .await
        .unwrap();
    let mut lookups = tokio::task::JoinSet::new();
    for i in 0..300 {
        let store = store.clone();
        let asked = match i % 8 {
            6 => "nobody".to_owned(),
            7 => names[5].clone(),
            k => names[k % 5].clone(),
        };
        lookups.spawn(async move {
            let found = store.find_client_for_request(&asked).await.unwrap();
            (asked, found)
        });
    }
    let mut answered = 0;
    while let Some(joined) = lookups.join_next().await {
        let (asked, found) = joined.unwrap();
        match names[..5].iter().position(|n| *n == asked) {
            Some(k) => {
                let found = found.unwrap_or_else(|| panic!("{asked} exists"));
                assert_eq!(found.client.client_id, asked);
                assert_eq!(found.client.id, ids[k]);
                assert!(found.usable);
            }
            None => assert!(found.is_none(), "{asked} is unknown or deleted"),
        }
        answered += 1;
    }
    assert_eq!(answered, 300);

    store
        .rotate_client_secret(t, ids[0], "rotated digest", &admin_origin())
        .await
        .unwrap();
    let mut lookups = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (store, asked) = (store.clone(), names[0].clone());
        lookups.spawn(async move { store.find_client_for_request(&asked).await.unwrap() });
    }
    while let Some(joined) = lookups.join_next().await {
        let found = joined.unwrap().unwrap();
        assert_eq!(found.secret_hash.as_deref(), Some("rotated digest"));
    }
}

/// A sign-in answered with a code at once writes both in one transaction: the browser's
/// previous session ends, the new one starts, the failure count restarts, the code is bound to
/// the new session and both are audited; when any part fails, nothing is written.
async fn a_sign_in_writes_its_session_and_code_together_or_neither(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Together").await;
    let u = user(&store, t, "together@example.com").await;
    let c = client(&store, t, "together").await;
    let previous = session(&store, Some(t), u).await;
    assert!(!failed_sign_ins(&store, t, u, 4).await);
    let new_session = |digest| NewSession {
        user_id: u,
        tenant_id: Some(t),
        token_digest: digest,
        expires_at: now() + Duration::hours(1),
        ip: Some("192.0.2.9".into()),
        user_agent: None,
    };
    let code_for = |client_id: ClientId, code_digest| {
        move |s: &opentrusty_core::session::Session| NewAuthorizationCode {
            code_digest,
            tenant_id: t,
            client_id,
            user_id: s.user_id,
            session_id: Some(s.id),
            redirect_uri: "https://app.example.com/cb".into(),
            scope: "openid".into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            code_challenge: None,
            code_challenge_method: None,
            redirect_uri_given: true,
            auth_time: s.auth_time,
            expires_at: now() + Duration::seconds(60),
        }
    };
    let events_before = actions(&store, Some(t)).await.len();

    // A code for a client that does not exist fails the write: the previous session lives on,
    // no new session, no code, no audit row.
    let failed_digest = secret::token_digest(&secret::random_token());
    let failed_code = secret::token_digest(&secret::random_token());
    let failed = store
        .create_session_with_code(
            &new_session(failed_digest),
            Some(&previous),
            &Origin::system(),
            code_for(ClientId::new(), failed_code),
        )
        .await;
    assert!(failed.is_err());
    assert!(
        store
            .find_session(&previous, now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .find_session(&failed_digest, now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_authorization_code(&failed_code)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(actions(&store, Some(t)).await.len(), events_before);

    let digest = secret::token_digest(&secret::random_token());
    let code = secret::token_digest(&secret::random_token());
    let started = store
        .create_session_with_code(
            &new_session(digest),
            Some(&previous),
            &Origin::system(),
            code_for(c, code),
        )
        .await
        .unwrap();
    assert!(
        store
            .find_session(&previous, now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.find_session(&digest, now()).await.unwrap().as_ref(),
        Some(&started)
    );
    let grant = store
        .find_authorization_code(&code)
        .await
        .unwrap()
        .expect("the code");
    assert_eq!(grant.session_id, Some(started.id));
    assert_eq!(grant.auth_time, started.auth_time);
    assert_eq!((grant.client_id, grant.user_id), (c, u));
    assert_eq!(grant.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert!(!grant.used);
    let events = actions(&store, Some(t)).await;
    assert_eq!(events.len(), events_before + 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|a| a == action::AUTHORIZATION_CODE_ISSUED)
    );
    assert!(
        !failed_sign_ins(&store, t, u, 4).await,
        "the sign-in restarted the failure count"
    );
}

/// Records `n` failed sign-ins of `user` under the default lockout policy; whether the last
/// one locked the account.
async fn failed_sign_ins(store: &Store, tenant: TenantId, user: UserId, n: usize) -> bool {
    let policy = opentrusty_core::lockout::LockoutPolicy::default();
    let mut locked = false;
    for _ in 0..n {
        locked = store
            .record_login_failure(
                Some(tenant),
                Some(user),
                "invalid_credentials",
                Some(&policy),
                &Origin::system(),
            )
            .await
            .unwrap();
    }
    locked
}

/// The sign-in form's one look-up: the client as the protocol endpoints read it and the live
/// account of the client's tenant with the email, with its password hash; never an account of
/// another tenant, a deleted one, or one for an email not given.
async fn a_sign_in_form_reads_its_client_and_account_in_one_look_up(db: &TestDb) {
    let store = db.store().await;
    let (home, other) = (
        tenant(&store, "Home").await,
        tenant(&store, "Elsewhere").await,
    );
    let alice = user(&store, home, "alice@example.com").await;
    let twin = user(&store, other, "alice@example.com").await;
    let passwordless = NewUser::new(Some(home), "nopass@example.com", None, None).unwrap();
    let passwordless = store
        .create_user(&passwordless, None, &Origin::system())
        .await
        .unwrap()
        .id;
    let gone = user(&store, home, "gone@example.com").await;
    store
        .delete_user(home, gone, &Origin::system())
        .await
        .unwrap();
    client(&store, home, "home-app").await;
    client(&store, other, "other-app").await;

    let look = |client_id: &'static str, email: Option<&'static str>| {
        let store = store.clone();
        async move {
            store
                .find_client_with_sign_in(client_id, email)
                .await
                .unwrap()
        }
    };
    let (access, account) = look("home-app", Some("alice@example.com")).await.unwrap();
    let alone = store
        .find_client_for_request("home-app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.client, alone.client);
    assert_eq!(
        (access.usable, &access.secret_hash),
        (true, &alone.secret_hash)
    );
    let (account, hash) = account.expect("alice of the client's tenant");
    assert_eq!(account.id, alice);
    assert_eq!(hash.as_deref(), Some("$argon2id$stub"));
    let expected = store
        .find_user_for_sign_in(Some(home), "alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((account, hash), expected);

    let (_, account) = look("other-app", Some("alice@example.com")).await.unwrap();
    assert_eq!(account.map(|(u, _)| u.id), Some(twin));
    let (_, account) = look("home-app", Some("nopass@example.com")).await.unwrap();
    let (account, hash) = account.expect("an account without a password");
    assert_eq!((account.id, hash), (passwordless, None));
    for email in [Some("gone@example.com"), Some("nobody@example.com"), None] {
        let (access, account) = look("home-app", email).await.unwrap();
        assert_eq!(access.client.client_id, "home-app");
        assert!(account.is_none(), "{email:?}");
    }
    assert!(
        look("no-such-app", Some("alice@example.com"))
            .await
            .is_none()
    );
}

/// A client-credentials token decided on a remembered client is written, with its audit row,
/// only while the client is at the revision it was decided on, active, and in an active tenant;
/// every change to the client row moves its revision, whatever statement makes it.
async fn a_client_token_is_written_only_while_its_client_is_unchanged(db: &TestDb) {
    use opentrusty_store::Confirmation::{Issued, Stale};
    let store = db.store().await;
    let t = tenant(&store, "Remembered").await;
    let c = client(&store, t, "remembered-service").await;
    let token = || client_token(t, c);
    let origin = Origin::system();
    let mut written = 0;
    let issue = |revision| {
        let (store, access, origin) = (store.clone(), token(), origin.clone());
        async move {
            let outcome = store
                .issue_client_token(&access, revision, &origin)
                .await
                .unwrap();
            let recorded = store
                .find_access_token_by_digest(access.token_digest.as_ref().unwrap(), now())
                .await
                .unwrap();
            assert_eq!(recorded.is_some(), outcome == Issued, "{outcome:?}");
            outcome
        }
    };
    let find = |fresh| {
        let store = store.clone();
        async move {
            store
                .find_client_for_issuance("remembered-service", fresh)
                .await
                .unwrap()
                .expect("the client exists")
        }
    };

    // Read once, then remembered until read afresh.
    let first = find(false).await;
    assert!(!first.remembered);
    let r0 = first.access.revision;
    assert!(find(false).await.remembered);
    assert_eq!(issue(r0).await, Issued);
    written += 1;

    // A rotated secret: a token decided on the old copy is not written; a fresh read sees the
    // new secret and revision, and is remembered from then on.
    store
        .rotate_client_secret(t, c, "rotated digest", &admin_origin())
        .await
        .unwrap();
    assert_eq!(issue(r0).await, Stale);
    let remembered = find(false).await;
    assert!(remembered.remembered);
    assert_eq!(remembered.access.revision, r0, "not read afresh yet");
    let fresh = find(true).await;
    assert!(!fresh.remembered);
    assert_eq!(fresh.access.secret_hash.as_deref(), Some("rotated digest"));
    let r1 = fresh.access.revision;
    assert!(r1 > r0);
    assert_eq!(find(false).await.access.revision, r1);
    assert_eq!(issue(r1).await, Issued);
    written += 1;

    // Any statement that changes the row moves the revision, the store's or not.
    store
        .update_client(
            t,
            c,
            |client| {
                let mut settings = client.settings();
                settings.access_token_ttl_secs = 60;
                Ok(settings)
            },
            &admin_origin(),
        )
        .await
        .unwrap();
    assert_eq!(issue(r1).await, Stale);
    let r2 = find(true).await.access.revision;
    assert!(r2 > r1);
    let by_hand = "UPDATE oauth_clients SET name = 'renamed by hand' \
                   WHERE client_id = 'remembered-service'";
    assert_eq!(execute_by_hand(db, by_hand).await.unwrap(), 1);
    assert_eq!(issue(r2).await, Stale);
    let r3 = find(true).await.access.revision;
    assert!(r3 > r2);

    // The tenant's status is checked by the write itself (it is not part of the revision).
    let status = |s| TenantPatch {
        status: Some(s),
        ..TenantPatch::default()
    };
    store
        .update_tenant(t, &status(TenantStatus::Suspended), &admin_origin())
        .await
        .unwrap();
    assert_eq!(issue(r3).await, Stale);
    store
        .update_tenant(t, &status(TenantStatus::Active), &admin_origin())
        .await
        .unwrap();
    assert_eq!(issue(r3).await, Issued);
    written += 1;

    // Tokens written at once: exactly those decided on the current revision, each audited.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..40 {
        let revision = if i % 3 == 0 { r2 } else { r3 };
        let outcome = issue(revision);
        racers.spawn(async move { (revision, outcome.await) });
    }
    while let Some(joined) = racers.join_next().await {
        let (revision, outcome) = joined.unwrap();
        assert_eq!(outcome == Issued, revision == r3);
        written += usize::from(outcome == Issued);
    }
    assert_eq!(written, 3 + 26);

    // A deleted client: nothing is written, and a fresh read forgets it.
    store.delete_client(t, c, &admin_origin()).await.unwrap();
    let r4 = r3 + 1;
    assert_eq!(issue(r3).await, Stale);
    assert_eq!(issue(r4).await, Stale);
    let gone = store
        .find_client_for_issuance("remembered-service", true)
        .await
        .unwrap();
    assert!(gone.is_none());
    assert!(
        store
            .find_client_for_issuance("remembered-service", false)
            .await
            .unwrap()
            .is_none()
    );

    let issued = actions(&store, Some(t))
        .await
        .into_iter()
        .filter(|a| a == action::TOKEN_ISSUED)
        .count();
    assert_eq!(
        issued, written,
        "an audit row for each token written, and only those"
    );
}

/// A client-credentials token is recorded by its audit row alone (docs/storage.md): every
/// look-up finds it as it would find a row of its own, revocation lists its jti until it
/// expires, its client's deletion ends it, and a user's token is still a row.
async fn a_client_token_is_recorded_by_its_audit_row_alone(db: &TestDb) {
    use opentrusty_store::Confirmation::Issued;
    let store = db.store().await;
    let origin = Origin::system();
    let t = tenant(&store, "Recorded").await;
    let c = client(&store, t, "audit-recorded").await;
    let other = client(&store, t, "audit-other").await;
    let revision = store
        .find_client_for_issuance("audit-recorded", true)
        .await
        .unwrap()
        .expect("the client exists")
        .access
        .revision;
    let token = || client_token(t, c);
    let issued = token();
    let digest = issued.token_digest.unwrap();
    let outcome = store.issue_client_token(&issued, revision, &origin).await;
    assert_eq!(outcome.unwrap(), Issued);

    // No row of its own: its audit row, named by the jti and acted by the client, is the record.
    let token_rows = "UPDATE access_tokens SET scope = scope";
    assert_eq!(execute_by_hand(db, token_rows).await.unwrap(), 0);
    let events = audit(&store, Some(t)).await;
    assert!(events.iter().any(|e| e.id.0 == issued.jti
        && e.action == action::TOKEN_ISSUED
        && e.actor == Actor::Client(c)));
    let found = store.find_access_token(issued.jti, now()).await.unwrap();
    let found = found.expect("found by its jti");
    assert!(found.active);
    assert_eq!(
        (
            found.tenant_id,
            found.client_id,
            found.user_id,
            found.scope.as_str()
        ),
        (t, c, None, "api")
    );
    assert_eq!(found.client_public_id, "audit-recorded");
    assert_eq!(
        found.expires_at.unix_timestamp(),
        issued.expires_at.unix_timestamp()
    );
    let by_digest = store.find_access_token_by_digest(&digest, now()).await;
    assert_eq!(
        by_digest.unwrap().expect("found by its digest").jti,
        issued.jti
    );
    let caller = store.find_token_caller(&digest, now()).await.unwrap();
    assert_eq!(caller.expect("an admin-plane caller").token.jti, issued.jti);
    let later = issued.expires_at + Duration::seconds(1);
    let expired = store.find_access_token(issued.jti, later).await.unwrap();
    assert!(!expired.expect("still recorded").active);

    // Revoked by its own client only, once; listed until it expires.
    let active = |jti| {
        let store = store.clone();
        async move {
            let found = store.find_access_token(jti, now()).await.unwrap();
            found.expect("recorded").active
        }
    };
    assert!(
        !store
            .revoke_access_token(issued.jti, other, &origin)
            .await
            .unwrap()
    );
    assert!(active(issued.jti).await);
    assert!(
        store
            .revoke_access_token(issued.jti, c, &origin)
            .await
            .unwrap()
    );
    assert!(!active(issued.jti).await);
    assert!(
        !store
            .revoke_access_token(issued.jti, c, &origin)
            .await
            .unwrap()
    );
    let revoked = actions(&store, Some(t)).await;
    let revoked = revoked
        .iter()
        .filter(|a| *a == action::TOKEN_REVOKED)
        .count();
    assert_eq!(revoked, 1);
    assert_eq!(
        store
            .sweep_expired(now(), 100, 10)
            .await
            .unwrap()
            .access_tokens,
        0
    );
    assert!(
        !active(issued.jti).await,
        "the janitor keeps a live token's revocation"
    );
    let swept = store.sweep_expired(later, 100, 10).await.unwrap();
    assert_eq!(
        swept.access_tokens, 1,
        "the revocation goes once the token expired"
    );

    // Its client deleted: its tokens end with it.
    let second = token();
    let outcome = store.issue_client_token(&second, revision, &origin).await;
    assert_eq!(outcome.unwrap(), Issued);
    assert!(active(second.jti).await);
    store.delete_client(t, c, &admin_origin()).await.unwrap();
    assert!(!active(second.jti).await);

    // A user's token keeps a row: without it, nothing (its audit row included) stands for it.
    let u = user(&store, t, "holder@recorded.example").await;
    let held = access(t, other, u);
    store.issue_tokens(&held, None, &origin).await.unwrap();
    assert!(active(held.jti).await);
    assert_eq!(
        execute_by_hand(db, "DELETE FROM access_tokens")
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .find_access_token(held.jti, now())
            .await
            .unwrap()
            .is_none()
    );
}

/// What the admin plane reads for each request (a session with its user, tenant state and
/// grants; a bearer token with its client's grants) is what the separate look-ups return.
async fn an_admin_caller_is_read_with_its_grants_in_one_look_up(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let admin = user(&store, a, "admin@a.example").await;
    let plain = user(&store, a, "plain@a.example").await;
    for role in [Role::TenantAdmin, Role::TenantOwner] {
        assign(&store, Subject::User(admin), role, Scope::Tenant(a)).await;
    }
    let listed = |grants: &[opentrusty_core::rbac::Grant]| {
        let mut g: Vec<String> = grants.iter().map(|g| format!("{g:?}")).collect();
        g.sort();
        g
    };
    let idle = 3600;

    let digest = session(&store, Some(a), admin).await;
    let caller = store
        .find_session_caller(&digest, now(), idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        caller.session,
        store.find_session(&digest, now()).await.unwrap().unwrap()
    );
    assert_eq!(caller.user.as_ref().map(|u| u.id), Some(admin));
    assert!(caller.tenant_active);
    let expected = store.grants_of(Subject::User(admin)).await.unwrap();
    assert!(expected.len() > 1);
    assert_eq!(listed(&caller.grants), listed(&expected));

    // A user without roles is found, with no grants.
    let plain_digest = session(&store, Some(a), plain).await;
    let caller = store
        .find_session_caller(&plain_digest, now(), idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.user.map(|u| u.id), Some(plain));
    assert!(caller.grants.is_empty());

    // Unknown, expired and idle sessions are not.
    let unknown = secret::token_digest("not a session");
    assert!(
        store
            .find_session_caller(&unknown, now(), idle)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_session_caller(&digest, now() + Duration::hours(2), idle)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_session_caller(&digest, now() + Duration::minutes(10), 60)
            .await
            .unwrap()
            .is_none()
    );

    // A platform user has no tenant to be suspended.
    let op = platform_admin(&store).await;
    let op_digest = session(&store, None, op.id).await;
    let caller = store
        .find_session_caller(&op_digest, now(), idle)
        .await
        .unwrap()
        .unwrap();
    assert!(caller.tenant_active);
    assert!(allows(
        &caller.grants,
        Permission::PlatformManageTenants,
        &Scope::Platform
    ));

    // A service account's bearer token: the record as read alone, its client's grants.
    let c = client(&store, a, "automation").await;
    let bare = client(&store, a, "no-roles").await;
    assign(
        &store,
        Subject::Client(c),
        Role::TenantAdmin,
        Scope::Tenant(a),
    )
    .await;
    let bearer = |client: ClientId| {
        let digest = secret::token_digest(&secret::random_token());
        let token = NewAccessToken {
            token_digest: Some(digest),
            user_id: None,
            ..access(a, client, admin)
        };
        (digest, token)
    };
    let (token_digest, token) = bearer(c);
    store
        .issue_tokens(&token, None, &Origin::system())
        .await
        .unwrap();
    let (bare_digest, bare_token) = bearer(bare);
    store
        .issue_tokens(&bare_token, None, &Origin::system())
        .await
        .unwrap();
    let caller = store
        .find_token_caller(&token_digest, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(&caller.token),
        store
            .find_access_token_by_digest(&token_digest, now())
            .await
            .unwrap()
            .as_ref()
    );
    assert!(caller.token.active);
    let expected = store.grants_of(Subject::Client(c)).await.unwrap();
    assert!(!expected.is_empty());
    assert_eq!(listed(&caller.grants), listed(&expected));
    let caller = store
        .find_token_caller(&bare_digest, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.token.client_id, bare);
    assert!(caller.grants.is_empty());
    assert!(
        store
            .find_token_caller(&unknown, now())
            .await
            .unwrap()
            .is_none()
    );

    // A suspended tenant: the session caller says so, the token is inactive.
    let status = |s| TenantPatch {
        status: Some(s),
        ..TenantPatch::default()
    };
    store
        .update_tenant(a, &status(TenantStatus::Suspended), &Origin::system())
        .await
        .unwrap();
    let caller = store
        .find_session_caller(&digest, now(), idle)
        .await
        .unwrap()
        .unwrap();
    assert!(!caller.tenant_active);
    assert!(
        !store
            .find_token_caller(&token_digest, now())
            .await
            .unwrap()
            .unwrap()
            .token
            .active
    );

    // The users of a deleted tenant are not listed, though their rows remain.
    assert!(
        !store
            .list_users(a, &UserFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_tenant(a, &Origin::system()).await.unwrap();
    assert!(
        store
            .list_users(a, &UserFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Far more statements and transactions at once than the pool has connections: each one gets
/// a connection within the acquire timeout (every statement and transaction gives its
/// connection back, whatever the pool checks or skips), and the store still closes.
async fn a_small_pool_serves_more_callers_than_it_has_connections(db: &TestDb) {
    let options = ConnectOptions {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(3),
        ..ConnectOptions::default()
    };
    let store = Store::connect(db.url(), &options).await.unwrap();
    let t = tenant(&store, "Busy").await;
    user(&store, t, "first@busy.example").await;
    for round in 0..3 {
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..48 {
            let store = store.clone();
            callers.spawn(async move {
                if i % 6 == 0 {
                    let email = format!("user-{round}-{i}@busy.example");
                    let new = NewUser::new(Some(t), &email, None, None).unwrap();
                    store
                        .create_user(&new, None, &Origin::system())
                        .await
                        .map(|_| ())
                } else {
                    store
                        .list_users(t, &UserFilter::default(), None, 10)
                        .await
                        .map(|users| assert!(!users.is_empty()))
                }
            });
        }
        while let Some(joined) = callers.join_next().await {
            joined
                .unwrap()
                .expect("every caller gets a connection in time");
        }
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), store.close())
        .await
        .expect("closing waits for nothing that will not come back");
}

/// Reads abandoned at any step (a client that hung up mid-request) leave nothing behind: the
/// next statement, on whichever connection, answers its own question.
async fn reads_abandoned_at_any_step_leave_nothing_for_the_next(db: &TestDb) {
    let store = db.store().await;
    let a = tenant(&store, "A").await;
    let b = tenant(&store, "B").await;
    for i in 0..20 {
        user(&store, a, &format!("user-{i}@a.example")).await;
    }
    let only_b = user(&store, b, "only@b.example").await;
    let attempt = std::time::Duration::from_secs(3);
    let all = UserFilter::default();
    for polls in 1..30 {
        let abandoned = abandon_after(polls, store.list_users(a, &all, None, 20));
        tokio::time::timeout(attempt, abandoned)
            .await
            .expect("an abandoned read holds nothing up");
        let listed = store.list_users(b, &all, None, 20).await.unwrap();
        assert_eq!(
            listed.iter().map(|u| u.id).collect::<Vec<_>>(),
            [only_b],
            "after abandoning at poll {polls}"
        );
    }
}

/// A family without offline access belongs to its browser session: a sign-in of the same user
/// replacing that session takes it along (`create_session`, and `create_session_with_code` on
/// PostgreSQL's one-statement path), another user's sign-in or the session's end revokes it, its
/// refresh is allowed only while the session is live; an offline family survives all of that
/// until the user's sessions are all ended.
async fn token_families_follow_their_session_unless_offline(db: &TestDb) {
    let store = db.store().await;
    let t = tenant(&store, "Follow").await;
    let (u, v) = (
        user(&store, t, "u@example.com").await,
        user(&store, t, "v@example.com").await,
    );
    let c = client(&store, t, "follow").await;
    let session_of = |digest: [u8; 32]| {
        let store = &store;
        async move { store.find_session(&digest, now()).await.unwrap().unwrap() }
    };
    let sign_in = |who: UserId, replacing: Option<[u8; 32]>| {
        let store = &store;
        async move {
            let digest = secret::token_digest(&secret::random_token());
            let new = NewSession {
                user_id: who,
                tenant_id: Some(t),
                token_digest: digest,
                expires_at: now() + Duration::hours(1),
                ip: None,
                user_agent: None,
            };
            store
                .create_session(&new, replacing.as_ref(), &Origin::system())
                .await
                .unwrap();
            digest
        }
    };
    let issue = |session: SessionId, offline: bool| {
        let store = &store;
        async move {
            let refresh = secret::token_digest(&secret::random_token());
            let mut f = family(t, c, u, refresh);
            f.session_id = Some(session);
            f.offline = offline;
            store
                .issue_tokens(&access(t, c, u), Some(&f), &Origin::system())
                .await
                .unwrap();
            refresh
        }
    };
    let grant = |refresh: [u8; 32]| {
        let store = &store;
        async move { store.find_refresh_token(&refresh).await.unwrap().unwrap() }
    };

    let first = sign_in(u, None).await;
    let s1 = session_of(first).await;
    let bound = issue(s1.id, false).await;
    let offline = issue(s1.id, true).await;
    assert!(grant(bound).await.session_allows(now(), 1800));
    assert!(
        !grant(bound)
            .await
            .session_allows(now() + Duration::hours(2), 1800),
        "not after the session's end"
    );
    assert!(
        !grant(bound)
            .await
            .session_allows(now() + Duration::minutes(31), 1800),
        "not once it has gone idle"
    );
    assert!(
        grant(offline)
            .await
            .session_allows(now() + Duration::hours(2), 1800)
    );

    // The same user signs in again in that browser: both families move to the new session.
    let second = sign_in(u, Some(first)).await;
    let s2 = session_of(second).await;
    for r in [bound, offline] {
        let g = grant(r).await;
        assert_eq!(g.session_id, Some(s2.id));
        assert!(!g.family_revoked);
        assert!(g.session_allows(now(), 1800));
    }

    // Another user signs in in that browser (with a code, one statement on PostgreSQL): the
    // session-bound family ends, the offline one does not.
    let third = secret::token_digest(&secret::random_token());
    store
        .create_session_with_code(
            &NewSession {
                user_id: v,
                tenant_id: Some(t),
                token_digest: third,
                expires_at: now() + Duration::hours(1),
                ip: None,
                user_agent: None,
            },
            Some(&second),
            &Origin::system(),
            |s| NewAuthorizationCode {
                code_digest: secret::token_digest(&secret::random_token()),
                tenant_id: t,
                client_id: c,
                user_id: s.user_id,
                session_id: Some(s.id),
                redirect_uri: "https://app.example.com/cb".into(),
                redirect_uri_given: true,
                scope: "openid".into(),
                nonce: None,
                code_challenge: None,
                code_challenge_method: None,
                auth_time: s.auth_time,
                expires_at: now() + Duration::seconds(60),
            },
        )
        .await
        .unwrap();
    assert!(grant(bound).await.family_revoked);
    assert!(!grant(offline).await.family_revoked);

    // Signing out ends that session's bound family and keeps its offline one.
    let fourth = sign_in(u, None).await;
    let s4 = session_of(fourth).await;
    let (bound4, offline4) = (issue(s4.id, false).await, issue(s4.id, true).await);
    assert!(
        store
            .end_session(&fourth, &Origin::system())
            .await
            .unwrap()
            .is_some()
    );
    assert!(grant(bound4).await.family_revoked);
    let g = grant(offline4).await;
    assert!(!g.family_revoked && g.session.is_none() && g.session_allows(now(), 1800));

    // Ending all of the user's sessions revokes every family, offline ones of sessions long
    // gone included.
    sign_in(u, None).await;
    assert_eq!(
        store
            .end_user_sessions(t, u, &Origin::system())
            .await
            .unwrap(),
        1
    );
    for r in [offline, offline4] {
        assert!(grant(r).await.family_revoked);
    }
}
