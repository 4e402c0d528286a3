-- Ending or replacing a session settles its families by session_id (every sign-out, every
-- sign-in that replaces a browser's session): without an index each would scan the table.
CREATE INDEX token_families_session_id ON token_families (session_id)
    WHERE session_id IS NOT NULL;

-- Every auth process publishes up to when the grant writes it made are settled (docs/design/
-- in-doubt-grant-writes.md): a process judges a code or refresh token presented again only
-- once no other live process may still hold its spend in doubt. seen_at is the database's
-- clock; settled_until the process's own, as are the times its writes record.
CREATE TABLE grant_writers (
    id             UUID PRIMARY KEY,
    started_at     TIMESTAMPTZ NOT NULL,
    settled_until  TIMESTAMPTZ NOT NULL,
    seen_at        TIMESTAMPTZ NOT NULL
);
