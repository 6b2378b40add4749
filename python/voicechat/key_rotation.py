"""Master-key rotation: re-seal every value the master key protects under the current key.

What the master key seals (docs/backup.md "The keys"): each file's object key, each TOTP secret,
and the server secrets (the backup codes' HMAC key). Objects themselves, and backup-code
digests, are not touched: only the small wrapped keys and secrets are.

The rotation runs beside live servers that are configured with both keys (the new one current,
the old one previous): every row is opened with the key its id names, so reads never stop.
Each batch is selected `FOR UPDATE SKIP LOCKED`, re-sealed and written back in its own
transaction; an interrupted run leaves whole batches done and the rest under the old key, and
the next run picks up whatever is not under the current key yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicechat.auth.mfa_keys import (
    SERVER_SECRET_PURPOSE,
    backup_code_key,
    open_mfa_secret,
    seal_mfa_secret,
    server_secret_context,
)
from voicechat.crypto import DecryptionError
from voicechat.db.pool import Connection
from voicechat.db.repositories.audit import AuditLog
from voicechat.db.repositories.master_keys import (
    SealedKind,
    SealedValue,
    SealedValues,
    first_cursor,
)
from voicechat.server_keys import MasterKeys, MasterKeyUnavailable
from voicechat.storage.sealed import unwrap_object_key, wrap_object_key

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Server secrets first: the backup codes' key must be under the new key before the old one can
# go, and it is one row.
KINDS = (SealedKind.SERVER_SECRETS, SealedKind.FILE_KEYS, SealedKind.MFA_SECRETS)

Progress = Callable[[SealedKind, int, int], None]


def key_label(keys: MasterKeys, key_id: bytes | None) -> str:
    """How a key id reads in a status: `current`, `previous`, `unrecorded` or `unknown:<hex>`."""
    if key_id is None:
        return "unrecorded"
    if key_id == keys.current_id:
        return "current"
    if key_id == keys.previous_id:
        return "previous"
    return f"unknown:{key_id.hex()}"


@dataclass(slots=True)
class KeyStatus:
    """What is sealed under which master key, per kind of value."""

    current_key_id: str
    previous_key_id: str | None
    # kind -> key label -> count
    counts: dict[str, dict[str, int]]

    @property
    def left(self) -> int:
        """Values not yet under the current key."""
        return sum(n for kind in self.counts.values() for k, n in kind.items() if k != "current")

    @property
    def unopenable(self) -> int:
        """Values under a key id this server is not configured with."""
        return sum(
            n for kind in self.counts.values() for k, n in kind.items() if k.startswith("unknown:")
        )

    def as_dict(self) -> dict[str, Any]:
        """The machine-readable form (`--status --json`)."""
        return {
            "current_key_id": self.current_key_id,
            "previous_key_id": self.previous_key_id,
            "counts": self.counts,
            "left": self.left,
            "unopenable": self.unopenable,
            "complete": self.left == 0,
        }


async def key_status(conn: Connection, keys: MasterKeys) -> KeyStatus:
    """Count every sealed value by the master key that sealed it."""
    values = SealedValues(conn)
    counts: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        per_key: dict[str, int] = {}
        for key_id, n in (await values.counts(kind)).items():
            label = key_label(keys, key_id)
            per_key[label] = per_key.get(label, 0) + n
        counts[kind.value] = per_key
    previous = keys.previous_id
    return KeyStatus(keys.current_id.hex(), None if previous is None else previous.hex(), counts)


async def warn_unopenable(conn: Connection, keys: MasterKeys) -> int:
    """Log (at start-up) how many values are sealed under master keys not configured."""
    status = await key_status(conn, keys)
    for kind, per_key in status.counts.items():
        for label, n in per_key.items():
            if label.startswith("unknown:"):
                log.warning(
                    "%d %s are sealed under master key %s, which is not configured: they cannot "
                    "be read (set VOICECHAT_MASTER_KEY_PREVIOUS to that key and run "
                    "`voicechat admin rotate-master-key`)",
                    n,
                    kind.replace("_", " "),
                    label.removeprefix("unknown:"),
                )
    return status.unopenable


def _reseal(kind: SealedKind, keys: MasterKeys, value: SealedValue) -> bytes:
    if kind is SealedKind.FILE_KEYS:
        file_id = value.row_uuid
        object_key = unwrap_object_key(keys, file_id, value.sealed, key_id=value.key_id)
        return wrap_object_key(keys, file_id, object_key)[1]
    if kind is SealedKind.MFA_SECRETS:
        user_id = value.row_uuid
        secret = open_mfa_secret(keys, user_id, value.sealed, value.key_id)
        return seal_mfa_secret(keys, user_id, secret)[1]
    context = server_secret_context(value.row)
    plain = keys.open(SERVER_SECRET_PURPOSE, value.sealed, key_id=value.key_id, context=context)
    return keys.seal(SERVER_SECRET_PURPOSE, plain, context=context)[1]


@dataclass(slots=True)
class RotationResult:
    """What one run of the rotation did."""

    current_key_id: str
    resealed: dict[str, int] = field(default_factory=dict)
    unopenable: dict[str, list[str]] = field(default_factory=dict)
    stopped_at_limit: bool = False
    seconds: float = 0.0
    status: KeyStatus | None = None

    def as_dict(self) -> dict[str, Any]:
        """The machine-readable summary (`--json`)."""
        return {
            "current_key_id": self.current_key_id,
            "resealed": self.resealed,
            "unopenable": {kind: len(rows) for kind, rows in self.unopenable.items()},
            "stopped_at_limit": self.stopped_at_limit,
            "seconds": round(self.seconds, 3),
            "status": None if self.status is None else self.status.as_dict(),
            "complete": self.status is not None and self.status.left == 0,
        }


async def rotate(
    conn: Connection,
    keys: MasterKeys,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    progress: Progress = lambda kind, done, batch: None,
) -> RotationResult:
    """Re-seal under the current key everything sealed under another one.

    Args:
        conn: a connection of its own (each batch is a transaction on it).
        keys: the current key, and the previous one to open what it sealed.
        batch_size: values per transaction.
        limit: stop after re-sealing this many (None: all); the next run goes on.
        progress: called after each batch with the kind, its total so far and the batch size.
    """
    started = time.monotonic()
    result = RotationResult(keys.current_id.hex())
    # The backup codes' key is created, from the key their digests were made under, before
    # anything moves (auth/mfa_keys.py).
    await backup_code_key(conn, keys)
    values = SealedValues(conn)
    total = 0
    for kind in KINDS:
        done = 0
        bad: dict[str, str] = {}
        while True:
            pass_done = 0
            cursor = first_cursor(kind)
            while limit is None or total < limit:
                size = batch_size if limit is None else min(batch_size, limit - total)
                async with conn.transaction():
                    batch = await values.lock_batch(
                        kind, after=cursor, not_key_id=keys.current_id, limit=size
                    )
                    resealed: list[tuple[str, bytes]] = []
                    for value in batch:
                        try:
                            resealed.append((value.row, _reseal(kind, keys, value)))
                        except (MasterKeyUnavailable, DecryptionError) as exc:
                            if value.row not in bad:
                                log.error("cannot re-seal %s %s: %s", kind.value, value.row, exc)
                            bad[value.row] = str(exc)
                    await values.reseal(kind, resealed, key_id=keys.current_id)
                if not batch:
                    break
                cursor = batch[-1].row
                done += len(resealed)
                pass_done += len(resealed)
                total += len(resealed)
                progress(kind, done, len(resealed))
            if limit is not None and total >= limit:
                result.stopped_at_limit = True
                break
            # Rows skipped because another transaction held them, or written under the old key
            # behind the cursor by a server not yet given the new key: another pass.
            left = sum(
                n for key_id, n in (await values.counts(kind)).items() if key_id != keys.current_id
            )
            if left <= len(bad) or pass_done == 0:
                break
        result.resealed[kind.value] = done
        if bad:
            result.unopenable[kind.value] = sorted(bad)
        if result.stopped_at_limit:
            break
    for kind in KINDS:
        result.resealed.setdefault(kind.value, 0)
    result.status = await key_status(conn, keys)
    result.seconds = time.monotonic() - started
    async with conn.transaction():
        await AuditLog(conn).record(
            "admin.master_key_rotate",
            details={
                "to_key_id": result.current_key_id,
                "from_key_id": result.status.previous_key_id,
                "resealed": result.resealed,
                "left": result.status.left,
                "complete": result.status.left == 0,
            },
        )
    return result
