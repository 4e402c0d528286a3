//! Role-based access control. Roles group permissions and are assigned to a subject (a user or
//! a service-account client) at a scope. Code asks one question only: does this subject hold
//! permission P at scope S? It never compares role names.

use serde::{Deserialize, Serialize};

use crate::{ClientId, TenantId};

/// Everything a subject may be allowed to do. The string form is the name stored in the
/// `permissions` table; a test keeps the two in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Sign in to the admin console (control-plane login).
    ControlPlaneLogin,
    /// Create, list, rename, suspend and delete tenants.
    PlatformManageTenants,
    /// Read the platform-wide audit trail.
    PlatformViewAudit,
    /// List and rotate signing keys.
    PlatformManageKeys,
    /// Read a tenant's details.
    TenantView,
    /// Change a tenant's display settings (display name, logo, accent colour).
    TenantUpdateSettings,
    /// Provision, change, disable and remove a tenant's users; reset passwords; unlock.
    TenantManageUsers,
    /// Grant and revoke tenant roles.
    TenantManageRoles,
    /// Register, change, delete OAuth clients and rotate their secrets.
    TenantManageClients,
    /// List and end users' sessions.
    TenantManageSessions,
    /// Read the tenant's audit trail.
    TenantViewAudit,
    /// Introspect access tokens issued to the tenant's other clients (resource servers).
    TenantIntrospectTokens,
    /// Read one's own profile.
    UserReadProfile,
    /// Change one's own profile.
    UserWriteProfile,
    /// Change one's own password.
    UserChangePassword,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::ControlPlaneLogin,
        Permission::PlatformManageTenants,
        Permission::PlatformViewAudit,
        Permission::PlatformManageKeys,
        Permission::TenantView,
        Permission::TenantUpdateSettings,
        Permission::TenantManageUsers,
        Permission::TenantManageRoles,
        Permission::TenantManageClients,
        Permission::TenantManageSessions,
        Permission::TenantViewAudit,
        Permission::TenantIntrospectTokens,
        Permission::UserReadProfile,
        Permission::UserWriteProfile,
        Permission::UserChangePassword,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ControlPlaneLogin => "control_plane:login",
            Permission::PlatformManageTenants => "platform:manage_tenants",
            Permission::PlatformViewAudit => "platform:view_audit",
            Permission::PlatformManageKeys => "platform:manage_keys",
            Permission::TenantView => "tenant:view",
            Permission::TenantUpdateSettings => "tenant:update_settings",
            Permission::TenantManageUsers => "tenant:manage_users",
            Permission::TenantManageRoles => "tenant:manage_roles",
            Permission::TenantManageClients => "tenant:manage_clients",
            Permission::TenantManageSessions => "tenant:manage_sessions",
            Permission::TenantViewAudit => "tenant:view_audit",
            Permission::TenantIntrospectTokens => "tenant:introspect_tokens",
            Permission::UserReadProfile => "user:read_profile",
            Permission::UserWriteProfile => "user:write_profile",
            Permission::UserChangePassword => "user:change_password",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// The kind of scope a role is made for and assigned at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Platform,
    Tenant,
    Client,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Platform => "platform",
            ScopeKind::Tenant => "tenant",
            ScopeKind::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "platform" => Some(ScopeKind::Platform),
            "tenant" => Some(ScopeKind::Tenant),
            "client" => Some(ScopeKind::Client),
            _ => None,
        }
    }
}

/// Where an assignment applies, or where a permission is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole installation.
    Platform,
    /// One tenant and everything in it.
    Tenant(TenantId),
    /// One OAuth client of a tenant.
    Client { tenant: TenantId, client: ClientId },
}

impl Scope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Platform => ScopeKind::Platform,
            Scope::Tenant(_) => ScopeKind::Tenant,
            Scope::Client { .. } => ScopeKind::Client,
        }
    }

    /// Whether an assignment made at `self` reaches a request at `target`: platform reaches
    /// everything, a tenant reaches itself and its clients, a client only itself.
    pub fn covers(&self, target: &Scope) -> bool {
        match (self, target) {
            (Scope::Platform, _) => true,
            (Scope::Tenant(a), Scope::Tenant(b)) => a == b,
            (Scope::Tenant(a), Scope::Client { tenant, .. }) => a == tenant,
            (Scope::Client { client: a, .. }, Scope::Client { client: b, .. }) => a == b,
            _ => false,
        }
    }

    /// A stable text key, used to keep assignments unique in storage.
    pub fn key(&self) -> String {
        match self {
            Scope::Platform => "platform".to_owned(),
            Scope::Tenant(t) => format!("tenant:{t}"),
            Scope::Client { client, .. } => format!("client:{client}"),
        }
    }
}

