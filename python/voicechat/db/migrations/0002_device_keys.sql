-- The signed device-keys object exactly as the device uploaded it, so that other devices can
-- verify the device's own signature over it (the server's word is never enough).
ALTER TABLE devices ADD COLUMN device_keys jsonb;
UPDATE devices SET device_keys = '{}'::jsonb WHERE device_keys IS NULL;
ALTER TABLE devices ALTER COLUMN device_keys SET NOT NULL;

-- Inbox reads and acknowledgements go by recipient device and id.
CREATE INDEX IF NOT EXISTS to_device_recipient_idx
    ON to_device_messages (recipient_user_id, recipient_device_id, id);

-- One-time keys and fallback keys are numbered separately by clients (vodozemac starts both
-- at the same id), so a key id is unique within its kind only.
ALTER TABLE one_time_keys DROP CONSTRAINT one_time_keys_user_id_device_id_key_id_key;
ALTER TABLE one_time_keys
    ADD CONSTRAINT one_time_keys_kind_key_id_key UNIQUE (user_id, device_id, fallback, key_id);
