-- Invites (SPEC §3 "Moderation and administration"): with VOICECHAT_REGISTRATION=invite, every
-- account after the first needs one. Revoking deletes the row; the audit log keeps the history.
CREATE TABLE invites (
    -- Random, URL-safe (voicechat.auth.invites.new_invite_code): the code is the credential.
    code        text PRIMARY KEY CHECK (length(code) BETWEEN 10 AND 64),
    -- NULL: made by an operator with `voicechat admin invites create`, or the creator is gone.
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    max_uses    integer CHECK (max_uses IS NULL OR max_uses > 0),
    -- Counted in the registering transaction, never past max_uses (InviteRepository.use).
    uses        integer NOT NULL DEFAULT 0 CHECK (uses >= 0 AND (max_uses IS NULL OR uses <= max_uses)),
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invites_created_by_idx ON invites (created_by, created_at DESC);

-- The roles a new member receives on joining with the invite; a deleted role drops out.
CREATE TABLE invite_roles (
    invite_code text NOT NULL REFERENCES invites (code) ON DELETE CASCADE,
    role_id     uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (invite_code, role_id)
);

-- The retention purge deletes by age (voicechat.audit.retention).
CREATE INDEX audit_log_created_at_idx ON audit_log (created_at);
