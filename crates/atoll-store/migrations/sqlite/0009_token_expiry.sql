-- API tokens expire: each carries its end (ms since the epoch). Tokens made
-- before this migration have none and keep working until deleted.
-- Keep in step with ../mysql/0009_token_expiry.sql.

ALTER TABLE api_tokens ADD COLUMN expires_at_ms BIGINT;
