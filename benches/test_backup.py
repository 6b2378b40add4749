"""Backup and restore time and size against the bare tools, in the same run.

A community generated in SQL (`BACKUP_BENCH_MESSAGES` messages, default 200,000, from 1,000
users in 10 channels) and `BACKUP_BENCH_FILES` stored objects of `BACKUP_BENCH_FILE_MB` MiB
(default 20 x 5 MiB; opaque bytes, as sealed objects are), on an external database and local
storage. References: `pg_dump -Fc` to a file plus a copy of the files directory, and
`pg_restore` into an empty database plus a copy back. Ours: `create_backup` (snapshot, dump,
tar, AES-256-GCM, write) and `restore_backup` (fetch, decrypt and verify into staging, set the
schema aside, pg_restore, files, config), its health check timed apart.

The 1,000,000-message / 2 GB run of issue 14 is this bench with
`BACKUP_BENCH_MESSAGES=1000000 BACKUP_BENCH_FILES=400`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx

from tests.conftest import _scratch_database
from voicechat.backup.archive import BackupKey
from voicechat.backup.create import create_backup
from voicechat.backup.postgres import LibpqTarget, tool
from voicechat.backup.restore import resolve, restore_backup
from voicechat.backup.store import open_store
from voicechat.settings import load_settings

MESSAGES = int(os.environ.get("BACKUP_BENCH_MESSAGES", "200000"))
FILES = int(os.environ.get("BACKUP_BENCH_FILES", "20"))
FILE_MB = int(os.environ.get("BACKUP_BENCH_FILE_MB", "5"))

_SEED = """
INSERT INTO users (username, password_hash)
    SELECT 'user' || n, 'x' FROM generate_series(1, 1000) AS n;
INSERT INTO channels (name, type) SELECT 'channel-' || n, 'text' FROM generate_series(1, 10) AS n;
INSERT INTO messages (id, channel_id, user_id, content)
    SELECT gen_random_uuid(), c.id, u.id, 'message ' || n || ' ' || repeat('lorem ipsum ', 6)
    FROM generate_series(1, {messages}) AS n
    JOIN LATERAL (SELECT id FROM channels ORDER BY id OFFSET n % 10 LIMIT 1) c ON true
    JOIN LATERAL (SELECT id FROM users ORDER BY id OFFSET n % 1000 LIMIT 1) u ON true;
