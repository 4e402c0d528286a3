-- OpenTrusty initial schema (PostgreSQL). Every timestamp is timestamptz; every secret that
-- grants access (session cookie, code, refresh token, enrollment link) is stored as a SHA-256.

CREATE TABLE tenants (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL,
    display_name  TEXT,
    logo_url      TEXT,
    accent_color  TEXT,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    deleted_at    TIMESTAMPTZ,
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
CREATE UNIQUE INDEX tenants_live_name_key ON tenants (name_key) WHERE deleted_at IS NULL;

CREATE TABLE users (
    id                   UUID PRIMARY KEY,
    tenant_id            UUID REFERENCES tenants (id),
    email                TEXT NOT NULL,
    email_normalized     TEXT NOT NULL,
    email_verified       BOOLEAN NOT NULL DEFAULT FALSE,
    given_name           TEXT,
    family_name          TEXT,
    status               TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    failed_login_count   INTEGER NOT NULL DEFAULT 0,
    failed_login_since   TIMESTAMPTZ,
    locked_until         TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    deleted_at           TIMESTAMPTZ
);
-- One live account per email per tenant, and one per email among platform operators.
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, email_normalized)
    WHERE deleted_at IS NULL AND tenant_id IS NOT NULL;
CREATE UNIQUE INDEX users_platform_email ON users (email_normalized)
    WHERE deleted_at IS NULL AND tenant_id IS NULL;
-- The control-plane login resolves an email across tenants.
CREATE INDEX users_email ON users (email_normalized);
CREATE INDEX users_tenant_id ON users (tenant_id, id);

CREATE TABLE credentials (
    user_id        UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE permissions (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL
);

CREATE TABLE roles (
    name         TEXT PRIMARY KEY,
    scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('platform', 'tenant', 'client')),
    description  TEXT NOT NULL
);

CREATE TABLE role_permissions (
    role_name        TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission_name  TEXT NOT NULL REFERENCES permissions (name) ON DELETE CASCADE,
    PRIMARY KEY (role_name, permission_name)
);

CREATE TABLE oauth_clients (
    id                            UUID PRIMARY KEY,
    client_id                     TEXT NOT NULL UNIQUE,
    tenant_id                     UUID NOT NULL REFERENCES tenants (id),
    name                          TEXT NOT NULL,
    secret_hash                   TEXT,
    token_endpoint_auth_method    TEXT NOT NULL
        CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'none')),
    redirect_uris                 JSONB NOT NULL,
    post_logout_redirect_uris     JSONB NOT NULL,
    grant_types                   JSONB NOT NULL,
    allowed_scopes                JSONB NOT NULL,
    access_token_format           TEXT NOT NULL DEFAULT 'jwt' CHECK (access_token_format IN ('jwt', 'opaque')),
    id_token_signed_response_alg  TEXT NOT NULL DEFAULT 'RS256',
    first_party                   BOOLEAN NOT NULL DEFAULT FALSE,
    require_pkce                  BOOLEAN NOT NULL DEFAULT TRUE,
    access_token_ttl_secs         INTEGER NOT NULL DEFAULT 900,
    refresh_token_ttl_secs        INTEGER NOT NULL DEFAULT 2592000,
    id_token_ttl_secs             INTEGER NOT NULL DEFAULT 900,
    active                        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                    TIMESTAMPTZ NOT NULL,
    updated_at                    TIMESTAMPTZ NOT NULL,
    deleted_at                    TIMESTAMPTZ,
    CHECK ((token_endpoint_auth_method = 'none') = (secret_hash IS NULL))
);
CREATE INDEX oauth_clients_tenant_id ON oauth_clients (tenant_id, id);

