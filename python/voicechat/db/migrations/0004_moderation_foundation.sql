-- What issue 15's moderation, accounts and administration build on.
--
-- The permissions SPEC §3 "Moderation and administration" adds. `all_permissions()` is what an
-- administrator holds everywhere; voicechat.chat.permissions.Permission lists the same names.
CREATE OR REPLACE FUNCTION all_permissions() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['administrator', 'ban_members', 'create_invites', 'kick_members',
                 'manage_bots', 'manage_channels', 'manage_messages', 'manage_roles',
                 'manage_server', 'mention_everyone', 'moderate_members', 'move_members',
                 'mute_members', 'send_messages', 'upload_files', 'view_audit_log',
                 'view_channel', 'voice_connect', 'voice_speak']
$$;

-- The audit log names who was acted on and why, besides the actor (`user_id`): GET /audit-log
-- filters on both.
ALTER TABLE audit_log
    ADD COLUMN target_id uuid,
    ADD COLUMN reason text;
CREATE INDEX audit_log_target_idx ON audit_log (target_id, id DESC) WHERE target_id IS NOT NULL;
CREATE INDEX audit_log_id_idx ON audit_log (id DESC);
