"""The `voicechat` command as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys

import voicechat
from voicechat.db import load_migrations


def _voicechat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICECHAT_")}
    return subprocess.run(
        [sys.executable, "-m", "voicechat", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_subcommands() -> None:
    result = _voicechat("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "version"):
        assert command in result.stdout


def test_version_names_both_builds() -> None:
    result = _voicechat("version")
    assert result.returncode == 0
    assert f"voicechat {voicechat.__version__}" in result.stdout
    assert f"native    {voicechat.__version__}" in result.stdout


def test_migrate_applies_once_then_nothing(empty_database_url: str) -> None:
    env = {"VOICECHAT_DATABASE_URL": empty_database_url, "VOICECHAT_LOG_FORMAT": "text"}
    migrations = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    first = _voicechat("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"applied: {', '.join(migrations)}" in first.stdout
    assert "postgres  external" in first.stdout
    second = _voicechat("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stdout
    assert f"schema at version {migrations[-1][:4]}" in second.stdout


def test_migrate_against_an_unreachable_database_fails_cleanly() -> None:
    env = {"VOICECHAT_DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none"}
    result = _voicechat("migrate", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr
    assert "database" in result.stderr.lower()
