"""Retention: `prune` deletes backups past VOICECHAT_BACKUP_RETENTION_DAYS, never the newest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.backup.conftest import BackupCli
from voicechat.backup.store import ID_FORMAT, LocalStore, object_name, prune

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def _made(root: Path, *ages_in_days: float) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for age in ages_in_days:
        backup_id = (NOW - timedelta(days=age)).strftime(ID_FORMAT)
        (root / object_name(backup_id)).write_bytes(b"x" * 10)
        ids.append(backup_id)
    return ids


def test_prune_keeps_the_retention_window(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old, older, kept, newest = _made(tmp_path, 31, 45, 29.9, 1)
    (tmp_path / "notes.txt").write_text("not a backup: left alone")
    deleted = prune(store, 30, NOW)
    assert sorted(b.id for b in deleted) == sorted([old, older])
    assert [b.id for b in store.list()] == [kept, newest]
    assert (tmp_path / "notes.txt").exists()
    # A month later nothing new was made: the newest stays however old it is.
    assert [b.id for b in prune(store, 30, NOW + timedelta(days=60))] == [kept]
    assert [b.id for b in store.list()] == [newest]
    assert prune(store, 30, NOW + timedelta(days=365)) == []


def test_prune_command(tmp_path: Path, backup_cli: BackupCli, backup_env: dict[str, str]) -> None:
    root = tmp_path / "backups"
    ids = _made(root, 4000, 3000, 2000)  # years old by the real clock
    env = {
        **backup_env,
        "VOICECHAT_BACKUP_RETENTION_DAYS": "30",
        "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
    }
    dry = backup_cli("prune", "--dry-run", env=env)
    assert dry.exit_code == 0, dry.stderr
    assert "would delete 2 backups" in dry.output
    assert len(list(root.iterdir())) == 3
    done = backup_cli("prune", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    assert sorted(json.loads(done.output)["deleted"]) == sorted(ids[:2])
    listed = backup_cli("list", env=env)
    assert ids[2] in listed.output
    assert len(listed.output.strip().splitlines()) == 2
