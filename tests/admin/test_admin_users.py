"""GET/PATCH /admin/users and `voicechat admin users` (SPEC §3 "Moderation and administration")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from tests.gateway.conftest import make_account, open_gateway, serve_app
from tests.utils.auth import DEFAULT_PASSWORD, ApiUser, api_user
from voicechat.cli import cli
from voicechat.settings import Settings


async def test_list_search_and_page(client: httpx.AsyncClient, admin: ApiUser) -> None:
    for name in ("carol", "dave", "erin"):
        await api_user(client, name)
    first = (await admin.get("/admin/users", params={"limit": 2})).json()
    assert [u["username"] for u in first["users"]] == ["admin", "carol"]
    assert first["users"][0]["administrator"] is True
    second = (await admin.get("/admin/users", params={"limit": 2, "after": first["next"]})).json()
    assert [u["username"] for u in second["users"]] == ["dave", "erin"]
    found = (await admin.get("/admin/users", params={"q": "AV"})).json()
    assert [u["username"] for u in found["users"]] == ["dave"]
    assert found["next"] is None
    # A LIKE wildcard in q is matched literally.
    assert (await admin.get("/admin/users", params={"q": "%"})).json()["users"] == []


async def test_non_administrators_are_refused(client: httpx.AsyncClient, alice: ApiUser) -> None:
    assert (await alice.get("/admin/users")).status_code == 403
    patched = await alice.patch(f"/admin/users/{alice.id}", json={"administrator": True})
    assert patched.status_code == 403
    assert patched.json()["error"]["code"] == "missing_permission"


async def test_promote_demote_and_the_last_administrator(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    last = await admin.patch(f"/admin/users/{admin.id}", json={"administrator": False})
    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_administrator"
    disabling = await admin.patch(f"/admin/users/{admin.id}", json={"disabled": True})
    assert disabling.status_code == 409
    promoted = await admin.patch(f"/admin/users/{alice.id}", json={"administrator": True})
    assert promoted.status_code == 200
    assert promoted.json()["administrator"] is True
    assert (await alice.get("/admin/users")).status_code == 200
    demoted = await alice.patch(f"/admin/users/{admin.id}", json={"administrator": False})
    assert demoted.json()["administrator"] is False
    assert (await admin.get("/admin/users")).status_code == 403
    assert (await admin.patch(f"/admin/users/{alice.id}", json={})).status_code == 403
    again = await alice.patch(f"/admin/users/{alice.id}", json={"administrator": False})
    assert again.json()["error"]["code"] == "last_administrator"


async def test_disabling_closes_the_socket_and_refuses_login(settings: Settings) -> None:
    async with serve_app(settings) as served:
        admin = await make_account(served.http, "admin")
        alice = await make_account(served.http, "alice")
        gateway = await open_gateway(served.ws_url, alice.token)
        response = await served.http.patch(
            f"/admin/users/{alice.id}", json={"disabled": True}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["disabled"] is True
        assert await gateway.close_code(within=5) == 4003
        rest = await served.http.get("/users/@me", headers=alice.headers)
        assert rest.status_code == 401
        login = await served.http.post(
            "/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 403
        assert login.json()["error"]["code"] == "account_disabled"
        enabled = await served.http.patch(
            f"/admin/users/{alice.id}", json={"disabled": False}, headers=admin.headers
        )
        assert enabled.json()["disabled"] is False
        login = await served.http.post(
            "/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 200


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


async def test_cli_users(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()

    async def invoke(*args: str) -> Result:
        # In a thread: the command runs its own event loop, as it does from a shell.
        return await asyncio.to_thread(runner.invoke, cli, ["admin", "users", *args], env=cli_env)

    async def admin_cli(*args: str) -> str:
        result = await invoke(*args)
        assert result.exit_code == 0, result.output
        return result.output

    table = await admin_cli("list")
    assert table.splitlines()[0].split()[:2] == ["USERNAME", "DISPLAY"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["admin", "alice"]
    listed = json.loads(await admin_cli("list", "--json", "-q", "ali"))
    assert [u["username"] for u in listed] == ["alice"]
    shown = json.loads(await admin_cli("show", "alice", "--json"))
    assert shown["id"] == alice.id
    assert shown["disabled"] is False

    assert json.loads(await admin_cli("disable", "alice", "--json"))["disabled"] is True
    assert (await alice.get("/users/@me")).status_code == 401
    login = await client.post(
        "/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    assert login.json()["error"]["code"] == "account_disabled"
    enabled = await admin_cli("enable", alice.id)
    assert [line.split() for line in enabled.splitlines() if line.startswith("disabled")] == [
        ["disabled", "no"]
    ]
    assert json.loads(await admin_cli("promote", "alice", "--json"))["administrator"] is True
    assert json.loads(await admin_cli("demote", "admin", "--json"))["administrator"] is False

    refused = await invoke("demote", "alice")
    assert refused.exit_code == 1
    assert "last_administrator" in refused.output
    missing = await invoke("show", "nobody")
    assert missing.exit_code == 1
    assert "no such user" in missing.output