/// The roles every installation starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    TenantOwner,
    TenantAdmin,
    TenantMember,
    /// An API of the tenant (a service-account client): introspects the tenant's tokens.
    TenantResourceServer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::PlatformAdmin,
        Role::TenantOwner,
        Role::TenantAdmin,
        Role::TenantMember,
        Role::TenantResourceServer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantOwner => "tenant_owner",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantMember => "tenant_member",
            Role::TenantResourceServer => "tenant_resource_server",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The scope kind the role is assigned at.
    pub fn scope_kind(self) -> ScopeKind {
        match self {
            Role::PlatformAdmin => ScopeKind::Platform,
            _ => ScopeKind::Tenant,
        }
    }

    /// The permissions seeded for this role. The migration seeds exactly this table; a storage
    /// test compares the two.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::PlatformAdmin => &Permission::ALL,
            Role::TenantOwner => &[
                ControlPlaneLogin,
                TenantView,
                TenantUpdateSettings,
                TenantManageUsers,
                TenantManageRoles,
                TenantManageClients,
                TenantManageSessions,
                TenantViewAudit,
                TenantIntrospectTokens,
                UserReadProfile,
                UserWriteProfile,
                UserChangePassword,
            ],
            Role::TenantAdmin => &[
                ControlPlaneLogin,
                TenantView,
                TenantManageUsers,
                TenantManageRoles,
                TenantManageClients,
                TenantManageSessions,
                TenantViewAudit,
                TenantIntrospectTokens,
                UserReadProfile,
                UserWriteProfile,
                UserChangePassword,
            ],
            Role::TenantMember => &[UserReadProfile, UserWriteProfile, UserChangePassword],
            Role::TenantResourceServer => &[TenantIntrospectTokens],
        }
    }
}

/// Checks that `role` may be assigned at `scope` to a subject living in `subject_tenant` (`None`
/// for platform operators): the role must be made for that kind of scope, platform roles go only
/// to platform operators, and a tenant's users and clients hold roles only inside their tenant.
pub fn check_assignment(
    subject_tenant: Option<TenantId>,
    role: Role,
    scope: &Scope,
) -> Result<(), crate::DomainError> {
    let scope_ok = match (role.scope_kind(), scope) {
        (ScopeKind::Platform, Scope::Platform) => subject_tenant.is_none(),
        (ScopeKind::Tenant, Scope::Tenant(t)) => subject_tenant == Some(*t),
        (ScopeKind::Tenant | ScopeKind::Client, Scope::Client { tenant, .. }) => {
            subject_tenant == Some(*tenant)
        }
        _ => false,
    };
    if scope_ok {
        Ok(())
    } else {
        Err(crate::DomainError::new(
            "role",
            format!(
                "{} cannot be assigned at this scope to this subject",
                role.as_str()
            ),
        ))
    }
}

/// One permission a subject holds at one scope: the flattened form of its role assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    pub permission: Permission,
    pub scope: Scope,
}

/// The single authorization decision: does any grant give `permission` at a scope covering
/// `at`?
pub fn allows(grants: &[Grant], permission: Permission, at: &Scope) -> bool {
    grants
        .iter()
        .any(|g| g.permission == permission && g.scope.covers(at))
}

/// Whether a subject holding `grants` may hand `role` out at `at`: nobody can grant a
/// permission they do not hold there themselves.
pub fn may_grant(grants: &[Grant], role: Role, at: &Scope) -> bool {
    role.permissions().iter().all(|p| allows(grants, *p, at))
}

