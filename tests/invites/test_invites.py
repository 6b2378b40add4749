"""Registration modes and invites (docs/moderation.md, "Registration and invites")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.utils.auth import bearer
from voicechat.api import create_app
from voicechat.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def mode_client(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> Callable[..., AsyncIterator[httpx.AsyncClient]]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_client(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        app: FastAPI = create_app(
            settings_factory(database_url=database_url, valkey_url=clean_valkey, **overrides)
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as h:
                yield h

    return open_client


async def _register(
    http: httpx.AsyncClient, name: str, invite: str | None = None
) -> httpx.Response:
    body: dict[str, object] = {"username": name, "password": PASSWORD}
    if invite is not None:
        body["invite"] = invite
    return await http.post("/auth/register", json=body)


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_invite_mode_is_the_default_first_user_free_then_invites(mode_client) -> None:  # type: ignore[no-untyped-def]
    assert Settings.model_fields["registration"].default == "invite"
    async with mode_client(registration="invite") as http:
        first = await _register(http, "admin")
        assert first.status_code == 201
        assert "administrator" in first.json()["user"]["roles"]
        admin = bearer(first.json()["access_token"])

        refused = await _register(http, "nobody")
        assert refused.status_code == 403
        assert _code(refused) == "invite_required"
        assert _code(await _register(http, "guesser", "not-a-real-code")) == "invite_invalid"

        made = await http.post("/invites", json={"max_uses": 1}, headers=admin)
        assert made.status_code == 201
        code = made.json()["code"]
        assert len(code) >= 10
        preview = await http.get(f"/invites/{code}")
        assert preview.json() == {
            "valid": True,
            "server_name": "voicechat",
            "inviter": {
                "id": first.json()["user"]["id"],
                "username": "admin",
                "display_name": None,
            },
        }
        assert (await _register(http, "invited", code)).status_code == 201
        # Used up: the same refusal as an unknown code, and the preview says so.
        assert _code(await _register(http, "late", code)) == "invite_invalid"
        assert (await http.get(f"/invites/{code}")).json()["valid"] is False
        assert (await http.get("/invites/unknowncode123")).json() == {
            "valid": False,
            "server_name": "voicechat",
            "inviter": None,
        }


async def test_two_registrations_racing_for_the_last_use_one_wins(mode_client) -> None:  # type: ignore[no-untyped-def]
    async with mode_client(registration="invite") as http:
        admin = bearer((await _register(http, "admin")).json()["access_token"])
        code = (await http.post("/invites", json={"max_uses": 1}, headers=admin)).json()["code"]
        results = await asyncio.gather(*(_register(http, f"racer{i}", code) for i in range(4)))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [201, 403, 403, 403]
        assert {_code(r) for r in results if r.status_code == 403} == {"invite_invalid"}
        listed = (await http.get("/invites", headers=admin)).json()
        assert listed[0]["uses"] == 1


async def test_expired_and_revoked_invites_and_roles_granted_on_join(
    mode_client, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    import asyncpg

    async with mode_client(registration="invite") as http:
        admin = bearer((await _register(http, "admin")).json()["access_token"])
        role = await http.post(
            "/roles", json={"name": "guests", "permissions": ["create_invites"]}, headers=admin
        )
        role_id = role.json()["id"]
        with_role = await http.post("/invites", json={"role_ids": [role_id]}, headers=admin)
        joined = await _register(http, "guest", with_role.json()["code"])
        assert joined.status_code == 201
        assert "guests" in joined.json()["user"]["roles"]
        guest = bearer(joined.json()["access_token"])
        # The guest may invite (the role grants create_invites) but not hand out roles.
        own = await http.post("/invites", json={}, headers=guest)
        assert own.status_code == 201
        escalate = await http.post("/invites", json={"role_ids": [role_id]}, headers=guest)
        assert escalate.status_code == 403
        # Listing: the guest sees their own; the admin (manage_server) sees both.
        assert [i["code"] for i in (await http.get("/invites", headers=guest)).json()] == [
            own.json()["code"]
        ]
        assert len((await http.get("/invites", headers=admin)).json()) == 2
        # Revoked: the guest may not revoke the admin's; the admin may revoke the guest's.
        not_theirs = await http.delete(f"/invites/{with_role.json()['code']}", headers=guest)
        assert not_theirs.status_code == 404
        assert (
            await http.delete(f"/invites/{own.json()['code']}", headers=admin)
        ).status_code == 204
        assert _code(await _register(http, "after", own.json()["code"])) == "invite_invalid"

        expiring = (await http.post("/invites", json={"expires_in": 60}, headers=admin)).json()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE invites SET expires_at = now() - interval '1 second' WHERE code = $1",
                expiring["code"],
            )
            events = await conn.fetch("SELECT event FROM audit_log ORDER BY id")
        finally:
            await conn.close()
        assert _code(await _register(http, "toolate", expiring["code"])) == "invite_invalid"
        names = [e["event"] for e in events]
        assert {"invite.create", "invite.use", "invite.revoke"} <= set(names)


async def test_closed_and_open_modes(mode_client) -> None:  # type: ignore[no-untyped-def]
    async with mode_client(registration="closed") as http:
        first = await _register(http, "admin")
        assert first.status_code == 201
        admin = bearer(first.json()["access_token"])
        code = (await http.post("/invites", json={}, headers=admin)).json()["code"]
        for invite in (None, code):
            refused = await _register(http, "someone", invite)
            assert refused.status_code == 403
            assert _code(refused) == "registration_closed"
        assert (await http.get(f"/invites/{code}")).json()["valid"] is False
    async with mode_client(registration="open") as http:
        assert (await _register(http, "anyone")).status_code == 201


async def test_invite_checks_and_registrations_are_limited_per_ip(mode_client) -> None:  # type: ignore[no-untyped-def]
    async with mode_client(
        registration="invite", rate_limit_invite_ip="3/hour", rate_limit_register_ip="3/hour"
    ) as http:
        answers = [(await http.get(f"/invites/guess{i:08d}")).status_code for i in range(5)]
        assert answers == [200, 200, 200, 429, 429]
        registrations = [(await _register(http, f"user{i}")).status_code for i in range(5)]
        assert registrations == [201, 403, 403, 429, 429]


async def test_creating_invites_needs_create_invites(mode_client) -> None:  # type: ignore[no-untyped-def]
    async with mode_client(registration="open") as http:
        await _register(http, "admin")
        member = bearer((await _register(http, "member")).json()["access_token"])
        refused = await http.post("/invites", json={}, headers=member)
        assert refused.status_code == 403
        assert _code(refused) == "missing_permission"
        assert (await http.get("/invites", headers=member)).status_code == 403
