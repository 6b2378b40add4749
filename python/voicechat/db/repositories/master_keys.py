"""What is sealed under the master key, by key id: file keys, MFA secrets, server secrets.

Used by the master-key rotation (`voicechat admin rotate-master-key`) and the start-up check.
A batch is selected `FOR UPDATE SKIP LOCKED` in keyset order: the caller re-seals it and writes
it back in the same transaction, so rows being rotated are never read half-done, a row another
transaction holds is left for a later pass, and several rotations could run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from voicechat.db.pool import Connection

# A NULL key id is a value sealed before ids were recorded (migration 0005).
COUNT_FILES = "SELECT master_key_id AS key_id, count(*) AS n FROM files GROUP BY 1"
COUNT_MFA_SECRETS = """
SELECT mfa_secret_key_id AS key_id, count(*) AS n FROM users
WHERE mfa_secret IS NOT NULL GROUP BY 1
"""
COUNT_SERVER_SECRETS = (
    "SELECT master_key_id AS key_id, count(*) AS n FROM server_secrets GROUP BY 1"
)

BATCH_FILES = """
SELECT id::text AS id, wrapped_key AS sealed, master_key_id AS key_id FROM files
WHERE id > $1::uuid AND master_key_id IS DISTINCT FROM $2
ORDER BY id LIMIT $3
FOR UPDATE SKIP LOCKED
"""
BATCH_MFA_SECRETS = """
SELECT id::text AS id, mfa_secret AS sealed, mfa_secret_key_id AS key_id FROM users
WHERE id > $1::uuid AND mfa_secret IS NOT NULL AND mfa_secret_key_id IS DISTINCT FROM $2
ORDER BY id LIMIT $3
FOR UPDATE SKIP LOCKED
"""
BATCH_SERVER_SECRETS = """
SELECT name AS id, sealed, master_key_id AS key_id FROM server_secrets
WHERE name > $1 AND master_key_id IS DISTINCT FROM $2
ORDER BY name LIMIT $3
FOR UPDATE SKIP LOCKED
"""

RESEAL_FILES = """
UPDATE files SET wrapped_key = u.sealed, master_key_id = $3
FROM unnest($1::uuid[], $2::bytea[]) AS u(id, sealed) WHERE files.id = u.id
"""
RESEAL_MFA_SECRETS = """
UPDATE users SET mfa_secret = u.sealed, mfa_secret_key_id = $3
FROM unnest($1::uuid[], $2::bytea[]) AS u(id, sealed) WHERE users.id = u.id
"""
RESEAL_SERVER_SECRETS = """
UPDATE server_secrets SET sealed = u.sealed, master_key_id = $3, updated_at = now()
FROM unnest($1::text[], $2::bytea[]) AS u(name, sealed) WHERE server_secrets.name = u.name
"""

SELECT_SERVER_SECRET = "SELECT master_key_id, sealed FROM server_secrets WHERE name = $1"
INSERT_SERVER_SECRET = """
INSERT INTO server_secrets (name, master_key_id, sealed) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
"""

_UUID_START = "00000000-0000-0000-0000-000000000000"


class SealedKind(StrEnum):
    """The kinds of values sealed under the master key."""

    SERVER_SECRETS = "server_secrets"
    FILE_KEYS = "file_keys"
    MFA_SECRETS = "mfa_secrets"


_QUERIES = {
    SealedKind.SERVER_SECRETS: (COUNT_SERVER_SECRETS, BATCH_SERVER_SECRETS, RESEAL_SERVER_SECRETS),
    SealedKind.FILE_KEYS: (COUNT_FILES, BATCH_FILES, RESEAL_FILES),
    SealedKind.MFA_SECRETS: (COUNT_MFA_SECRETS, BATCH_MFA_SECRETS, RESEAL_MFA_SECRETS),
}


def first_cursor(kind: SealedKind) -> str:
    """The keyset cursor before every row of `kind`."""
    return "" if kind is SealedKind.SERVER_SECRETS else _UUID_START


@dataclass(frozen=True, slots=True)
class SealedValue:
    """One sealed value: its row (a uuid, or a server secret's name), bytes and key id."""

    row: str
    sealed: bytes
    key_id: bytes | None

    @property
    def row_uuid(self) -> UUID:
        """The row as a UUID (file and user rows)."""
        return UUID(self.row)


class SealedValues:
    """Data access for every value sealed under the master key."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def counts(self, kind: SealedKind) -> dict[bytes | None, int]:
        """How many values of `kind` each master key id sealed (None: before ids)."""
        records = await self._conn.fetch(_QUERIES[kind][0])
        return {r["key_id"]: r["n"] for r in records}

    async def lock_batch(
        self, kind: SealedKind, *, after: str, not_key_id: bytes, limit: int
    ) -> list[SealedValue]:
        """Up to `limit` values after the cursor `after` not sealed under `not_key_id`, locked
        for this transaction (rows other transactions hold are skipped)."""
        records = await self._conn.fetch(_QUERIES[kind][1], after, not_key_id, limit)
        return [SealedValue(r["id"], r["sealed"], r["key_id"]) for r in records]

    async def reseal(
        self, kind: SealedKind, resealed: list[tuple[str, bytes]], *, key_id: bytes
    ) -> None:
        """Write values back, each now sealed under `key_id`."""
        if not resealed:
            return
        rows: list[str | UUID] = [
            row if kind is SealedKind.SERVER_SECRETS else UUID(row) for row, _ in resealed
        ]
        await self._conn.execute(
            _QUERIES[kind][2], rows, [sealed for _, sealed in resealed], key_id
        )

    async def server_secret(self, name: str) -> tuple[bytes, bytes] | None:
        """A server secret's (key id, sealed value), if it exists."""
        record = await self._conn.fetchrow(SELECT_SERVER_SECRET, name)
        return None if record is None else (record["master_key_id"], record["sealed"])

    async def add_server_secret(self, name: str, key_id: bytes, sealed: bytes) -> None:
        """Store a server secret unless one of that name exists already."""
        await self._conn.execute(INSERT_SERVER_SECRET, name, key_id, sealed)
