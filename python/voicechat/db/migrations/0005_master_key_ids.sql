-- Master-key rotation (docs/backup.md "The keys", `voicechat admin rotate-master-key`).
--
-- Everything sealed under the master key records which master key sealed it: its key id, the
-- first 8 bytes of HMAC-SHA256(master key, "voicechat:master-key-id") (voicechat.crypto
-- .master_key_id). A row is opened with the key its id names, so while a rotation runs (the
-- new key current, the old one still configured as the previous key) every row stays readable;
-- the rotation re-seals the rows whose id is not the current key's, a batch per transaction.
-- The id is also part of each ciphertext's associated data: a row whose id was edited does not
-- open. NULL: sealed before this migration, by whichever configured key opens it (its
-- associated data has no key id); a rotation re-seals those too.
ALTER TABLE files ADD COLUMN master_key_id bytea;
ALTER TABLE users ADD COLUMN mfa_secret_key_id bytea;

-- Secrets of the server itself, sealed under the master key. `mfa-backup-code` is the HMAC key
-- of the backup codes' digests: a digest cannot be re-sealed, so that key is stored (wrapped)
-- instead of being derived from the master key, and rotating the master key re-wraps it.
CREATE TABLE server_secrets (
    name           text PRIMARY KEY,
    master_key_id  bytea NOT NULL,
    sealed         bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
