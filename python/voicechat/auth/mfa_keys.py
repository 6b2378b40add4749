"""MFA at rest: TOTP secrets sealed under the master keyring, and the backup codes' HMAC key.

A TOTP secret is sealed under the current master key with the user's id (and the key's id) as
associated data, and stored with that key id (`users.mfa_secret_key_id`): a rotation re-seals
it. A backup code is stored only as an HMAC digest, which cannot be re-sealed, so the HMAC key
is not derived from the master key on each use but stored, wrapped under it, in
`server_secrets` (`mfa-backup-code`), and a rotation re-wraps that one key. Its value is the one
deployments used before (derived from the master key they had then), so digests made before
the table existed keep matching.
"""

from __future__ import annotations

from uuid import UUID

from voicechat.crypto import derive_key
from voicechat.db.pool import Connection
from voicechat.db.repositories.master_keys import SealedValues
from voicechat.server_keys import MasterKeys

MFA_SECRET_PURPOSE = "mfa-secret"  # noqa: S105 (a label, not a secret)
SERVER_SECRET_PURPOSE = "server-secret"  # noqa: S105 (a label)
BACKUP_CODE_KEY = "mfa-backup-code"


def seal_mfa_secret(keys: MasterKeys, user_id: UUID, secret: str) -> tuple[bytes, bytes]:
    """A TOTP secret sealed for one user; returns (master key id, sealed)."""
    return keys.seal(MFA_SECRET_PURPOSE, secret.encode(), context=user_id.bytes)


def open_mfa_secret(keys: MasterKeys, user_id: UUID, sealed: bytes, key_id: bytes | None) -> str:
    """Reverse :func:`seal_mfa_secret`.

    Raises:
        MasterKeyUnavailable: the master key that sealed it is not configured.
        DecryptionError: another user's secret, or tampered bytes.
    """
    return keys.open(MFA_SECRET_PURPOSE, sealed, key_id=key_id, context=user_id.bytes).decode()


def server_secret_context(name: str) -> bytes:
    """The associated data of the server secret `name`."""
    return b"server-secret:" + name.encode()


async def backup_code_key(conn: Connection, keys: MasterKeys) -> bytes:
    """The HMAC key of backup-code digests, created (wrapped) on first use.

    The first value is the key derived from the master key the existing digests were made
    under: the previous key while a rotation is configured (a rotation creates this row before
    re-sealing anything), else the current one.

    Raises:
        MasterKeyUnavailable: it is wrapped under a master key that is not configured.
    """
    values = SealedValues(conn)
    stored = await values.server_secret(BACKUP_CODE_KEY)
    if stored is None:
        original = keys.previous if keys.previous is not None else keys.current
        key_id, sealed = keys.seal(
            SERVER_SECRET_PURPOSE,
            derive_key(original, BACKUP_CODE_KEY),
            context=server_secret_context(BACKUP_CODE_KEY),
        )
        await values.add_server_secret(BACKUP_CODE_KEY, key_id, sealed)
        # Another process may have created it first: theirs is the one.
        stored = await values.server_secret(BACKUP_CODE_KEY)
        assert stored is not None
    key_id, sealed = stored
    return keys.open(
        SERVER_SECRET_PURPOSE, sealed, key_id=key_id, context=server_secret_context(BACKUP_CODE_KEY)
    )
