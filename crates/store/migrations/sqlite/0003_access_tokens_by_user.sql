-- A user's access tokens are revoked when the user is disabled, deleted or given a new
-- password. Those of a token family are found through the family (token_families_user_id, then
-- access_tokens_family_id); this index finds the rest, recorded for a user without a family.
-- It holds only those rows, so the tokens of code exchange, refresh and client credentials
-- never write to it.
CREATE INDEX access_tokens_user_id_without_family ON access_tokens (user_id)
    WHERE family_id IS NULL AND user_id IS NOT NULL;