/// The role hierarchy: whether a subject holding `grants` may act on a target (a user or a
/// client) holding `target`'s role assignments. Acting on someone can hand over what they hold
/// (a reset link opens their account, a new secret speaks as the client), so it is allowed only
/// to a caller who could grant every one of those roles at the scope it is held. `Err` names
/// the first role the caller could not grant.
pub fn may_act_on(grants: &[Grant], target: &[(Role, Scope)]) -> Result<(), Role> {
    match target
        .iter()
        .find(|(role, scope)| !may_grant(grants, *role, scope))
    {
        Some((role, _)) => Err(*role),
        None => Ok(()),
    }
}

/// Expands role assignments into grants.
pub fn grants_of(assignments: &[(Role, Scope)]) -> Vec<Grant> {
    assignments
        .iter()
        .flat_map(|(role, scope)| {
            role.permissions().iter().map(move |p| Grant {
                permission: *p,
                scope: *scope,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip_and_are_unique() {
        let mut names: Vec<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
        assert_eq!(Permission::parse("tenant:*"), None);
    }

    #[test]
    fn platform_assignment_applies_everywhere() {
        let t = TenantId::new();
        let grants = grants_of(&[(Role::PlatformAdmin, Scope::Platform)]);
        assert!(allows(
            &grants,
            Permission::PlatformManageTenants,
            &Scope::Platform
        ));
        assert!(allows(
            &grants,
            Permission::TenantManageUsers,
            &Scope::Tenant(t)
        ));
        let c = Scope::Client {
            tenant: t,
            client: ClientId::new(),
        };
        assert!(allows(&grants, Permission::TenantManageClients, &c));
    }

    #[test]
    fn tenant_assignment_applies_only_in_its_tenant() {
        let a = TenantId::new();
        let b = TenantId::new();
        let grants = grants_of(&[(Role::TenantAdmin, Scope::Tenant(a))]);
        assert!(allows(
            &grants,
            Permission::TenantManageUsers,
            &Scope::Tenant(a)
        ));
        assert!(!allows(
            &grants,
            Permission::TenantManageUsers,
            &Scope::Tenant(b)
        ));
        assert!(!allows(
            &grants,
            Permission::TenantManageUsers,
            &Scope::Platform
        ));
        assert!(!allows(
            &grants,
            Permission::PlatformManageTenants,
            &Scope::Platform
        ));
        let in_a = Scope::Client {
            tenant: a,
            client: ClientId::new(),
        };
        let in_b = Scope::Client {
            tenant: b,
            client: ClientId::new(),
        };
        assert!(allows(&grants, Permission::TenantManageClients, &in_a));
        assert!(!allows(&grants, Permission::TenantManageClients, &in_b));
    }

    #[test]
    fn client_assignment_does_not_reach_its_tenant() {
        let t = TenantId::new();
        let c = ClientId::new();
        let at = Scope::Client {
            tenant: t,
            client: c,
        };
        let grants = grants_of(&[(Role::TenantAdmin, at)]);
        assert!(allows(&grants, Permission::TenantView, &at));
        assert!(!allows(&grants, Permission::TenantView, &Scope::Tenant(t)));
        let other = Scope::Client {
            tenant: t,
            client: ClientId::new(),
        };
        assert!(!allows(&grants, Permission::TenantView, &other));
    }

    #[test]
    fn members_have_no_control_plane_access() {
        let t = Scope::Tenant(TenantId::new());
        let grants = grants_of(&[(Role::TenantMember, t)]);
        assert!(!allows(&grants, Permission::ControlPlaneLogin, &t));
        assert!(!allows(&grants, Permission::TenantView, &t));
        assert!(allows(&grants, Permission::UserChangePassword, &t));
    }

    #[test]
    fn nobody_grants_what_they_do_not_hold() {
        let t = Scope::Tenant(TenantId::new());
        let admin = grants_of(&[(Role::TenantAdmin, t)]);
        assert!(may_grant(&admin, Role::TenantAdmin, &t));
        assert!(may_grant(&admin, Role::TenantMember, &t));
        assert!(!may_grant(&admin, Role::TenantOwner, &t));
        assert!(!may_grant(&admin, Role::PlatformAdmin, &Scope::Platform));
        let owner = grants_of(&[(Role::TenantOwner, t)]);
        assert!(may_grant(&owner, Role::TenantOwner, &t));
        assert!(!may_grant(
            &owner,
            Role::TenantOwner,
            &Scope::Tenant(TenantId::new())
        ));
    }

    #[test]
    fn nobody_acts_on_a_holder_of_a_role_they_could_not_grant() {
        let a = TenantId::new();
        let t = Scope::Tenant(a);
        let admin = grants_of(&[(Role::TenantAdmin, t)]);
        let owner = grants_of(&[(Role::TenantOwner, t)]);
        let platform = grants_of(&[(Role::PlatformAdmin, Scope::Platform)]);
        let member = grants_of(&[(Role::TenantMember, t)]);
        // Targets with no role, or only roles the caller could grant.
        for grants in [&admin, &owner, &platform] {
            assert_eq!(may_act_on(grants, &[]), Ok(()));
            assert_eq!(
                may_act_on(grants, &[(Role::TenantAdmin, t), (Role::TenantMember, t)]),
                Ok(())
            );
        }
        // An owner is out of an admin's reach, whatever else it holds.
        let an_owner = [(Role::TenantMember, t), (Role::TenantOwner, t)];
        assert_eq!(may_act_on(&admin, &an_owner), Err(Role::TenantOwner));
        assert_eq!(may_act_on(&owner, &an_owner), Ok(()));
        assert_eq!(may_act_on(&platform, &an_owner), Ok(()));
        // The hierarchy alone puts members level with members (the route's permission is what
        // keeps them out), never above admins.
        assert_eq!(may_act_on(&member, &[(Role::TenantMember, t)]), Ok(()));
        assert_eq!(
            may_act_on(&member, &[(Role::TenantAdmin, t)]),
            Err(Role::TenantAdmin)
        );
        // Roles count at the scope they are held: an owner of another tenant is out of reach,
        // and a role held on one client of the tenant is within a tenant-wide holder's reach.
        let elsewhere = Scope::Tenant(TenantId::new());
        assert_eq!(
            may_act_on(&owner, &[(Role::TenantMember, elsewhere)]),
            Err(Role::TenantMember)
        );
        let on_client = Scope::Client {
            tenant: a,
            client: ClientId::new(),
        };
        assert_eq!(
            may_act_on(&owner, &[(Role::TenantOwner, on_client)]),
            Ok(())
        );
        assert_eq!(
            may_act_on(&admin, &[(Role::TenantOwner, on_client)]),
            Err(Role::TenantOwner)
        );
        // A grant held on one client only does not reach a tenant-wide role.
        let client_admin = grants_of(&[(Role::TenantAdmin, on_client)]);
        assert_eq!(
            may_act_on(&client_admin, &[(Role::TenantMember, t)]),
            Err(Role::TenantMember)
        );
        // Platform operators are reachable only from the platform.
        assert_eq!(
            may_act_on(&owner, &[(Role::PlatformAdmin, Scope::Platform)]),
            Err(Role::PlatformAdmin)
        );
        assert_eq!(
            may_act_on(&platform, &[(Role::PlatformAdmin, Scope::Platform)]),
            Ok(())
        );
    }

    #[test]
    fn assignments_stay_inside_the_subjects_tenant() {
        let a = TenantId::new();
        let b = TenantId::new();
        assert!(check_assignment(None, Role::PlatformAdmin, &Scope::Platform).is_ok());
        assert!(check_assignment(Some(a), Role::PlatformAdmin, &Scope::Platform).is_err());
        assert!(check_assignment(Some(a), Role::TenantAdmin, &Scope::Tenant(a)).is_ok());
        assert!(check_assignment(Some(a), Role::TenantAdmin, &Scope::Tenant(b)).is_err());
        assert!(check_assignment(None, Role::TenantAdmin, &Scope::Tenant(a)).is_err());
        assert!(check_assignment(Some(a), Role::TenantOwner, &Scope::Platform).is_err());
        assert!(check_assignment(None, Role::PlatformAdmin, &Scope::Tenant(a)).is_err());
    }

    #[test]
    fn every_role_needs_only_existing_permissions_and_owners_hold_what_admins_hold() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            for p in role.permissions() {
                assert!(Permission::ALL.contains(p));
            }
        }
        for p in Role::TenantAdmin.permissions() {
            assert!(Role::TenantOwner.permissions().contains(p));
        }
        for p in Role::TenantOwner.permissions() {
            assert!(Role::PlatformAdmin.permissions().contains(p));
        }
    }
}
