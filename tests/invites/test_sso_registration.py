"""SSO just-in-time provisioning obeys VOICECHAT_REGISTRATION; a trusted provider skips it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.auth.test_sso import (
    API,
    LOOPBACK,
    _callback,
    _config,
    _log_in_at_provider,
    _login_code,
    providers,  # noqa: F401 (the module's OIDC provider processes, a fixture)
)
from tests.utils.auth import bearer
from tests.utils.oidc import MockProvider
from voicechat.api import create_app
from voicechat.settings import Settings


@pytest.fixture
async def api(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    providers: tuple[MockProvider, ...],  # noqa: F811
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        public_url=API,
        registration="invite",
        oidc_providers=[
            _config("corp", providers[0].issuer),
            _config("staff", providers[1].issuer, trusted=True),
        ],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API) as client:
            yield client


async def _start(api: httpx.AsyncClient, provider: str, invite: str | None = None) -> str:
    body = {"provider": provider, "redirect_uri": LOOPBACK}
    if invite is not None:
        body["invite"] = invite
    response = await api.post("/auth/login", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["authorization_url"])


async def test_sso_sign_up_needs_an_invite_unless_the_provider_is_trusted(
    api: httpx.AsyncClient,
    providers: tuple[MockProvider, ...],  # noqa: F811
) -> None:
    corp, staff = providers
    admin = await api.post("/auth/register", json={"username": "admin", "password": "x" * 12})
    headers = bearer(admin.json()["access_token"])

    corp.put_user("eve-1", {"preferred_username": "eve"})
    refused = await _callback(api, await _log_in_at_provider(await _start(api, "corp"), "eve-1"))
    assert refused.status_code == 302
    query = parse_qs(urlsplit(refused.headers["location"]).query)
    assert query["error"] == ["invite_required"]
    assert "login_code" not in query

    code = (await api.post("/invites", json={"max_uses": 1}, headers=headers)).json()["code"]
    url = await _start(api, "corp", invite=code)
    login_code = _login_code(await _callback(api, await _log_in_at_provider(url, "eve-1")))
    assert (
        await api.post("/auth/oidc/exchange", json={"login_code": login_code})
    ).status_code == 200
    assert (await api.get(f"/invites/{code}")).json()["valid"] is False

    staff.put_user("sam-1", {"preferred_username": "sam"})
    url = await _start(api, "staff")
    assert _login_code(await _callback(api, await _log_in_at_provider(url, "sam-1")))
