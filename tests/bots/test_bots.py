"""Bot accounts over REST and the gateway (SPEC §3 "Accounts"; docs/accounts.md "Bots")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.gateway.conftest import GatewayClient, make_account, serve_app
from tests.utils.auth import ApiUser, api_user
from voicechat.settings import Settings


def bot_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bot {token}"}


async def grant_manage_bots(admin: ApiUser, user: ApiUser) -> None:
    role = await admin.post("/roles", json={"name": "bot makers", "permissions": ["manage_bots"]})
    assert role.status_code == 201, role.text
    assigned = await admin.put(f"/users/{user.id}/roles/{role.json()['id']}")
    assert assigned.status_code == 204, assigned.text


async def make_bot(owner: ApiUser, username: str = "helper-bot") -> dict[str, Any]:
    response = await owner.post("/bots", json={"username": username, "display_name": "Helper"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit_events(client: httpx.AsyncClient, settings: Settings) -> list[str]:
    import asyncpg

    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return [r["event"] for r in await conn.fetch("SELECT event FROM audit_log ORDER BY id")]
    finally:
        await conn.close()


async def test_bot_lifecycle_with_manage_bots(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser, settings: Settings
) -> None:
    refused = await alice.post("/bots", json={"username": "nope-bot"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_permission"
    await grant_manage_bots(admin, alice)

    made = await make_bot(alice)
    bot, token = made["bot"], made["token"]
    assert token.startswith("vcb_")
    assert len(token) >= 47
    assert bot["bot"] is True
    assert bot["owner_id"] == alice.id
    assert bot["token"] is not None

    # The token works on any authenticated route; the profile says bot.
    me = await client.get("/users/@me", headers=bot_headers(token))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "helper-bot"
    assert me.json()["auth_method"] == "bot"
    profile = await alice.get(f"/users/{bot['id']}")
    assert profile.json()["bot"] is True

    # Listing: the owner sees theirs, with the token's last use; the admin sees all; bob none.
    listed = (await alice.get("/bots")).json()
    assert [b["id"] for b in listed] == [bot["id"]]
    assert "token" not in str(listed[0]["token"].keys() - {"id", "created_at", "last_used_at"})
    assert [b["id"] for b in (await admin.get("/bots")).json()] == [bot["id"]]
    assert (await bob.get("/bots")).status_code == 403
    # Another user's bot is not found, even for a user with manage_bots.
    await grant_manage_bots_again(admin, bob)
    assert (await bob.post(f"/bots/{bot['id']}/token")).status_code == 404

    # A new token: the old one is refused at once.
    rotated = await alice.post(f"/bots/{bot['id']}/token")
    assert rotated.status_code == 201, rotated.text
    new_token = rotated.json()["token"]
    old = await client.get("/users/@me", headers=bot_headers(token))
    assert old.status_code == 401
    assert old.json()["error"]["code"] == "invalid_bot_token"
    assert (await client.get("/users/@me", headers=bot_headers(new_token))).status_code == 200

    # Deleting the bot kills its token too.
    deleted = await alice.delete(f"/bots/{bot['id']}")
    assert deleted.status_code == 204
    gone = await client.get("/users/@me", headers=bot_headers(new_token))
    assert gone.status_code == 401
    assert (await alice.delete(f"/bots/{bot['id']}")).status_code == 404

    events = await audit_events(client, settings)
    assert events.count("bot.create") == 1
    assert events.count("bot.token_create") == 2
    assert events.count("bot.delete") == 1


async def grant_manage_bots_again(admin: ApiUser, user: ApiUser) -> None:
    roles = (await admin.get("/roles")).json()
    role = next(r for r in roles if r["name"] == "bot makers")
    assert (await admin.put(f"/users/{user.id}/roles/{role['id']}")).status_code == 204


async def test_a_bot_cannot_log_in_set_up_mfa_or_make_bots(
    client: httpx.AsyncClient, admin: ApiUser
) -> None:
    made = await make_bot(admin, "lonely-bot")
    headers = bot_headers(made["token"])
    login = await client.post(
        "/auth/login", json={"username": "lonely-bot", "password": "whatever it is"}
    )
    assert login.status_code == 403
    assert login.json()["error"]["code"] == "not_for_bots"
    mfa = await client.post("/auth/mfa/setup", headers=headers)
    assert mfa.status_code == 403
    assert mfa.json()["error"]["code"] == "not_for_bots"
    nested = await client.post("/bots", json={"username": "child-bot"}, headers=headers)
    assert nested.status_code == 403
    assert nested.json()["error"]["code"] == "not_for_bots"


async def test_a_bot_obeys_permissions(client: httpx.AsyncClient, admin: ApiUser) -> None:
    made = await make_bot(admin, "plain-bot")
    # A bot holds only the default role's permissions: no channel creation.
    refused = await client.post(
        "/channels", json={"type": "text", "name": "x"}, headers=bot_headers(made["token"])
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_permission"


async def test_unknown_bot_tokens_are_limited_per_ip(
    settings_factory: Any, database_url: str, clean_valkey: str
) -> None:
    from voicechat.api import create_app

    settings = settings_factory(
        database_url=database_url, valkey_url=clean_valkey, rate_limit_bot_token_ip="3/minute"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            statuses = [
                (await http.get("/users/@me", headers=bot_headers(f"vcb_guess{i}"))).status_code
                for i in range(5)
            ]
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.parametrize("rotate", [True, False])
async def test_bot_socket_closes_when_its_token_dies(settings: Settings, rotate: bool) -> None:
    async with serve_app(settings) as served:
        owner = await make_account(served.http, "owner")
        made = (
            await served.http.post("/bots", json={"username": "socket-bot"}, headers=owner.headers)
        ).json()
        ws = await connect(served.ws_url)
        gateway = GatewayClient(ws)
        answer = await gateway.request("auth", {"token": f"Bot {made['token']}"})
        assert "result" in answer, answer
        assert answer["result"]["user"]["id"] == made["bot"]["id"]
        if rotate:
            response = await served.http.post(
                f"/bots/{made['bot']['id']}/token", headers=owner.headers
            )
            assert response.status_code == 201
        else:
            response = await served.http.delete(f"/bots/{made['bot']['id']}", headers=owner.headers)
            assert response.status_code == 204
        assert await gateway.close_code(within=5) == 4003
        # And a dead token is refused at auth.
        ws2 = await connect(served.ws_url)
        refused = await GatewayClient(ws2).request("auth", {"token": f"Bot {made['token']}"})
        assert refused["error"]["data"]["code"] == "invalid_bot_token"
        await ws2.close()


async def test_bot_rate_limits_are_per_bot(
    settings_factory: Any, database_url: str, clean_valkey: str
) -> None:
    settings = settings_factory(
        database_url=database_url, valkey_url=clean_valkey, rate_limit_gateway_user="2/minute"
    )
    async with serve_app(settings) as served:
        owner = await make_account(served.http, "owner")
        tokens = [
            (
                await served.http.post("/bots", json={"username": name}, headers=owner.headers)
            ).json()["token"]
            for name in ("first-bot", "second-bot")
        ]
        answers = []
        for token in [tokens[0]] * 3 + [tokens[1]]:
            ws = await connect(served.ws_url)
            answers.append(await GatewayClient(ws).request("auth", {"token": f"Bot {token}"}))
            await ws.close()
    assert ["result" in a for a in answers] == [True, True, False, True]


async def test_admin_bot_created_by_helper(client: httpx.AsyncClient) -> None:
    # The first user of a server is its administrator and may make bots at once.
    owner = await api_user(client, "first")
    assert (await owner.post("/bots", json={"username": "first-bot"})).status_code == 201