"""


def _seed(dsn: str, files_dir: Path) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(_SEED.format(messages=MESSAGES))
            for _ in range(FILES):
                file_id = uuid4()
                key = f"{file_id.hex[-2:]}/{file_id}"
                path = files_dir / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(os.urandom(FILE_MB * 1024 * 1024))
                await conn.execute(
                    "INSERT INTO files (id, filename, mime_type, size_bytes, s3_key, wrapped_key)"
                    " VALUES ($1, 'f', 'application/octet-stream', $2, $3, '\\x00')",
                    file_id,
                    FILE_MB * 1024 * 1024,
                    key,
                )
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    asyncio.run(run())


def _bare_backup(dsn: str, files_dir: Path, out: Path) -> int:
    target = LibpqTarget.of(dsn)
    out.mkdir(parents=True)
    subprocess.run(  # noqa: S603 - our own tool path
        [
            str(tool("pg_dump")),
            "--format=custom",
            f"--file={out / 'dump'}",
            f"--dbname={target.dsn}",
        ],
        env=target.env,
        check=True,
    )
    shutil.copytree(files_dir, out / "files")
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def _bare_restore(dsn: str, copy: Path, files_dir: Path) -> None:
    target = LibpqTarget.of(dsn)
    subprocess.run(  # noqa: S603 - our own tool path
        [
            str(tool("pg_restore")),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={target.dsn}",
            str(copy / "dump"),
        ],
        env=target.env,
        check=True,
    )
    shutil.copytree(copy / "files", files_dir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cold_recovery(backup_url: str, key: str, data_dir: Path) -> tuple[float, float]:
    """The RTO from a cold machine: no data dir, embedded PostgreSQL and Valkey, the backup's
    store and key only. `voicechat backup restore latest`, then `voicechat serve` until its
    /health says ok. Returns (restore seconds, seconds to /health ok in all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECHAT_")}
    port = _free_port()
    env.update(
        VOICECHAT_DATA_DIR=str(data_dir),
        VOICECHAT_BACKUP_URL=backup_url,
        VOICECHAT_BACKUP_KEY=key,
        VOICECHAT_PORT=str(port),
        VOICECHAT_MEDIA_PORT=str(_free_port()),
        VOICECHAT_WORKERS="1",
        VOICECHAT_LOG_FORMAT="text",
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "voicechat", "backup", "restore", "latest"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    restored = time.perf_counter() - started
    server = subprocess.Popen(
        [sys.executable, "-m", "voicechat", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if answer.status_code == 200 and answer.json().get("status") == "ok":
                    return restored, time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the restored server never answered /health ok")
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_backup_and_restore_against_pg_dump_and_a_copy(
    database_url: str,
    empty_database_url: str,
    postgres_dsn: str,
    clean_valkey: str,
    tmp_path: Path,
    benchmark: Callable[..., object],
) -> None:
    files_dir = tmp_path / "files"
    _seed(database_url, files_dir)
    key = base64.b64encode(os.urandom(32)).decode()
    common = {
        "valkey_url": clean_valkey,
        "backup_url": f"file://{tmp_path / 'backups'}",
        "backup_key": key,
        "master_key": base64.b64encode(os.urandom(32)).decode(),
        "log_format": "text",
        "media_port": 0,
    }
    source = load_settings(
        database_url=database_url,
        storage_url=f"file://{files_dir}",
        data_dir=tmp_path / "source",
        **common,
    )
    rounds: list[tuple[float, float]] = []
    summaries = []
    for attempt in range(2):
        bare_dir = tmp_path / f"bare-{attempt}"
        started = time.perf_counter()
        bare_bytes = _bare_backup(database_url, files_dir, bare_dir)
        bare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        summaries.append(create_backup(source))
        rounds.append((bare_seconds, time.perf_counter() - started))
    ours_bytes = summaries[-1].size_bytes

    with _scratch_database(postgres_dsn, "template1") as bare_target:
        started = time.perf_counter()
        _bare_restore(bare_target, bare_dir, tmp_path / "bare-r")
        bare_restore = time.perf_counter() - started
    target = load_settings(
        database_url=empty_database_url,
        storage_url=f"file://{tmp_path / 'restored'}",
        data_dir=tmp_path / "target",
        **common,
    )
    store = open_store(target)
    steps: list[tuple[str, float]] = []
    restore_backup(
        target,
        store,
        resolve(store, "latest"),
        BackupKey.parse(key),
        report=lambda step, seconds: steps.append((step, seconds)),
    )
    health = steps[-1][1]
    ours_restore = sum(seconds for _, seconds in steps) - health
    # Under /tmp, ours and traversable (0711): the embedded server's own user must reach it.
    cold = Path(tempfile.mkdtemp(prefix="voicechat-rto-"))
    cold.chmod(0o711)
    try:
        cold_restore, rto = _cold_recovery(str(common["backup_url"]), key, cold / "data")
    finally:
        shutil.rmtree(cold, ignore_errors=True)
    bare_b, ours_b = min(r[0] for r in rounds), min(r[1] for r in rounds)
    load = os.getloadavg()[0]
    print(
        f"\nbackup of {MESSAGES:,} messages and {FILES} x {FILE_MB} MiB files "
        f"(load {load:.1f}):\n"
        f"  create   {ours_b:6.2f} s, {ours_bytes / 2**20:7.1f} MiB   bare pg_dump + copy "
        f"{bare_b:6.2f} s, {bare_bytes / 2**20:7.1f} MiB   ratio {ours_b / bare_b:.2f}\n"
        f"  restore  {ours_restore:6.2f} s (+ health check {health:.2f} s)   bare pg_restore + "
        f"copy {bare_restore:6.2f} s   ratio {ours_restore / bare_restore:.2f}\n"
        f"  RTO from a cold machine (no data dir): restore {cold_restore:6.2f} s, "
        f"/health ok after {rto:6.2f} s"
    )
    for step, seconds in steps:
        print(f"    [{seconds:6.2f} s] {step}")
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {
            "create_s": ours_b,
            "bare_backup_s": bare_b,
            "create_ratio": ours_b / bare_b,
            "restore_s": ours_restore,
            "bare_restore_s": bare_restore,
            "restore_ratio": ours_restore / bare_restore,
            "cold_restore_s": cold_restore,
            "rto_s": rto,
            "archive_bytes": ours_bytes,
            "bare_bytes": bare_bytes,
            "load": load,
        }
    )
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
