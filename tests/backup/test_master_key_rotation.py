"""`voicechat admin rotate-master-key`: files and MFA stay readable before, during and after a
rotation, an interrupted rotation goes on where it stopped, and once the old key is gone it is
refused (a clear 503, never a 500).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pyotp
from click.testing import CliRunner, Result

from tests.backup.conftest import BackupCli, one_line
from tests.conftest import LiveServer
from tests.files.conftest import PNG, S3Server, s3_settings
from tests.utils.auth import DEFAULT_PASSWORD, bearer
from voicechat.api.app import create_app
from voicechat.auth.mfa_keys import backup_code_key, open_mfa_secret
from voicechat.cli import cli
from voicechat.crypto import derive_key, seal
from voicechat.db.pool import dedicated_connection
from voicechat.db.repositories import MfaRepository
from voicechat.key_rotation import key_status, rotate
from voicechat.server_keys import MasterKeys
from voicechat.settings import Settings
from voicechat.storage.sealed import new_object_key, unwrap_object_key, wrap_object_key


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in process (its lifespan running) for one key configuration."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _rotate(*args: str, env: dict[str, str]) -> Result:
    """The command, in a thread of its own (it runs its own event loop)."""
    cleared: dict[str, str | None] = {n: None for n in os.environ if n.startswith("VOICECHAT_")}
    return await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["admin", "rotate-master-key", *args],
        env={**cleared, **env},
        catch_exceptions=False,
    )


def _env(settings: dict[str, object]) -> dict[str, str]:
    return {f"VOICECHAT_{name.upper()}": str(value) for name, value in settings.items()}


class People:
    """Users made over HTTP: their tokens, TOTP secrets, backup codes and files."""

    def __init__(self) -> None:
        self.auth: dict[str, dict[str, str]] = {}
        self.totp: dict[str, str] = {}
        self.backup_codes: dict[str, list[str]] = {}
        self.files: dict[str, bytes] = {}
        # The last TOTP step each user spent (a code is never accepted twice).
        self.steps: dict[str, int] = {}

    async def register(self, http: httpx.AsyncClient, name: str, *, mfa: bool = False) -> None:
        body = _ok(
            await http.post(
                "/auth/register", json={"username": name, "password": DEFAULT_PASSWORD}
            ),
            201,
        )
        self.auth[name] = bearer(body["access_token"])
        if mfa:
            secret = _ok(await http.post("/auth/mfa/setup", headers=self.auth[name]))["secret"]
            self.totp[name] = secret
            step = int(time.time() // 30)
            enabled = _ok(
                await http.post(
                    "/auth/mfa/verify",
                    headers=self.auth[name],
                    json={"code": pyotp.TOTP(secret).at(step * 30)},
                )
            )
            self.steps[name] = step
            self.backup_codes[name] = enabled["backup_codes"]

    async def upload(
        self, http: httpx.AsyncClient, name: str, content: bytes, filename: str
    ) -> str:
        kind = "image/png" if filename.endswith(".png") else "application/octet-stream"
        body = _ok(
            await http.post(
                "/upload", headers=self.auth[name], files={"file": (filename, content, kind)}
            ),
            201,
        )
        self.files[body["id"]] = content
        return str(body["id"])

    async def read_files(self, http: httpx.AsyncClient, name: str) -> None:
        for file_id, content in self.files.items():
            response = await http.get(f"/files/{file_id}", headers=self.auth[name])
            assert response.status_code == 200, response.text
            assert response.content == content

    async def mfa_login(
        self, http: httpx.AsyncClient, name: str, *, backup_code: bool = False
    ) -> int:
        """Password then TOTP (the next unspent step) or a backup code; the final status."""
        body = _ok(
            await http.post("/auth/login", json={"username": name, "password": DEFAULT_PASSWORD})
        )
        assert body["mfa_required"] is True
        if backup_code:
            code = self.backup_codes[name].pop()
        else:
            step = self.steps[name] + 1
            code = pyotp.TOTP(self.totp[name]).at(step * 30)
        response = await http.post(
            "/auth/mfa/verify", json={"mfa_token": body["mfa_token"], "code": code}
        )
        if response.status_code == 200 and not backup_code:
            self.steps[name] = step
        return response.status_code


class _Lines(logging.Handler):
    """The messages logged to one logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _refused(response: httpx.Response) -> None:
    """What a read of a value under a master key no longer configured answers."""
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "master_key_unavailable"
    assert response.headers["Retry-After"]


