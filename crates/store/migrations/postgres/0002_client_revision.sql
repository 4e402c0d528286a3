-- Every change to a client bumps its revision, whatever statement makes it: a process that
-- decided a token request on a remembered copy of the client confirms, in the statement that
-- records the token, that the client is still at the revision it decided on.

ALTER TABLE oauth_clients ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION oauth_clients_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER oauth_clients_revision BEFORE UPDATE ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION oauth_clients_bump_revision();
