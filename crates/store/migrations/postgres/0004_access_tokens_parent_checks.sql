-- Every access token insert ran two foreign-key checks, a look-up with a row lock on the
-- token's tenant and on its client, in each statement that writes tokens. Neither parent row
-- is ever deleted (tenants and clients are deleted by marking them), and every statement that
-- writes a token takes its tenant and client from a row it reads in the same statement (the
-- client at the revision decided on, the code redeemed, the family rotated); a token whose
-- client row were missing would be inactive, since every read of a token joins its client and
-- tenant. The checks cost a tenth of a ten-token group commit (docs/storage.md).
ALTER TABLE access_tokens
    DROP CONSTRAINT access_tokens_tenant_id_fkey,
    DROP CONSTRAINT access_tokens_client_id_fkey;
