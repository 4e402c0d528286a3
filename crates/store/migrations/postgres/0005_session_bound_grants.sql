-- Refresh tokens follow the browser session unless offline access was granted: a family is
-- `offline` only when its grant carried the consented `offline_access` scope. Families issued
-- before this migration keep working only if they carried it; the others now end with their
-- session (docs/storage.md, "Migration 5").
ALTER TABLE token_families ADD COLUMN offline BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE token_families SET offline = TRUE
    WHERE revoked_at IS NULL AND (' ' || scope || ' ') LIKE '% offline_access %';

-- RFC 6749 §4.1.3: the token request must repeat redirect_uri only if the authorization
-- request carried it. Codes issued before this migration are taken to have carried it.
ALTER TABLE authorization_codes ADD COLUMN redirect_uri_given BOOLEAN NOT NULL DEFAULT TRUE;

-- Origins of browser-based public clients (single-page apps), which get CORS on the token,
-- revocation and UserInfo endpoints. A preflight asks whether any live public client registers
-- its origin: the partial index holds only the clients that register one.
ALTER TABLE oauth_clients ADD COLUMN web_origins JSONB NOT NULL DEFAULT '[]'::jsonb;
CREATE INDEX oauth_clients_web_origins ON oauth_clients USING GIN (web_origins)
    WHERE web_origins <> '[]'::jsonb;

-- Resource servers learn about other clients' tokens through introspection only with this
-- permission; every client learns about its own.
INSERT INTO permissions (name, description) VALUES
    ('tenant:introspect_tokens', 'Introspect access tokens issued to the tenant''s clients');
INSERT INTO roles (name, scope_kind, description) VALUES
    ('tenant_resource_server', 'tenant', 'An API of the tenant: may introspect the tenant''s access tokens');
INSERT INTO role_permissions (role_name, permission_name) VALUES
    ('platform_admin', 'tenant:introspect_tokens'),
    ('tenant_owner', 'tenant:introspect_tokens'),
    ('tenant_admin', 'tenant:introspect_tokens'),
    ('tenant_resource_server', 'tenant:introspect_tokens');
