"""Backup fixtures: a backup key and directory, and the `voicechat backup` command in process."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.files.conftest import s3_server  # noqa: F401 - the moto server fixture
from tests.utils.dirs import service_dir
from voicechat.cli import cli

BackupCli = Callable[..., Result]


@pytest.fixture
def backup_key() -> str:
    """A raw backup key (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def backup_env(tmp_path: Path, backup_key: str) -> dict[str, str]:
    """Settings of a backup directory and key (a test adds its database and storage)."""
    return {
        "VOICECHAT_BACKUP_URL": f"file://{tmp_path / 'backups'}",
        "VOICECHAT_BACKUP_KEY": backup_key,
        "VOICECHAT_LOG_LEVEL": "warning",
        "VOICECHAT_LOG_FORMAT": "text",
        # The restore's health check runs the app in process: an SFU on any free port.
        "VOICECHAT_MEDIA_PORT": "0",
    }


@pytest.fixture
def drill_dir() -> Iterator[Path]:
    """A directory the embedded servers can use (also as root), removed afterwards."""
    path = service_dir("backup")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backup_cli() -> BackupCli:
    """Run `voicechat backup <args>` in this process with `env` as its environment."""

    def run(*args: str, env: dict[str, str]) -> Result:
        # Only the given VOICECHAT_* variables: none of the test process's own leak in.
        cleared: dict[str, str | None] = {
            name: None for name in os.environ if name.startswith("VOICECHAT_")
        }
        return CliRunner().invoke(cli, ["backup", *args], env={**cleared, **env})

    return run


def one_line(result: Result) -> str:
    """The refusal a failed command printed: exactly one line on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]
