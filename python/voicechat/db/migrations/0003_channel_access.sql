-- The one definition of who can see and do what on a channel. Every query that needs to know
-- (a user's channel list, one channel's access, a channel's audience, its key recipients)
-- calls these functions; Python never restates the rule.
--
-- A user's permissions are the union of the default role's and their assigned roles'. On a
-- channel, a member's per-channel role (channel_members.role_id) adds to them.
-- `administrator` grants everything on every channel except DMs, which only their members ever
-- see. A private channel is visible to its members (and administrators); a public one to
-- everyone holding `view_channel` there.

-- Every permission name (SPEC §3); voicechat.chat.permissions.Permission lists the same names.
CREATE FUNCTION all_permissions() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['administrator', 'kick_members', 'manage_channels', 'manage_messages',
                 'manage_roles', 'move_members', 'mute_members', 'send_messages',
                 'upload_files', 'view_channel', 'voice_connect', 'voice_speak']
$$;

-- What every member of a DM may do in it, whatever their roles.
CREATE FUNCTION dm_permissions() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['send_messages', 'upload_files', 'view_channel', 'voice_connect',
                 'voice_speak']
$$;

-- A user's permissions outside any channel: the default role's and their assigned roles'
-- (all of them for an administrator).
CREATE FUNCTION user_base_permissions(p_user uuid) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN 'administrator' = ANY(g.names) THEN all_permissions() ELSE g.names END
    FROM (
        SELECT COALESCE(array_agg(DISTINCT p.name ORDER BY p.name), '{}') AS names
        FROM roles r
        CROSS JOIN LATERAL jsonb_array_elements_text(r.permissions) AS p(name)
        WHERE r.is_default OR r.id IN (SELECT role_id FROM user_roles WHERE user_id = p_user)
    ) AS g
$$;

-- The user's permissions on the channel; NULL when the channel is missing or invisible to them.
CREATE FUNCTION channel_permissions(p_channel uuid, p_user uuid) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN c.type = 'dm' THEN
            CASE WHEN cm.user_id IS NOT NULL THEN dm_permissions() END
        WHEN 'administrator' = ANY(base.names) THEN all_permissions()
        WHEN c.private AND cm.user_id IS NULL THEN NULL
        WHEN 'administrator' = ANY(granted.names) THEN all_permissions()
        WHEN 'view_channel' = ANY(granted.names) THEN granted.names
    END
    FROM channels c
    CROSS JOIN LATERAL (SELECT user_base_permissions(p_user) AS names) AS base
    LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = p_user
    LEFT JOIN roles cr ON cr.id = cm.role_id
    CROSS JOIN LATERAL (
        SELECT ARRAY(
            SELECT DISTINCT n.name
            FROM unnest(base.names || ARRAY(
                SELECT jsonb_array_elements_text(COALESCE(cr.permissions, '[]'::jsonb))
            )) AS n(name)
            ORDER BY n.name
        ) AS names
    ) AS granted
    WHERE c.id = p_channel
$$;
