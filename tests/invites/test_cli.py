"""`voicechat admin invites create|list|revoke` and `voicechat admin audit`, on the test's
database with the server's settings (click's CliRunner, the command's own event loop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.utils.auth import ApiUser
from voicechat.cli import cli
from voicechat.settings import Settings


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    assert settings.database_url is not None
    assert settings.valkey_url is not None
    return {
        "VOICECHAT_DATABASE_URL": settings.database_url.get_secret_value(),
        "VOICECHAT_VALKEY_URL": settings.valkey_url.get_secret_value(),
        "VOICECHAT_DATA_DIR": str(tmp_path / "cli-data"),
        "VOICECHAT_MASTER_KEY": settings.master_key.get_secret_value()
        if settings.master_key
        else "",
    }


async def test_cli_invites_and_audit(
    client: httpx.AsyncClient, admin: ApiUser, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()

    async def admin_cli(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, cli, ["admin", *args], env=cli_env)
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(await admin_cli("invites", "create", "--max-uses", "2", "--json"))
    assert made["max_uses"] == 2
    assert made["created_by"] is None
    preview = (await client.get(f"/invites/{made['code']}")).json()
    assert preview["valid"] is True
    table = await admin_cli("invites", "list")
    assert table.splitlines()[0].split()[:3] == ["CODE", "CREATED", "BY"]
    assert table.splitlines()[1].split()[0] == made["code"]
    await admin_cli("invites", "revoke", made["code"])
    assert (await client.get(f"/invites/{made['code']}")).json()["valid"] is False
    assert json.loads(await admin_cli("invites", "list", "--json")) == []
    revoked = await asyncio.to_thread(
        runner.invoke, cli, ["admin", "invites", "revoke", made["code"]], env=cli_env
    )
    assert revoked.exit_code == 1
    assert "invite_not_found" in revoked.output

    entries = json.loads(await admin_cli("audit", "--action", "invite.create", "--json"))
    assert [e["action"] for e in entries] == ["invite.create"]
    assert entries[0]["actor"] is None
    mine = json.loads(await admin_cli("audit", "--actor", "admin", "--limit", "1", "--json"))
    assert len(mine) == 1
    assert mine[0]["user_id"] == admin.id
    table = await admin_cli("audit", "--limit", "3")
    assert table.splitlines()[0].split()[:3] == ["ID", "TIME", "ACTION"]
