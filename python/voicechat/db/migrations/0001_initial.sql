-- voicechat schema, version 1: the whole data model of SPEC §7.
-- Ids are UUIDs; message ids are UUIDv7 made by the application so that they sort by time.

CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username         text NOT NULL,
    display_name     text,
    email            text,
    password_hash    text,
    auth_method      text NOT NULL DEFAULT 'local' CHECK (auth_method IN ('local', 'oidc')),
    external_id      text,
    provider         text,
    avatar_url       text,
    status           text NOT NULL DEFAULT 'offline'
                     CHECK (status IN ('online', 'idle', 'dnd', 'offline')),
    mfa_secret       bytea,            -- AES-256-GCM ciphertext under the server master key
    mfa_enabled      boolean NOT NULL DEFAULT false,
    mfa_last_step    bigint,           -- last TOTP time step accepted: never twice
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CONSTRAINT users_username_shape CHECK (username ~ '^[a-z0-9_.-]{3,32}$'),
    CONSTRAINT users_local_has_password CHECK (auth_method <> 'local' OR password_hash IS NOT NULL),
    CONSTRAINT users_oidc_has_subject
        CHECK (auth_method <> 'oidc' OR (external_id IS NOT NULL AND provider IS NOT NULL))
);
CREATE UNIQUE INDEX users_username_key ON users (username);
CREATE UNIQUE INDEX users_provider_subject_key ON users (provider, external_id)
    WHERE auth_method = 'oidc';
CREATE INDEX users_email_idx ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE mfa_backup_codes (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- The durable record of a login session; the live copy (checked on every request) is in Valkey.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL,
    expires_at    timestamptz NOT NULL,
    ip_address    inet,
    user_agent    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE UNIQUE INDEX sessions_token_hash_key ON sessions (token_hash);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE roles (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    color        integer NOT NULL DEFAULT 0 CHECK (color BETWEEN 0 AND 16777215),
    permissions  jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(permissions) = 'array'),
    position     integer NOT NULL DEFAULT 0,
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name_key ON roles (lower(name));
-- Exactly one role is held by everyone.
CREATE UNIQUE INDEX roles_one_default ON roles (is_default) WHERE is_default;

INSERT INTO roles (name, permissions, position, is_default) VALUES
    ('everyone',
     '["view_channel", "send_messages", "upload_files", "voice_connect", "voice_speak"]',
     0, true),
    ('administrator', '["administrator"]', 1000, false);

CREATE TABLE user_roles (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id      uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

CREATE TABLE channels (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    type         text NOT NULL CHECK (type IN ('text', 'voice', 'dm', 'category')),
    category_id  uuid REFERENCES channels (id) ON DELETE SET NULL,
    position     integer NOT NULL DEFAULT 0,
    topic        text CHECK (length(topic) <= 1024),
    user_limit   integer CHECK (user_limit BETWEEN 1 AND 100),
    private      boolean NOT NULL DEFAULT false,
    encrypted    boolean NOT NULL DEFAULT false,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT channels_dm_is_private_and_encrypted
        CHECK (type <> 'dm' OR (private AND encrypted)),
    CONSTRAINT channels_category_not_nested CHECK (type <> 'category' OR category_id IS NULL)
);
CREATE INDEX channels_listing_idx ON channels (category_id, position, id);

CREATE TABLE channel_members (
    channel_id  uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id     uuid REFERENCES roles (id) ON DELETE SET NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user_idx ON channel_members (user_id);

CREATE TABLE messages (
    id           uuid PRIMARY KEY,                  -- UUIDv7: ordering by id is ordering by time
    channel_id   uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,  -- NULL: the author was deleted
    content      text CHECK (length(content) <= 4000),
    content_enc  jsonb,                             -- SPEC §5 ciphertext form, never read
    nonce        text CHECK (length(nonce) <= 64),
    reply_to     uuid REFERENCES messages (id) ON DELETE SET NULL,
    edited_at    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_one_body CHECK (num_nonnulls(content, content_enc) = 1)
);
-- Paging reads (channel_id, id) ranges newest first.
CREATE INDEX messages_channel_page_idx ON messages (channel_id, id DESC);
CREATE UNIQUE INDEX messages_nonce_key ON messages (channel_id, user_id, nonce)
    WHERE nonce IS NOT NULL;
CREATE INDEX messages_reply_to_idx ON messages (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_user_idx ON messages (user_id);

CREATE TABLE files (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id   uuid REFERENCES messages (id) ON DELETE SET NULL,
    channel_id   uuid REFERENCES channels (id) ON DELETE CASCADE,
    uploader_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    mime_type    text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    s3_key       text NOT NULL,
    wrapped_key  bytea NOT NULL,                    -- per-object key under the master key
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX files_s3_key_key ON files (s3_key);
CREATE INDEX files_message_idx ON files (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX files_channel_idx ON files (channel_id);

-- End-to-end encryption (SPEC §5): the server stores public keys and relays ciphertext only.
CREATE TABLE devices (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id     text NOT NULL CHECK (length(device_id) BETWEEN 1 AND 64),
    session_id    uuid REFERENCES sessions (id) ON DELETE SET NULL,
    identity_key  text NOT NULL,                    -- curve25519, base64
    signing_key   text NOT NULL,                    -- ed25519, base64
    signatures    jsonb NOT NULL DEFAULT '{}'::jsonb,
    display_name  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX devices_identity_key_key ON devices (identity_key);

CREATE TABLE one_time_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL,
    device_id   text NOT NULL,
    key_id      text NOT NULL,
    key         text NOT NULL,
    signature   text NOT NULL,
    fallback    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    UNIQUE (user_id, device_id, key_id)
);
-- Claims take the oldest unclaimed key of a device (FOR UPDATE SKIP LOCKED, then DELETE).
CREATE INDEX one_time_keys_claim_idx ON one_time_keys (user_id, device_id, fallback, id);

CREATE TABLE to_device_messages (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient_user_id    uuid NOT NULL,
    recipient_device_id  text NOT NULL,
    sender_user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    sender_device_id     text,
    type                 text NOT NULL,
    content              jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (recipient_user_id, recipient_device_id)
        REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX to_device_inbox_idx ON to_device_messages (recipient_user_id, recipient_device_id, id);

-- `PUT /sendToDevice/{txn_id}` is idempotent per sender device and txn id.
CREATE TABLE to_device_txns (
    sender_user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sender_device_id  text NOT NULL,
    txn_id            text NOT NULL CHECK (length(txn_id) BETWEEN 1 AND 128),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_user_id, sender_device_id, txn_id)
);

CREATE TABLE megolm_sessions (
    channel_id  uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    session_id  text NOT NULL,
    sender_key  text NOT NULL,
    device_id   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, session_id)
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    event       text NOT NULL,
    user_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    ip_address  inet,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, created_at DESC);
CREATE INDEX audit_log_event_idx ON audit_log (event, created_at DESC);
