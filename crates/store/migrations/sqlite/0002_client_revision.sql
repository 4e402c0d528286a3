-- Every change to a client bumps its revision, whatever statement makes it: a process that
-- decided a token request on a remembered copy of the client confirms, in the statement that
-- records the token, that the client is still at the revision it decided on.

ALTER TABLE oauth_clients ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

-- The trigger's own UPDATE does not fire it again (recursive triggers are off by default, and
-- the WHEN clause would stop it anyway).
CREATE TRIGGER oauth_clients_revision AFTER UPDATE ON oauth_clients
    FOR EACH ROW WHEN NEW.revision = OLD.revision
BEGIN
    UPDATE oauth_clients SET revision = OLD.revision + 1 WHERE id = NEW.id;
END;
