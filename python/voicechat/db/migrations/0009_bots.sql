-- Bot accounts and disabled accounts (SPEC §3 "Accounts", "Moderation and administration").
--
-- A bot is a user with auth_method 'bot' and an owner (the user who created it): no password,
-- no MFA, no SSO subject. It authenticates with long-lived tokens of its own, stored here by
-- SHA-256 (they are 256 random bits: nothing to stretch, docs/accounts.md "Bots"). Deleting
-- the owner's row deletes their bots.
ALTER TABLE users DROP CONSTRAINT users_auth_method_check;
ALTER TABLE users
    ADD CONSTRAINT users_auth_method_check CHECK (auth_method IN ('local', 'oidc', 'bot')),
    ADD COLUMN bot_owner_id uuid REFERENCES users (id) ON DELETE CASCADE,
    ADD CONSTRAINT users_bot_has_owner CHECK ((auth_method = 'bot') = (bot_owner_id IS NOT NULL)),
    -- An administrator switched the account off: no login, no session, no token works.
    ADD COLUMN disabled boolean NOT NULL DEFAULT false;
CREATE INDEX users_bot_owner_idx ON users (bot_owner_id) WHERE bot_owner_id IS NOT NULL;

CREATE TABLE bot_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL CHECK (length(token_hash) = 32),
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Written at most once a minute per token (docs/accounts.md), not on every request.
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE UNIQUE INDEX bot_tokens_hash_key ON bot_tokens (token_hash);
CREATE INDEX bot_tokens_live_idx ON bot_tokens (bot_id) WHERE revoked_at IS NULL;
