"""Every refusal of SPEC §8: a wrong key, a truncated or altered archive (any byte), a missing
part, a newer schema, a live database; each is one line, a non-zero exit, and nothing changed."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest

from tests.backup.conftest import BackupCli, one_line
from voicechat.backup import parts
from voicechat.backup.archive import PREAMBLE_BYTES, BackupKey, BackupRefused, SealingWriter
from voicechat.backup.restore import open_verified
from voicechat.backup.store import StoredBackup, backup_time, object_name

OBJECT_BYTES = 2_500_000  # three sealed chunks of the archive's 1 MiB


def _sql(dsn: str, sql: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def source(
    tmp_path: Path, database_url: str, clean_valkey: str, backup_env: dict[str, str]
) -> dict[str, str]:
    """Settings of a small deployment: an external database with one stored object."""
    files = tmp_path / "files"
    file_id = uuid4()
    key = f"{file_id.hex[-2:]}/{file_id}"
    (files / key).parent.mkdir(parents=True)
    (files / key).write_bytes(os.urandom(OBJECT_BYTES))
    _sql(
        database_url,
        "INSERT INTO files (id, filename, mime_type, size_bytes, s3_key, wrapped_key) "
        "VALUES ($1, 'f.bin', 'application/octet-stream', 1, $2, '\\x00')",
        file_id,
        key,
    )
    return {
        **backup_env,
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_STORAGE_URL": f"file://{files}",
        "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
        "VOICECHAT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


@pytest.fixture
def archive(source: dict[str, str], backup_cli: BackupCli, tmp_path: Path) -> Path:
    """The one backup of `source`, with a user added afterwards (a restore would drop it)."""
    created = backup_cli("create", env=source)
    assert created.exit_code == 0, created.output + created.stderr
    _sql(
        source["VOICECHAT_DATABASE_URL"],
        "INSERT INTO users (username, password_hash) VALUES ('after_backup', 'x')",
    )
    (path,) = (tmp_path / "backups").iterdir()
    return path


def _state(env: dict[str, str]) -> tuple[Any, ...]:
    """What a restore would change: the database's users, the files, the data dir."""
    users = _sql(
        env["VOICECHAT_DATABASE_URL"], "SELECT array_agg(username ORDER BY username) FROM users"
    )
    files = Path(env["VOICECHAT_STORAGE_URL"].removeprefix("file://"))
    data = Path(env["VOICECHAT_DATA_DIR"])

    def tree(root: Path) -> list[tuple[str, bytes]]:
        if not root.exists():
            return []
        return sorted(
            (str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()
        )

    return users, tree(files), tree(data)


def _refused_restore(env: dict[str, str], backup_cli: BackupCli, *args: str) -> str:
    before = _state(env)
    result = backup_cli("restore", *args, env=env)
    assert result.exit_code == 1, result.output + result.stderr
    assert _state(env) == before
    assert "after_backup" in before[0]
    return one_line(result)


def _cuts(size: int) -> list[int]:
    chunk = PREAMBLE_BYTES + 15 + (1024 * 1024 + 16)
    return [0, 10, PREAMBLE_BYTES, PREAMBLE_BYTES + 15, chunk, chunk + 1, size // 2, size - 1]


def test_a_truncated_archive_is_refused(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    whole = archive.read_bytes()
    for cut in _cuts(len(whole)):
        archive.write_bytes(whole[:cut])
        line = _refused_restore(source, backup_cli, "latest")
        assert "truncated" in line or "cut short" in line, (cut, line)
    archive.write_bytes(whole)
    assert backup_cli("verify", "latest", env=source).exit_code == 0


class _BytesStore:
    """One backup held in memory, for altering it byte by byte."""

    description = "memory"

    def __init__(self, backup_id: str, data: bytes) -> None:
        self.backup = StoredBackup(backup_id, backup_time(backup_id), len(data))
        self.data = data

    def read(self, backup_id: str) -> Iterator[bytes]:
        for start in range(0, len(self.data), 256 * 1024):
            yield self.data[start : start + 256 * 1024]


def _positions(size: int) -> list[int]:
    # Every byte of the preamble and of the stream's header, then bytes spread over the rest,
    # each chunk's first and last tag byte among them, and the very last byte.
    head = list(range(PREAMBLE_BYTES + 15))
    chunk = 1024 * 1024 + 16
    edges = [PREAMBLE_BYTES + 15 + n * chunk + d for n in range(3) for d in (0, chunk - 1)]
    spread = list(range(PREAMBLE_BYTES + 15, size, max(1, size // 40)))
    return sorted({*head, *(e for e in edges if e < size), *spread, size - 1})


def test_any_altered_byte_is_refused(archive: Path, source: dict[str, str]) -> None:
    whole = archive.read_bytes()
    backup_id = archive.name.removeprefix("voicechat-backup-").removesuffix(".vcbk")
    key = BackupKey.parse(source["VOICECHAT_BACKUP_KEY"])
    store = _BytesStore(backup_id, whole)
    open_verified(store, store.backup, key, staging=None)  # type: ignore[arg-type]
    for position in _positions(len(whole)):
        altered = bytearray(whole)
        altered[position] ^= 0x01
        store.data = bytes(altered)
        with pytest.raises(BackupRefused) as refused:
            open_verified(store, store.backup, key, staging=None)  # type: ignore[arg-type]
        assert "\n" not in str(refused.value)


def test_an_altered_byte_is_refused_by_restore_and_changes_nothing(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    whole = archive.read_bytes()
    for position, expected in (
        (0, "not a voicechat backup"),
        (30, "wrong backup key"),
        (PREAMBLE_BYTES + 2, "damaged"),
        (len(whole) // 2, "damaged"),
        (len(whole) - 1, "damaged"),
    ):
        altered = bytearray(whole)
        altered[position] ^= 0x80
        archive.write_bytes(bytes(altered))
        assert expected in _refused_restore(source, backup_cli, "latest")


def test_a_wrong_key_is_refused(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    other = base64.b64encode(os.urandom(32)).decode()
    for key in (other, "a passphrase of some length"):
        env = {**source, "VOICECHAT_BACKUP_KEY": key}
        assert "wrong backup key" in _refused_restore(env, backup_cli, "latest")
        verified = backup_cli("verify", "latest", env=env)
        assert verified.exit_code == 1
        assert "wrong backup key" in one_line(verified)


def test_a_passphrase_backup_round_trips(source: dict[str, str], backup_cli: BackupCli) -> None:
    env = {**source, "VOICECHAT_BACKUP_KEY": "correct horse battery staple"}
    assert backup_cli("create", env=env).exit_code == 0
    verified = backup_cli("verify", "latest", "--json", env=env)
    assert verified.exit_code == 0, verified.stderr
    assert '"ok": true' in verified.output


def _sealed(key: str, members: list[tuple[str, bytes]], backup_id: str, root: Path) -> None:
    out = bytearray()
    writer = SealingWriter(BackupKey.parse(key), out.extend)
    with tarfile.open(fileobj=writer, mode="w|") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    writer.finish()
    root.mkdir(exist_ok=True)
    (root / object_name(backup_id)).write_bytes(bytes(out))


def test_a_missing_part_is_refused(
    source: dict[str, str], backup_cli: BackupCli, tmp_path: Path
) -> None:
    backup_id = "20261201T030000Z"
    header = parts.BackupHeader(
        id=backup_id,
        created_at="2026-12-01T03:00:00+00:00",
        voicechat_version="0.1.0",
        schema_version=1,
        postgres_major=18,
        pg_dump_major=18,
        database="external",
        storage="local",
    )
    manifest = parts.Manifest(header, [parts.PartRecord(parts.DATABASE, 3, "00" * 32)])
    _sealed(
        source["VOICECHAT_BACKUP_KEY"],
        [(parts.HEADER, header.to_json()), (parts.MANIFEST, manifest.to_json())],
        backup_id,
        tmp_path / "backups",
    )
    _sql(
        source["VOICECHAT_DATABASE_URL"],
        "INSERT INTO users (username, password_hash) VALUES ('after_backup', 'x')",
    )
    line = _refused_restore(source, backup_cli, backup_id)
    assert f"lacks the part {parts.DATABASE}" in line


def test_a_backup_of_a_newer_schema_is_refused(
    source: dict[str, str], backup_cli: BackupCli
) -> None:
    _sql(
        source["VOICECHAT_DATABASE_URL"],
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')",
    )
    assert backup_cli("create", env=source).exit_code == 0
    _sql(
        source["VOICECHAT_DATABASE_URL"],
        "INSERT INTO users (username, password_hash) VALUES ('after_backup', 'x')",
    )
    line = _refused_restore(source, backup_cli, "latest")
    assert "schema 9999" in line
    assert "upgrade voicechat first" in line


def test_another_master_key_is_refused(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    env = {**source, "VOICECHAT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    assert "not the master key of this backup" in _refused_restore(env, backup_cli, "latest")


def test_a_database_in_use_is_refused(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    async def hold_and_restore() -> str:
        conn = await asyncpg.connect(source["VOICECHAT_DATABASE_URL"])
        try:
            return await asyncio.to_thread(_refused_restore, source, backup_cli, "latest")
        finally:
            await conn.close()

    assert "other sessions are connected" in asyncio.run(hold_and_restore())


def test_an_unknown_backup_and_missing_settings_are_refused(
    archive: Path, source: dict[str, str], backup_cli: BackupCli
) -> None:
    assert "no backup 20200101T000000Z" in _refused_restore(source, backup_cli, "20200101T000000Z")
    no_key = {k: v for k, v in source.items() if k != "VOICECHAT_BACKUP_KEY"}
    result = backup_cli("create", env=no_key)
    assert result.exit_code == 1
    assert "VOICECHAT_BACKUP_KEY is not set" in one_line(result)
    no_url = {k: v for k, v in source.items() if k != "VOICECHAT_BACKUP_URL"}
    result = backup_cli("list", env=no_url)
    assert result.exit_code == 1
    assert "VOICECHAT_BACKUP_URL is not set" in one_line(result)
    same = {**source, "VOICECHAT_BACKUP_KEY": source["VOICECHAT_MASTER_KEY"]}
    result = backup_cli("create", env=same)
    assert result.exit_code == 2
    assert "must not be the master key" in one_line(result)


def test_a_database_that_refuses_us_is_one_line(
    source: dict[str, str], backup_cli: BackupCli
) -> None:
    parts_of = urlsplit(source["VOICECHAT_DATABASE_URL"])
    wrong = urlunsplit(
        parts_of._replace(netloc=f"voicechat:wrong@{parts_of.hostname}:{parts_of.port}")
    )
    result = backup_cli("create", env={**source, "VOICECHAT_DATABASE_URL": wrong})
    assert result.exit_code == 1
    assert one_line(result) == (
        "voicechat: the database refused or did not answer (InvalidPasswordError)"
    )
