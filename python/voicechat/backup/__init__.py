"""Backups and restores (`voicechat backup ...`, SPEC §8, docs/backup.md).

- `archive.py`: the encrypted container (AES-256-GCM STREAM under a key from
  `VOICECHAT_BACKUP_KEY`) and `BackupRefused`, the one-line refusal.
- `store.py`: where backups live (a directory or an S3 bucket), listing and retention.
- `parts.py`: the parts inside an archive and its manifest.
- `postgres.py`: pg_dump/pg_restore and reaching the (embedded or external) database.
- `create.py`, `restore.py`: making a backup; verifying and restoring one.
"""
