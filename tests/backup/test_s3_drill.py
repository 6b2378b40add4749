"""The drill against S3 and an external PostgreSQL: files in one bucket, backups in another,
restored onto a new empty database and a new empty bucket."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

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
from tests.files.conftest import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, S3Server


def _bucket(server: S3Server) -> str:
    name = f"voicechat-{uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def test_s3_drill_onto_a_new_database_and_bucket(
    live_server_factory: Callable[..., LiveServer],
    s3_server: S3Server,
    database_url: str,
    empty_database_url: str,
    clean_valkey: str,
    tmp_path: Path,
    backup_env: dict[str, str],
    backup_cli: BackupCli,
) -> None:
    s3 = {
        "VOICECHAT_S3_ENDPOINT_URL": s3_server.endpoint,
        "VOICECHAT_S3_REGION": S3_REGION,
        "VOICECHAT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "VOICECHAT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }
    backups = _bucket(s3_server)
    master_key = base64.b64encode(os.urandom(32)).decode()
    common = {
        **backup_env,
        **s3,
        "VOICECHAT_BACKUP_URL": f"s3://{backups}/nightly",
        "VOICECHAT_MASTER_KEY": master_key,
        "VOICECHAT_VALKEY_URL": clean_valkey,
    }
    files = _bucket(s3_server)
    source = {
        **common,
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_STORAGE_URL": f"s3://{files}/uploads",
        "VOICECHAT_DATA_DIR": str(tmp_path / "source"),
    }
    first = live_server_factory(source)
    with httpx.Client(base_url=first.base_url, timeout=30) as http:
        made = build_community(http)
        before = read_back(http, made, sign_in_again=False)
    created = backup_cli("create", env=source)
    assert created.exit_code == 0, created.output + created.stderr
    listed = backup_cli("list", "--json", env=source)
    assert listed.exit_code == 0, listed.stderr
    client = s3_server.client()
    names = [item["Key"] for item in client.list_objects_v2(Bucket=backups)["Contents"]]
    assert len(names) == 1
    assert names[0].startswith("nightly/voicechat-backup-")
    archive = client.get_object(Bucket=backups, Key=names[0])["Body"].read()
    for plaintext in (SECRET_MESSAGE.encode(), FILE_MARKER, master_key.encode()):
        assert plaintext not in archive
    first.stop()

    # A new machine: an empty database, an empty bucket, an empty data dir; the operator kept
    # the master key and the backup key (docs/backup.md).
    target = {
        **common,
        "VOICECHAT_DATABASE_URL": empty_database_url,
        "VOICECHAT_STORAGE_URL": f"s3://{_bucket(s3_server)}/restored",
        "VOICECHAT_DATA_DIR": str(tmp_path / "target"),
    }
    restored = backup_cli("restore", "latest", env=target)
    assert restored.exit_code == 0, restored.output + restored.stderr
    assert "health: ok" in restored.output
    second = live_server_factory(target)
    with httpx.Client(base_url=second.base_url, timeout=30) as http:
        after = read_back(http, made, sign_in_again=True)
    assert not differences(before, after)


def test_a_missing_backup_bucket_is_one_line(
    s3_server: S3Server,
    database_url: str,
    tmp_path: Path,
    backup_env: dict[str, str],
    backup_cli: BackupCli,
) -> None:
    env = {
        **backup_env,
        "VOICECHAT_S3_ENDPOINT_URL": s3_server.endpoint,
        "VOICECHAT_S3_REGION": S3_REGION,
        "VOICECHAT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "VOICECHAT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "VOICECHAT_BACKUP_URL": "s3://no-such-bucket/nightly",
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
    }
    for command in (("create",), ("list",), ("restore", "latest")):
        result = backup_cli(*command, env=env)
        assert result.exit_code == 1, result.output
        assert one_line(result) == "voicechat: the S3 server refused the request (NoSuchBucket)"
    # Refused before anything was made: no keys, no staging directory.
    assert not (tmp_path / "data").exists()


def test_a_local_backup_restores_into_a_bucket(
    s3_server: S3Server,
    database_url: str,
    empty_database_url: str,
    clean_valkey: str,
    tmp_path: Path,
    backup_env: dict[str, str],
    backup_cli: BackupCli,
    live_server_factory: Callable[..., LiveServer],
) -> None:
    master_key = base64.b64encode(os.urandom(32)).decode()
    common = {
        **backup_env,
        "VOICECHAT_MASTER_KEY": master_key,
        "VOICECHAT_VALKEY_URL": clean_valkey,
    }
    local = {
        **common,
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_STORAGE_URL": f"file://{tmp_path / 'files'}",
        "VOICECHAT_DATA_DIR": str(tmp_path / "source"),
    }
    server = live_server_factory(local)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        made = build_community(http)
        before = read_back(http, made, sign_in_again=False)
    assert backup_cli("create", env=local).exit_code == 0
    server.stop()
    bucket = _bucket(s3_server)
    moved = {
        **common,
        "VOICECHAT_S3_ENDPOINT_URL": s3_server.endpoint,
        "VOICECHAT_S3_REGION": S3_REGION,
        "VOICECHAT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "VOICECHAT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "VOICECHAT_DATABASE_URL": empty_database_url,
        "VOICECHAT_STORAGE_URL": f"s3://{bucket}/moved",
        "VOICECHAT_DATA_DIR": str(tmp_path / "target"),
    }
    restored = backup_cli("restore", "latest", env=moved)
    assert restored.exit_code == 0, restored.output + restored.stderr
    names = [i["Key"] for i in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(names) == len(made.file_bytes)
    second = live_server_factory(moved)
    with httpx.Client(base_url=second.base_url, timeout=30) as http:
        after = read_back(http, made, sign_in_again=True)
    assert not differences(before, after)