async def test_rotation_with_live_reads_resumes_and_refuses_the_old_key(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    backup_cli: BackupCli,
    backup_env: dict[str, str],
) -> None:
    old, new = _key(), _key()
    common: dict[str, object] = {
        "database_url": database_url,
        "valkey_url": clean_valkey,
        "data_dir": tmp_path / "data",
        "storage_url": f"file://{tmp_path / 'objects'}",
    }
    people = People()
    # Before: everything sealed under the old key.
    async with _app(settings_factory(**common, master_key=old)) as http:
        await people.register(http, "admin")
        await people.register(http, "alice", mfa=True)
        await people.register(http, "carol", mfa=True)
        await people.upload(http, "alice", b"small words", "a.txt")
        await people.upload(http, "alice", os.urandom(200_000), "big.bin")
        await people.upload(http, "alice", PNG, "me.png")
    made = await asyncio.to_thread(
        backup_cli, "create", env={**backup_env, **_env({**common, "master_key": old})}
    )
    assert made.exit_code == 0, made.output

    rotating = {**common, "master_key": new, "master_key_previous": old}
    server = live_server_factory(_env(rotating))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as live:
        # Both keys configured: what the old key sealed still opens; new files use the new key.
        await people.read_files(live, "alice")
        after_backup = await people.upload(live, "alice", os.urandom(70_000), "after.bin")

        # An interrupted rotation: two values re-sealed (the backup codes' key, one file key).
        partial = await _rotate("--limit", "2", "--batch-size", "1", "--json", env=_env(rotating))
        assert partial.exit_code == 0, partial.output
        summary = json.loads(partial.stdout)
        assert summary["stopped_at_limit"] is True
        assert summary["resealed"]["server_secrets"] == 1
        assert summary["status"]["counts"]["file_keys"] == {"current": 2, "previous": 2}
        assert summary["status"]["counts"]["mfa_secrets"] == {"previous": 2}
        # During: every file and TOTP still work on the live server.
        await people.read_files(live, "alice")
        assert await people.mfa_login(live, "alice") == 200

        # The previous key removed too early: what it still seals is refused, clearly.
        # (Its own handler: the in-process backup command reconfigured the root logger.)
        warnings = _Lines()
        logging.getLogger("voicechat.key_rotation").addHandler(warnings)
        async with _app(settings_factory(**common, master_key=new)) as too_early:
            statuses = {
                file_id: await too_early.get(f"/files/{file_id}", headers=people.auth["alice"])
                for file_id in list(people.files)
            }
            assert sorted(r.status_code for r in statuses.values()) == [200, 200, 503, 503]
            for response in statuses.values():
                if response.status_code == 503:
                    _refused(response)
            body = _ok(
                await too_early.post(
                    "/auth/login", json={"username": "carol", "password": DEFAULT_PASSWORD}
                )
            )
            _refused(
                await too_early.post(
                    "/auth/mfa/verify", json={"mfa_token": body["mfa_token"], "code": "123456"}
                )
            )
        assert "2 file keys are sealed under master key" in warnings.text
        assert "2 mfa secrets are sealed under master key" in warnings.text

        # Resumed: it goes on with the rest and says it is complete.
        rest = await _rotate(env=_env(rotating))
        assert rest.exit_code == 0, rest.output
        assert "re-sealed under master key" in rest.stdout
        assert "2 file keys, 2 MFA secrets" in rest.stdout
        assert "complete: nothing is left under another master key" in rest.stdout
        status = await _rotate("--status", "--json", env=_env(rotating))
        assert status.exit_code == 0
        assert json.loads(status.stdout)["counts"] == {
            "server_secrets": {"current": 1},
            "file_keys": {"current": 4},
            "mfa_secrets": {"current": 2},
        }
        await people.read_files(live, "alice")
    server.stop()

    # After, without the previous key: everything reads; TOTP and backup codes work.
    async with _app(settings_factory(**common, master_key=new)) as after:
        await people.read_files(after, "alice")
        assert await people.mfa_login(after, "carol") == 200
        assert await people.mfa_login(after, "alice", backup_code=True) == 200

    # The old key alone is refused for every file and MFA secret.
    async with _app(settings_factory(**common, master_key=old)) as stale:
        for file_id in people.files:
            _refused(await stale.get(f"/files/{file_id}", headers=people.auth["alice"]))
        body = _ok(
            await stale.post(
                "/auth/login", json={"username": "carol", "password": DEFAULT_PASSWORD}
            )
        )
        _refused(
            await stale.post(
                "/auth/mfa/verify", json={"mfa_token": body["mfa_token"], "code": "123456"}
            )
        )

    # A backup made before the rotation: refused under the new key alone; restorable with the
    # key of then as the previous one, and a second rotation brings it under the new key.
    restore_env = {**backup_env, **_env(common)}
    refused = await asyncio.to_thread(
        backup_cli, "restore", "latest", env={**restore_env, "VOICECHAT_MASTER_KEY": new}
    )
    assert refused.exit_code == 1
    assert "is not the master key of this backup" in one_line(refused)
    both = {**restore_env, "VOICECHAT_MASTER_KEY": new, "VOICECHAT_MASTER_KEY_PREVIOUS": old}
    restored = await asyncio.to_thread(backup_cli, "restore", "latest", env=both)
    assert restored.exit_code == 0, restored.output
    people.files.pop(after_backup)
    again = await _rotate(env=_env(rotating))
    assert again.exit_code == 0, again.output
    assert "1 server secrets, 3 file keys, 2 MFA secrets" in again.stdout
    async with _app(settings_factory(**common, master_key=new)) as after_restore:
        await people.read_files(after_restore, "alice")
        assert await people.mfa_login(after_restore, "carol", backup_code=True) == 200