-- A role held by a user or a service-account client, at platform, tenant or client scope.
CREATE TABLE role_assignments (
    id               UUID PRIMARY KEY,
    role_name        TEXT NOT NULL REFERENCES roles (name),
    user_id          UUID REFERENCES users (id) ON DELETE CASCADE,
    client_id        UUID REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope_kind       TEXT NOT NULL CHECK (scope_kind IN ('platform', 'tenant', 'client')),
    scope_tenant_id  UUID REFERENCES tenants (id),
    scope_client_id  UUID REFERENCES oauth_clients (id) ON DELETE CASCADE,
    -- subject + role + scope; NULLs are distinct in UNIQUE, so the key is spelled out.
    unique_key       TEXT NOT NULL UNIQUE,
    granted_by       UUID,
    created_at       TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (client_id IS NULL)),
    CHECK (
        (scope_kind = 'platform' AND scope_tenant_id IS NULL AND scope_client_id IS NULL)
        OR (scope_kind = 'tenant' AND scope_tenant_id IS NOT NULL AND scope_client_id IS NULL)
        OR (scope_kind = 'client' AND scope_tenant_id IS NOT NULL AND scope_client_id IS NOT NULL)
    )
);
CREATE INDEX role_assignments_user_id ON role_assignments (user_id);
CREATE INDEX role_assignments_client_id ON role_assignments (client_id);
CREATE INDEX role_assignments_scope_tenant_id ON role_assignments (scope_tenant_id);
CREATE INDEX role_assignments_role_name ON role_assignments (role_name, scope_kind);

