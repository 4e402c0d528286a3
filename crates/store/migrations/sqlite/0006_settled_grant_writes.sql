-- Ending or replacing a session settles its families by session_id (every sign-out, every
-- sign-in that replaces a browser's session): without an index each would scan the table.
CREATE INDEX token_families_session_id ON token_families (session_id)
    WHERE session_id IS NOT NULL;

-- Every auth process publishes up to when the grant writes it made are settled (docs/design/
-- in-doubt-grant-writes.md). The embedded database has one process and keeps this table
-- empty; it exists so both schemas stay alike.
CREATE TABLE grant_writers (
    id             BLOB PRIMARY KEY,
    started_at     INTEGER NOT NULL,
    settled_until  INTEGER NOT NULL,
    seen_at        INTEGER NOT NULL
) STRICT;