async def test_development_rotation_on_s3_while_the_server_runs(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    bucket = f"rotation-{os.urandom(4).hex()}"
    s3_server.client().create_bucket(Bucket=bucket)
    data_dir = tmp_path / "data"
    common: dict[str, object] = {
        "database_url": database_url,
        "valkey_url": clean_valkey,
        "data_dir": data_dir,
        **s3_settings(s3_server, bucket),
    }
    people = People()
    # Development keeps its master key in the data dir (no VOICECHAT_MASTER_KEY).
    async with _app(settings_factory(**common, master_key=None)) as http:
        await people.register(http, "admin")
        await people.register(http, "dave", mfa=True)
        await people.upload(http, "dave", os.urandom(150_000), "one.bin")
        await people.upload(http, "dave", b"two", "two.txt")
        old = (data_dir / "secrets" / "master.key").read_text().strip()

        done = await _rotate("--new-key", env=_env(common))
        assert done.exit_code == 0, done.output
        assert "2 file keys, 1 MFA secrets" in done.stdout
        assert (data_dir / "secrets" / "master.key.previous").read_text().strip() == old
        assert (data_dir / "secrets" / "master.key").read_text().strip() != old
        # The running server picks up the new key files when it meets the new key id.
        await people.read_files(http, "dave")
        assert await people.mfa_login(http, "dave") == 200
        await people.upload(http, "dave", b"three", "three.txt")

    status = await _rotate("--status", env=_env(common))
    assert status.exit_code == 0, status.output
    assert "file keys       3 current" in status.stdout
    forgot = await _rotate("--forget-previous", env=_env(common))
    assert forgot.exit_code == 0, forgot.output
    assert not (data_dir / "secrets" / "master.key.previous").exists()
    async with _app(settings_factory(**common, master_key=None)) as after:
        await people.read_files(after, "dave")
        assert await people.mfa_login(after, "dave", backup_code=True) == 200
    async with _app(settings_factory(**common, master_key=old)) as stale:
        for file_id in people.files:
            _refused(await stale.get(f"/files/{file_id}", headers=people.auth["dave"]))


async def test_rows_sealed_before_key_ids_and_rows_held_by_others(database_url: str) -> None:
    """Values from before migration 0005 (no key id) open and are re-sealed; a row another
    transaction holds is left for the next run, which finishes the job."""
    old_key, new_key = os.urandom(32), os.urandom(32)
    rotating = MasterKeys(new_key, old_key)
    legacy_file, held_file, user_id = uuid4(), uuid4(), uuid4()
    object_key = new_object_key()
    async with (
        dedicated_connection(database_url) as conn,
        dedicated_connection(database_url) as other,
    ):
        # As 0001-0004 sealed them: the subkey of the old key, no key id anywhere.
        legacy_wrapped = seal(
            derive_key(old_key, "file-object-keys"),
            object_key,
            context=b"file:" + legacy_file.bytes,
        )
        secret = seal(derive_key(old_key, "mfa-secret"), b"JBSWY3DPEHPK3PXP", context=user_id.bytes)
        await conn.execute(
            "INSERT INTO users (id, username, password_hash, mfa_secret, mfa_enabled) "
            "VALUES ($1, 'legacy', 'x', $2, true)",
            user_id,
            secret,
        )
        held_id, held_wrapped = wrap_object_key(MasterKeys(old_key), held_file, new_object_key())
        await conn.executemany(
            "INSERT INTO files (id, filename, mime_type, size_bytes, s3_key, wrapped_key, "
            "master_key_id) VALUES ($1, 'f', 'text/plain', 1, $2, $3, $4)",
            [
                (legacy_file, str(legacy_file), legacy_wrapped, None),
                (held_file, str(held_file), held_wrapped, held_id),
            ],
        )
        status = await key_status(conn, rotating)
        assert status.counts["file_keys"] == {"unrecorded": 1, "previous": 1}
        assert status.counts["mfa_secrets"] == {"unrecorded": 1}

        async with other.transaction():
            await other.execute("SELECT 1 FROM files WHERE id = $1 FOR UPDATE", held_file)
            first = await rotate(conn, rotating, batch_size=1)
        # The backup codes' key is created first, sealed under the new key, with the value the
        # old digests were made with.
        assert first.resealed == {"server_secrets": 0, "file_keys": 1, "mfa_secrets": 1}
        assert first.status is not None
        assert first.status.counts["file_keys"] == {"current": 1, "previous": 1}
        second = await rotate(conn, rotating)
        assert second.status is not None
        assert second.status.left == 0

        record = await conn.fetchrow(
            "SELECT wrapped_key, master_key_id FROM files WHERE id = $1", legacy_file
        )
        assert record["master_key_id"] == rotating.current_id
        new_only = MasterKeys(new_key)
        assert (
            unwrap_object_key(
                new_only, legacy_file, record["wrapped_key"], key_id=record["master_key_id"]
            )
            == object_key
        )
        sealed, key_id = await MfaRepository(conn).sealed_secret(user_id)
        assert sealed is not None
        assert open_mfa_secret(new_only, user_id, sealed, key_id) == "JBSWY3DPEHPK3PXP"
        assert await backup_code_key(conn, new_only) == derive_key(old_key, "mfa-backup-code")
