"""Device keys, one-time keys, and the to-device inbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import from_record
from voicechat.error_codes import ErrorCode
from voicechat.errors import Conflict

SELECT_DEVICE = """
SELECT user_id, device_id, identity_key, signing_key, device_keys, session_id
FROM devices WHERE user_id = $1 AND device_id = $2
"""
UPSERT_DEVICE = """
INSERT INTO devices (user_id, device_id, session_id, identity_key, signing_key, device_keys)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id, device_id) DO UPDATE SET session_id = EXCLUDED.session_id,
    last_seen_at = now()
"""
SELECT_SESSION_DEVICE = "SELECT device_id FROM devices WHERE user_id = $1 AND session_id = $2"
INSERT_ONE_TIME_KEYS = """
INSERT INTO one_time_keys (user_id, device_id, key_id, key, signature, fallback)
SELECT $1, $2, k.key_id, k.key, k.signature, false
FROM jsonb_to_recordset($3::jsonb) AS k(key_id text, key text, signature text)
ON CONFLICT (user_id, device_id, fallback, key_id) DO NOTHING
"""
REPLACE_FALLBACK = """
WITH gone AS (DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback)
INSERT INTO one_time_keys (user_id, device_id, key_id, key, signature, fallback)
VALUES ($1, $2, $3, $4, $5, true)
"""
COUNT_KEYS = """
SELECT count(*) FILTER (WHERE NOT fallback) AS one_time, bool_or(fallback) AS has_fallback
FROM one_time_keys WHERE user_id = $1 AND device_id = $2
"""
SELECT_DEVICES_OF = """
SELECT user_id, device_id, device_keys FROM devices
WHERE user_id = ANY($1::uuid[]) ORDER BY user_id, device_id
"""
# One claim takes the oldest unclaimed key; SKIP LOCKED lets concurrent claims take others.
CLAIM_ONE_TIME_KEY = """
DELETE FROM one_time_keys WHERE id = (
    SELECT id FROM one_time_keys
    WHERE user_id = $1 AND device_id = $2 AND NOT fallback
    ORDER BY id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING key_id, key, signature, fallback
"""
SELECT_FALLBACK = """
SELECT key_id, key, signature, fallback FROM one_time_keys
WHERE user_id = $1 AND device_id = $2 AND fallback
"""
INSERT_TXN = """
INSERT INTO to_device_txns (sender_user_id, sender_device_id, txn_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""
INSERT_TO_DEVICE = """
INSERT INTO to_device_messages (recipient_user_id, recipient_device_id, sender_user_id,
    sender_device_id, type, content)
SELECT m.user_id, m.device_id, $1, $2, $3, m.content
FROM jsonb_to_recordset($4::jsonb) AS m(user_id uuid, device_id text, content jsonb)
JOIN devices d ON d.user_id = m.user_id AND d.device_id = m.device_id
RETURNING id, recipient_user_id, recipient_device_id, created_at
"""
SELECT_INBOX = """
SELECT id, sender_user_id, sender_device_id, type, content, created_at
FROM to_device_messages
WHERE recipient_user_id = $1 AND recipient_device_id = $2 AND id > $3
ORDER BY id LIMIT $4
"""
ACK_INBOX = """
DELETE FROM to_device_messages
WHERE recipient_user_id = $1 AND recipient_device_id = $2 AND id <= $3
"""
DELETE_DEVICE = "DELETE FROM devices WHERE user_id = $1 AND device_id = $2"
SELECT_OWN_DEVICES = """
SELECT device_id, identity_key, signing_key, created_at, last_seen_at, (session_id = $2) AS current
FROM devices WHERE user_id = $1 ORDER BY created_at
"""
# Users who must hear of a user's device changes: everyone sharing an encrypted private
# channel or DM with them. (Public encrypted channels are told through channel events.)
SELECT_DEVICE_WATCHERS = """
SELECT DISTINCT other.user_id
FROM channel_members mine
JOIN channels c ON c.id = mine.channel_id AND c.encrypted
JOIN channel_members other ON other.channel_id = c.id
WHERE mine.user_id = $1
"""
SELECT_PUBLIC_ENCRYPTED = "SELECT id FROM channels WHERE encrypted AND NOT private"
RECORD_MEGOLM_SESSION = """
INSERT INTO megolm_sessions (channel_id, session_id, sender_key, device_id)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device and the login session it is bound to."""

    user_id: UUID
    device_id: str
    identity_key: str
    signing_key: str
    device_keys: Any
    session_id: UUID | None


@dataclass(frozen=True, slots=True)
class PublishedDevice:
    """A device's signed keys as published to others."""

    user_id: UUID
    device_id: str
    device_keys: Any


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    """A one-time (or fallback) key taken for a new Olm session."""

    key_id: str
    key: str
    signature: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class QueuedToDevice:
    """A to-device message as stored for its recipient."""

    id: int
    recipient_user_id: UUID
    recipient_device_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """A pending to-device message."""

    id: int
    sender_user_id: UUID
    sender_device_id: str
    type: str
    content: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OwnedDevice:
    """One of a user's devices, as they see it."""

    device_id: str
    identity_key: str
    signing_key: str
    created_at: datetime
    last_seen_at: datetime | None
    # Whether this is the device of the asking login session.
    current: bool | None


class KeyRepository:
    """SQL for the key server."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def device(self, user_id: UUID, device_id: str) -> Device | None:
        """A device's row."""
        record = await self._conn.fetchrow(SELECT_DEVICE, user_id, device_id)
        return None if record is None else from_record(Device, record)

    async def register_device(
        self,
        user_id: UUID,
        device_id: str,
        session_id: UUID,
        identity_key: str,
        signing_key: str,
        device_keys: dict[str, Any],
    ) -> None:
        """Insert a device, or bind a known one to this session.

        Raises:
            Conflict: the identity key already belongs to another device.
        """
        try:
            await self._conn.execute(
                UPSERT_DEVICE,
                user_id,
                device_id,
                session_id,
                identity_key,
                signing_key,
                device_keys,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                "these identity keys belong to another device", code=ErrorCode.KEY_REUSED
            ) from None

    async def session_device(self, user_id: UUID, session_id: UUID) -> str | None:
        """The device registered in this login session, if any."""
        value = await self._conn.fetchval(SELECT_SESSION_DEVICE, user_id, session_id)
        return None if value is None else str(value)

    async def add_one_time_keys(
        self, user_id: UUID, device_id: str, keys: list[dict[str, str]]
    ) -> None:
        """Store signed one-time keys (ids already stored are ignored)."""
        if keys:
            await self._conn.execute(INSERT_ONE_TIME_KEYS, user_id, device_id, keys)

    async def set_fallback_key(
        self, user_id: UUID, device_id: str, key_id: str, key: str, signature: str
    ) -> None:
        """Replace the device's fallback key."""
        await self._conn.execute(REPLACE_FALLBACK, user_id, device_id, key_id, key, signature)

    async def key_counts(self, user_id: UUID, device_id: str) -> tuple[int, bool]:
        """Unclaimed one-time keys, and whether a fallback key is stored."""
        row = await self._conn.fetchrow(COUNT_KEYS, user_id, device_id)
        assert row is not None
        return int(row["one_time"]), bool(row["has_fallback"])

    async def devices_of(self, user_ids: list[UUID]) -> list[PublishedDevice]:
        """Signed device keys of these users."""
        rows = await self._conn.fetch(SELECT_DEVICES_OF, user_ids)
        return [from_record(PublishedDevice, row) for row in rows]

    async def claim(self, user_id: UUID, device_id: str) -> ClaimedKey | None:
        """Take one one-time key of a device (each exactly once), else its fallback key."""
        claimed = await self._conn.fetchrow(CLAIM_ONE_TIME_KEY, user_id, device_id)
        if claimed is None:
            claimed = await self._conn.fetchrow(SELECT_FALLBACK, user_id, device_id)
        return None if claimed is None else from_record(ClaimedKey, claimed)

    async def start_txn(self, user_id: UUID, device_id: str, txn_id: str) -> bool:
        """True the first time this sender uses this transaction id."""
        return await self._conn.execute(INSERT_TXN, user_id, device_id, txn_id) == "INSERT 0 1"

    async def queue_to_device(
        self,
        sender_user: UUID,
        sender_device: str,
        type_: str,
        messages: list[dict[str, Any]],
    ) -> list[QueuedToDevice]:
        """Store to-device messages for existing devices; returns the stored rows."""
        rows = await self._conn.fetch(INSERT_TO_DEVICE, sender_user, sender_device, type_, messages)
        return [from_record(QueuedToDevice, row) for row in rows]

    async def inbox(
        self, user_id: UUID, device_id: str, after: int, limit: int
    ) -> list[InboxMessage]:
        """Pending to-device messages of a device, oldest first."""
        rows = await self._conn.fetch(SELECT_INBOX, user_id, device_id, after, limit)
        return [from_record(InboxMessage, row) for row in rows]

    async def acknowledge(self, user_id: UUID, device_id: str, up_to: int) -> None:
        """Forget the device's messages up to and including `up_to`."""
        await self._conn.execute(ACK_INBOX, user_id, device_id, up_to)

    async def own_devices(self, user_id: UUID, session_id: UUID) -> list[OwnedDevice]:
        """The user's devices, marking the one of this session."""
        rows = await self._conn.fetch(SELECT_OWN_DEVICES, user_id, session_id)
        return [from_record(OwnedDevice, row) for row in rows]

    async def delete_device(self, user_id: UUID, device_id: str) -> bool:
        """Remove a device with its keys and inbox."""
        return await self._conn.execute(DELETE_DEVICE, user_id, device_id) == "DELETE 1"

    async def device_watchers(self, user_id: UUID) -> list[UUID]:
        """Users sharing an encrypted private channel or DM with this user."""
        return [r["user_id"] for r in await self._conn.fetch(SELECT_DEVICE_WATCHERS, user_id)]

    async def public_encrypted_channels(self) -> list[UUID]:
        """Encrypted channels anyone with view_channel may read."""
        return [r["id"] for r in await self._conn.fetch(SELECT_PUBLIC_ENCRYPTED)]

    async def record_megolm_session(
        self, channel_id: UUID, session_id: str, sender_key: str, device_id: str
    ) -> None:
        """Note a Megolm session seen in a channel (metadata only, never the key)."""
        await self._conn.execute(
            RECORD_MEGOLM_SESSION, channel_id, session_id, sender_key, device_id
        )
