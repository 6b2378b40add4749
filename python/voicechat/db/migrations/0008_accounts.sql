-- Accounts (SPEC §3 "Accounts", docs/accounts.md): password reset and email verification
-- tokens, verified email, deleted accounts kept as tombstones, and the mail outbox.

-- An email address counts as verified once a token sent to it came back (POST
-- /auth/email/verify); changing the address makes it unverified again.
ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- A deleted account (`deleted_at` set) is a tombstone: anonymised, no password, no secret, but
-- its row stays so its messages keep their author id (shown as the deleted-user placeholder)
-- and its username and SSO subject stay taken until `username_released_at`, when the grace
-- period ends (VOICECHAT_DELETED_USERNAME_GRACE_DAYS) and both are freed.
ALTER TABLE users ADD COLUMN username_released_at timestamptz;
ALTER TABLE users DROP CONSTRAINT users_local_has_password;
ALTER TABLE users ADD CONSTRAINT users_local_has_password
    CHECK (auth_method <> 'local' OR password_hash IS NOT NULL OR deleted_at IS NOT NULL);
ALTER TABLE users DROP CONSTRAINT users_oidc_has_subject;
ALTER TABLE users ADD CONSTRAINT users_oidc_has_subject
    CHECK (auth_method <> 'oidc' OR (external_id IS NOT NULL AND provider IS NOT NULL)
           OR username_released_at IS NOT NULL);
-- The tombstones whose grace period is still running, for the release sweep.
CREATE INDEX users_tombstones_idx ON users (deleted_at)
    WHERE deleted_at IS NOT NULL AND username_released_at IS NULL;

-- One-time tokens mailed to a person: only their SHA-256 is stored. `used_at` is set by the
-- one UPDATE that accepts a token, so a token works once however many requests race.
CREATE TABLE account_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('password_reset', 'email_verify')),
    -- The address being verified (email_verify only).
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry_idx ON account_tokens (expires_at);

-- Mail waiting to be sent (voicechat.mail.outbox): a request that sends mail commits a row
-- here, and a background sender on every API instance delivers it, retrying with backoff
-- while SMTP is down. A sent row is deleted (its body may hold a token); a row past
-- `expires_at` (its token would be dead anyway) is dropped unsent and logged.
CREATE TABLE mail_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    subject          text NOT NULL,
    body             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    -- Also the lease: a sender that claims a row pushes this forward, so a sender that dies
    -- mid-delivery leaves the row to be retried after the lease.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at);

-- The export reads an author's messages in id order, a page at a time (GET /users/@me/export).
CREATE INDEX messages_author_idx ON messages (user_id, id);
DROP INDEX messages_user_idx;
