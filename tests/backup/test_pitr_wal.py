"""Archived WAL segments (issue 14 point 4, the part built so far): sealed under the backup
key, idempotent for the same content, refused when altered, renamed or different."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from tests.backup.conftest import BackupCli, one_line
from voicechat.backup.archive import BackupKey, BackupRefused
from voicechat.backup.store import LocalStore
from voicechat.backup.wal import archive_segment, open_segment, wal_object

CLUSTER = 7714997773867763992
NAME = "000000010000000000000002"


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    """A 16 MiB segment, mostly zeros as after a forced switch."""
    path = tmp_path / NAME
    path.write_bytes(os.urandom(100_000) + bytes(16 * 1024 * 1024 - 100_000))
    return path


def test_a_segment_is_archived_sealed_once_and_read_back(tmp_path: Path, segment: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    key = BackupKey.parse(base64.b64encode(os.urandom(32)).decode())
    assert archive_segment(store, key, CLUSTER, segment, NAME) is True
    stored = tmp_path / "backups" / wal_object(CLUSTER, NAME)
    blob = stored.read_bytes()
    assert segment.read_bytes()[:100_000][:64] not in blob
    assert len(blob) < 200_000  # the zero tail is compressed away
    assert open_segment(key, CLUSTER, NAME, blob) == segment.read_bytes()
    # archive_command runs again for the same segment: success, nothing rewritten.
    assert archive_segment(store, key, CLUSTER, segment, NAME) is False
    assert stored.read_bytes() == blob

    other = tmp_path / "other"
    other.write_bytes(os.urandom(1000))
    with pytest.raises(BackupRefused, match="archived already with other content"):
        archive_segment(store, key, CLUSTER, other, NAME)

    tampered = bytearray(blob)
    tampered[len(blob) // 2] ^= 1
    with pytest.raises(BackupRefused, match="damaged, cut short or altered"):
        open_segment(key, CLUSTER, NAME, bytes(tampered))
    with pytest.raises(BackupRefused, match=r"truncated|cut short"):
        open_segment(key, CLUSTER, NAME, blob[:-20])
    with pytest.raises(BackupRefused, match="renamed"):
        open_segment(key, CLUSTER, "000000010000000000000003", blob)
    wrong = BackupKey.parse(base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(BackupRefused, match="wrong backup key"):
        open_segment(wrong, CLUSTER, NAME, blob)
    with pytest.raises(BackupRefused, match="not the name of a WAL file"):
        wal_object(CLUSTER, "../../etc/passwd")


def test_archive_wal_is_an_archive_command(
    tmp_path: Path,
    segment: Path,
    backup_env: dict[str, str],
    backup_cli: BackupCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PostgreSQL runs it in the data directory, whose global/pg_control names the cluster.
    data = tmp_path / "pgdata"
    (data / "global").mkdir(parents=True)
    (data / "global" / "pg_control").write_bytes(CLUSTER.to_bytes(8, sys.byteorder) + bytes(8))
    (data / "pg_wal").mkdir()
    segment.rename(data / "pg_wal" / NAME)
    monkeypatch.chdir(data)
    for _ in range(2):
        done = backup_cli("archive-wal", f"pg_wal/{NAME}", NAME, env=backup_env)
        assert done.exit_code == 0, done.output + done.stderr
    assert (tmp_path / "backups" / wal_object(CLUSTER, NAME)).is_file()
    (data / "pg_wal" / NAME).write_bytes(b"other")
    refused = backup_cli("archive-wal", f"pg_wal/{NAME}", NAME, env=backup_env)
    assert refused.exit_code == 1
    assert "archived already with other content" in one_line(refused)
