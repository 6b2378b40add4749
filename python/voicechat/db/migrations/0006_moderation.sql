-- Moderation (SPEC §3 "Moderation and administration", docs/moderation.md).
--
-- A ban is a row here: while it exists the user cannot log in (password, MFA, SSO, refresh:
-- 403 `banned`). Unbanning deletes it; the audit log keeps the history (`member.ban`,
-- `member.unban`). The account itself stays (its messages, roles and profile are untouched).
CREATE TABLE bans (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- NULL: the moderator's account is gone.
    banned_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    reason      text CHECK (reason IS NULL OR length(reason) <= 512),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bans_created_at_idx ON bans (created_at DESC, user_id);

-- A timeout: until this time the user can read but not send, react, type or speak in voice.
-- A past value means no timeout (nothing has to clear it when it runs out).
ALTER TABLE users ADD COLUMN communication_disabled_until timestamptz;
