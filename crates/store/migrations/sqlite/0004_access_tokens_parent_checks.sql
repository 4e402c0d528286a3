-- PostgreSQL drops the foreign-key checks of access_tokens on its tenant and client here
-- (their cost per token, docs/storage.md). SQLite keeps them: dropping a constraint means
-- rebuilding the table, and one process writing one file does not pay a row lock for them.
SELECT 1;
