"""Master-key rotation time against a bare rewrite of the same rows, in the same run.

`KEY_ROTATION_BENCH_FILES` file rows (default 50,000) and `KEY_ROTATION_BENCH_USERS` users
with an MFA secret (default 5,000), all sealed under an old master key, on the test database.
Reference: the same batches (500 rows, a transaction each, keyset order) selected `FOR UPDATE
SKIP LOCKED` and written back unchanged through the same `unnest` update, i.e. the database's
share; ours (`key_rotation.rotate`) adds opening and sealing each value (AES-256-GCM).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from uuid import uuid4

from voicechat.auth.mfa_keys import seal_mfa_secret
from voicechat.db.pool import Connection, dedicated_connection
from voicechat.db.repositories.master_keys import SealedKind, SealedValues, first_cursor
from voicechat.key_rotation import rotate
from voicechat.server_keys import MasterKeys
from voicechat.storage.sealed import new_object_key, wrap_object_key

FILES = int(os.environ.get("KEY_ROTATION_BENCH_FILES", "50000"))
USERS = int(os.environ.get("KEY_ROTATION_BENCH_USERS", "5000"))
BATCH = 500


async def _seed(conn: Connection, old: MasterKeys) -> None:
    user_rows = []
    for n in range(USERS):
        user_id = uuid4()
        key_id, sealed = seal_mfa_secret(old, user_id, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        user_rows.append((user_id, f"user{n}", sealed, key_id))
    await conn.executemany(
        "INSERT INTO users (id, username, password_hash, mfa_secret, mfa_secret_key_id, "
        "mfa_enabled) VALUES ($1, $2, 'x', $3, $4, true)",
        user_rows,
    )
    file_rows = []
    for n in range(FILES):
        file_id = uuid4()
        key_id, wrapped = wrap_object_key(old, file_id, new_object_key())
        file_rows.append((file_id, f"f{n}.bin", f"{file_id.hex[-2:]}/{file_id}", wrapped, key_id))
    await conn.executemany(
        "INSERT INTO files (id, filename, mime_type, size_bytes, s3_key, wrapped_key, "
        "master_key_id) VALUES ($1, $2, 'application/octet-stream', 1, $3, $4, $5)",
        file_rows,
    )


async def _bare_rewrite(conn: Connection, not_key_id: bytes) -> int:
    values = SealedValues(conn)
    rows = 0
    for kind in (SealedKind.FILE_KEYS, SealedKind.MFA_SECRETS):
        cursor = first_cursor(kind)
        while True:
            async with conn.transaction():
                batch = await values.lock_batch(
                    kind, after=cursor, not_key_id=not_key_id, limit=BATCH
                )
                # Written back as they are, under the id they already have: nothing moves.
                for key_id in {v.key_id for v in batch}:
                    assert key_id is not None
                    same = [(v.row, v.sealed) for v in batch if v.key_id == key_id]
                    await values.reseal(kind, same, key_id=key_id)
            if not batch:
                break
            cursor = batch[-1].row
            rows += len(batch)
    return rows


def test_rotation_against_a_bare_rewrite(
    database_url: str, benchmark: Callable[..., object]
) -> None:
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    old, rotating = MasterKeys(old_key), MasterKeys(new_key, old_key)
    timings: dict[str, float] = {}

    async def run() -> None:
        async with dedicated_connection(database_url) as conn:
            await _seed(conn, old)
            started = time.perf_counter()
            # Against the new key's id: every row is "not under it" and is rewritten.
            assert await _bare_rewrite(conn, rotating.current_id) == FILES + USERS
            timings["bare"] = time.perf_counter() - started
            started = time.perf_counter()
            result = await rotate(conn, rotating, batch_size=BATCH)
            timings["ours"] = time.perf_counter() - started
            assert result.status is not None
            assert result.status.left == 0
            assert result.resealed["file_keys"] == FILES
            assert result.resealed["mfa_secrets"] == USERS

    asyncio.run(run())
    ratio = timings["ours"] / timings["bare"]
    rows = FILES + USERS
    print(
        f"\nrotation of {FILES} file keys + {USERS} MFA secrets: ours {timings['ours']:.2f} s "
        f"({rows / timings['ours']:,.0f} values/s), bare rewrite {timings['bare']:.2f} s, "
        f"ratio {ratio:.2f}, load {os.getloadavg()[0]:.1f}"
    )
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {"ours_s": timings["ours"], "bare_s": timings["bare"], "ratio": ratio, "rows": rows}
    )
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
