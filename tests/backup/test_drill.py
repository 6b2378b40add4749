"""The disaster drill: a live community, backed up while it runs, its data dir destroyed,
restored into an empty one, and everything reads back the same."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.backup.community import (
    FILE_MARKER,
    SECRET_MESSAGE,
    build_community,
    differences,
    read_back,
)
from tests.backup.conftest import BackupCli, one_line
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD


def test_embedded_drill_backup_destroy_restore(
    live_server_factory: Callable[..., LiveServer],
    clean_valkey: str,
    tmp_path: Path,
    backup_env: dict[str, str],
    backup_cli: BackupCli,
    drill_dir: Path,
) -> None:
    # Under /tmp: as root the embedded PostgreSQL's user must reach it (tests/utils/dirs.py).
    data_dir = drill_dir / "data"
    env = {**backup_env, "VOICECHAT_DATA_DIR": str(data_dir), "VOICECHAT_VALKEY_URL": clean_valkey}
    first = live_server_factory(env)
    with httpx.Client(base_url=first.base_url, timeout=30) as http:
        made = build_community(http)
        before = read_back(http, made, sign_in_again=False)
    assert all(body.startswith("200:") for body in before["bob"]["files"].values())
    assert sum(len(page["messages"]) for page in before["alice"]["pages"]["general"]) == 26

    # Online: the backup reads the embedded PostgreSQL the running server manages.
    created = backup_cli("create", "--json", env=env)
    assert created.exit_code == 0, created.output + created.stderr
    archive = next((tmp_path / "backups").iterdir()).read_bytes()
    for plaintext in (
        SECRET_MESSAGE.encode(),
        FILE_MARKER,
        DEFAULT_PASSWORD.encode(),
        made.totp["alice"].encode(),
        (data_dir / "secrets" / "master.key").read_bytes().strip(),
        (data_dir / "secrets" / "jwt_ed25519.pem").read_bytes()[40:80],
    ):
        assert plaintext not in archive

    refused = backup_cli("restore", "latest", env=env)
    assert refused.exit_code == 1
    assert "is running on" in one_line(refused)
    assert httpx.get(f"{first.base_url}/health").json()["status"] == "ok"

    # Over live data: restore stops the server, restores over the existing database.
    over = backup_cli("restore", "latest", "--stop", env=env)
    assert over.exit_code == 0, over.output + over.stderr
    assert "health: ok" in over.output
    assert first.process.wait(30) is not None

    # The disk is lost: an empty data dir.
    shutil.rmtree(data_dir)
    restored = backup_cli("restore", "latest", env=env)
    assert restored.exit_code == 0, restored.output + restored.stderr
    steps = [line for line in restored.output.splitlines() if line.startswith("  [")]
    assert [step.split("] ")[1].split(" ")[0] for step in steps] == [
        "fetched,",
        "restored",
        "restored",
        "restored",
        "health",
    ]
    assert "health: ok" in restored.output

    second = live_server_factory(env)
    with httpx.Client(base_url=second.base_url, timeout=30) as http:
        after = read_back(http, made, sign_in_again=True)
    assert not differences(before, after)