CREATE TABLE sessions (
    id            UUID PRIMARY KEY,
    token_hash    BYTEA NOT NULL UNIQUE,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     UUID REFERENCES tenants (id),
    auth_time     TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_tenant_id ON sessions (tenant_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Consent a user gave a client, for the scopes listed (space-separated, sorted).
CREATE TABLE consents (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   UUID NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes      TEXT NOT NULL,
    granted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_id ON consents (client_id);

-- Everything issued from one authorization grant: refresh tokens rotate within a family, and
-- revoking the family revokes every token in it.
CREATE TABLE token_families (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id),
    client_id       UUID NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id         UUID REFERENCES users (id) ON DELETE CASCADE,
    session_id      UUID,
    scope           TEXT NOT NULL,
    auth_time       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_reason  TEXT
);
CREATE INDEX token_families_tenant_id ON token_families (tenant_id);
CREATE INDEX token_families_client_id ON token_families (client_id);
CREATE INDEX token_families_user_id ON token_families (user_id);
CREATE INDEX token_families_expires_at ON token_families (expires_at);

CREATE TABLE authorization_codes (
    code_hash              BYTEA PRIMARY KEY,
    tenant_id              UUID NOT NULL REFERENCES tenants (id),
    client_id              UUID NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id                UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id             UUID,
    redirect_uri           TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    nonce                  TEXT,
    code_challenge         TEXT,
    code_challenge_method  TEXT,
    auth_time              TIMESTAMPTZ NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    expires_at             TIMESTAMPTZ NOT NULL,
    used_at                TIMESTAMPTZ,
    -- The family the redemption created, so a replay can revoke what the code issued.
    family_id              UUID REFERENCES token_families (id) ON DELETE SET NULL
);
CREATE INDEX authorization_codes_tenant_id ON authorization_codes (tenant_id);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    family_id   UUID NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- Every access token issued (JWT or opaque), so revocation and introspection work for both.
CREATE TABLE access_tokens (
    jti         UUID PRIMARY KEY,
    token_hash  BYTEA UNIQUE,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    client_id   UUID NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id     UUID REFERENCES users (id) ON DELETE CASCADE,
    family_id   UUID REFERENCES token_families (id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX access_tokens_tenant_id ON access_tokens (tenant_id);
CREATE INDEX access_tokens_client_id ON access_tokens (client_id);
CREATE INDEX access_tokens_family_id ON access_tokens (family_id);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

-- Signing keys shared by every auth process. The private half is encrypted with a key derived
-- from OPENTRUSTY_SECRET_KEY. At most one active key per algorithm.
CREATE TABLE signing_keys (
    kid                     TEXT PRIMARY KEY,
    alg                     TEXT NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    status                  TEXT NOT NULL CHECK (status IN ('next', 'active', 'retired')),
    public_jwk              JSONB NOT NULL,
    private_key_ciphertext  BYTEA NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    activated_at            TIMESTAMPTZ,
    retired_at              TIMESTAMPTZ,
    publish_until           TIMESTAMPTZ
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE status = 'active';

-- Single-use links with which a user sets a password (new account or reset).
CREATE TABLE enrollment_links (
    id          UUID PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   UUID REFERENCES tenants (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('enroll', 'reset')),
    created_by  UUID,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX enrollment_links_user_id ON enrollment_links (user_id);
CREATE INDEX enrollment_links_tenant_id ON enrollment_links (tenant_id);
CREATE INDEX enrollment_links_expires_at ON enrollment_links (expires_at);

-- Append-only audit trail written by both planes in the same transaction as each change.
CREATE TABLE audit_events (
    id           UUID PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL,
    tenant_id    UUID,
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('system', 'user', 'client', 'anonymous')),
    actor_id     UUID,
    action       TEXT NOT NULL,
    target_kind  TEXT,
    target_id    TEXT,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    metadata     JSONB NOT NULL
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_time ON audit_events (occurred_at DESC, id DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP;
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Seeded permissions and roles. Code checks permissions only; roles are the bundles operators
-- assign. The storage test `seeded_roles_match_the_domain` keeps this in step with opentrusty-core.
INSERT INTO permissions (name, description) VALUES
    ('control_plane:login',     'Sign in to the admin console'),
    ('platform:manage_tenants', 'Create, list, rename, suspend and delete tenants'),
    ('platform:view_audit',     'Read the platform-wide audit trail'),
    ('platform:manage_keys',    'List and rotate signing keys'),
    ('tenant:view',             'Read a tenant''s details'),
    ('tenant:update_settings',  'Change a tenant''s display name, logo and accent colour'),
    ('tenant:manage_users',     'Provision, change and remove users; reset passwords; unlock'),
    ('tenant:manage_roles',     'Grant and revoke tenant roles'),
    ('tenant:manage_clients',   'Register, change and delete OAuth clients; rotate secrets'),
    ('tenant:manage_sessions',  'List and end users'' sessions'),
    ('tenant:view_audit',       'Read the tenant''s audit trail'),
    ('user:read_profile',       'Read one''s own profile'),
    ('user:write_profile',      'Change one''s own profile'),
    ('user:change_password',    'Change one''s own password');

INSERT INTO roles (name, scope_kind, description) VALUES
    ('platform_admin', 'platform', 'Operates the installation: tenants, keys, platform audit'),
    ('tenant_owner',   'tenant',   'Owns a tenant: everything a tenant admin may do, plus settings and owners'),
    ('tenant_admin',   'tenant',   'Manages a tenant''s users, roles, clients and sessions'),
    ('tenant_member',  'tenant',   'A user of the tenant''s applications, without console access');

INSERT INTO role_permissions (role_name, permission_name)
    SELECT 'platform_admin', name FROM permissions;

INSERT INTO role_permissions (role_name, permission_name) VALUES
    ('tenant_owner', 'control_plane:login'),
    ('tenant_owner', 'tenant:view'),
    ('tenant_owner', 'tenant:update_settings'),
    ('tenant_owner', 'tenant:manage_users'),
    ('tenant_owner', 'tenant:manage_roles'),
    ('tenant_owner', 'tenant:manage_clients'),
    ('tenant_owner', 'tenant:manage_sessions'),
    ('tenant_owner', 'tenant:view_audit'),
    ('tenant_owner', 'user:read_profile'),
    ('tenant_owner', 'user:write_profile'),
    ('tenant_owner', 'user:change_password'),
    ('tenant_admin', 'control_plane:login'),
    ('tenant_admin', 'tenant:view'),
    ('tenant_admin', 'tenant:manage_users'),
    ('tenant_admin', 'tenant:manage_roles'),
    ('tenant_admin', 'tenant:manage_clients'),
    ('tenant_admin', 'tenant:manage_sessions'),
    ('tenant_admin', 'tenant:view_audit'),
    ('tenant_admin', 'user:read_profile'),
    ('tenant_admin', 'user:write_profile'),
    ('tenant_admin', 'user:change_password'),
    ('tenant_member', 'user:read_profile'),
    ('tenant_member', 'user:write_profile'),
    ('tenant_member', 'user:change_password');
