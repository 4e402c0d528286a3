-- A client_credentials access token is recorded by its audit row alone (docs/storage.md): the
-- row carries the token's digest and expiry, its id is the token's jti and its actor the
-- client. Revocations of such tokens are kept beside them until the token expires.
ALTER TABLE audit_events ADD COLUMN token_hash BYTEA;
ALTER TABLE audit_events ADD COLUMN token_expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX audit_events_token_hash ON audit_events (token_hash)
    WHERE token_hash IS NOT NULL;

CREATE TABLE revoked_access_tokens (
    jti         UUID PRIMARY KEY,
    revoked_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_at ON revoked_access_tokens (expires_at);

-- Every access token, whichever way it is recorded: what token look-ups read.
-- Its audit branch is told apart by token_expires_at, not by token_hash: a look-up by jti
-- must not match the partial digest index's predicate, or a planner with stale statistics
-- (the index still small) scans that index for the id instead of the primary key.
CREATE VIEW access_token_records AS
    SELECT jti, token_hash, tenant_id, client_id, user_id, family_id, scope, created_at,
           expires_at, revoked_at
    FROM access_tokens
    UNION ALL
    SELECT e.id, e.token_hash, e.tenant_id, e.actor_id, NULL::uuid, NULL::uuid,
           e.metadata ->> 'scope', e.occurred_at, e.token_expires_at,
           (SELECT r.revoked_at FROM revoked_access_tokens r WHERE r.jti = e.id)
    FROM audit_events e
    WHERE e.token_expires_at IS NOT NULL;
