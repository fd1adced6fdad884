-- API tokens expire: each carries its end (ms since the epoch). Tokens made
-- before this migration have none and keep working until deleted.
-- Idempotent like 0005. Keep in step with ../sqlite/0009_token_expiry.sql.

ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS expires_at_ms BIGINT;
