"""Attempt-counting limits count before they decide: concurrent attempts cannot race them.

Each test fires its attempts at once and counts what the server did behind the limit through
what a user sees (401 versus 429 answers) and what the audit log recorded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import httpx
import pyotp
import pytest
from redis.asyncio import Redis

from tests.utils.auth import DEFAULT_PASSWORD, ApiUser, bearer, register
from tests.utils.devices import TestDevice
from voicechat.api import create_app
from voicechat.cache import keys
from voicechat.settings import Settings

OpenClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def limited_client(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> OpenClient:
    """An in-process client of an app whose limits the test sets."""

    @asynccontextmanager
    async def open_client(**limits: str) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            settings_factory(database_url=database_url, valkey_url=clean_valkey, **limits)
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("10.1.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client

    return open_client


async def _audit_count(database_url: str, event: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM audit_log WHERE event = $1", event)
        return count
    finally:
        await conn.close()


def _assert_limited(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limited"
        assert int(response.headers["retry-after"]) >= 1


async def test_concurrent_wrong_passwords_get_at_most_the_limit_of_checks(
    limited_client: OpenClient, database_url: str
) -> None:
    async with limited_client(
        rate_limit_login="10/5minutes", rate_limit_login_ip="1000/5minutes"
    ) as client:
        await register(client, "target")
        answers = await asyncio.gather(
            *(
                client.post("/auth/login", json={"username": "target", "password": f"guess-{i}"})
                for i in range(50)
            )
        )
        checked = [a for a in answers if a.status_code == 401]
        assert all(a.json()["error"]["code"] == "invalid_credentials" for a in checked)
        _assert_limited([a for a in answers if a.status_code != 401])
        assert len(checked) == 10
        # Every password check of a wrong guess leaves one audit row: ten, not fifty.
        assert await _audit_count(database_url, "login.failed") == 10
        # The account stays locked for the right password too, until the window moves on.
        right = await client.post(
            "/auth/login", json={"username": "target", "password": DEFAULT_PASSWORD}
        )
        _assert_limited([right])


async def test_successful_logins_do_not_use_up_the_limit(
    limited_client: OpenClient,
) -> None:
    async with limited_client(rate_limit_login="3/5minutes") as client:
        tokens = await register(client, "regular")
        # With MFA on too: the right password forgives, whatever the second step.
        setup = (
            await client.post("/auth/mfa/setup", headers=bearer(tokens["access_token"]))
        ).json()
        code = pyotp.TOTP(setup["secret"]).now()
        confirmed = await client.post(
            "/auth/mfa/verify", headers=bearer(tokens["access_token"]), json={"code": code}
        )
        assert confirmed.status_code == 200, confirmed.text
        for _ in range(3):
            wrong = await client.post(
                "/auth/login", json={"username": "regular", "password": "not it"}
            )
            assert wrong.status_code == 401
            right = await client.post(
                "/auth/login", json={"username": "regular", "password": DEFAULT_PASSWORD}
            )
            assert right.status_code == 200, right.text
            assert right.json()["mfa_required"] is True


async def test_concurrent_registrations_from_one_ip_stop_at_the_limit(
    limited_client: OpenClient,
) -> None:
    async with limited_client(rate_limit_register_ip="5/hour") as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/auth/register", json={"username": f"flood{i}", "password": DEFAULT_PASSWORD}
                )
                for i in range(20)
            )
        )
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 5, 429: 15}
        _assert_limited([a for a in answers if a.status_code == 429])


async def test_concurrent_mfa_codes_get_at_most_the_limit_of_checks(
    limited_client: OpenClient, database_url: str
) -> None:
    # The limit is per account; confirming set-up spends one attempt of the four.
    async with limited_client(
        rate_limit_mfa="4/5minutes", rate_limit_mfa_ip="1000/5minutes"
    ) as client:
        tokens = await register(client, "otp")
        setup = (
            await client.post("/auth/mfa/setup", headers=bearer(tokens["access_token"]))
        ).json()
        totp = pyotp.TOTP(setup["secret"])
        confirmed = await client.post(
            "/auth/mfa/verify", headers=bearer(tokens["access_token"]), json={"code": totp.now()}
        )
        assert confirmed.status_code == 200, confirmed.text
        login = await client.post(
            "/auth/login", json={"username": "otp", "password": DEFAULT_PASSWORD}
        )
        mfa_token = login.json()["mfa_token"]
        answers = await asyncio.gather(
            *(
                client.post("/auth/mfa/verify", json={"mfa_token": mfa_token, "code": f"{i:06d}"})
                for i in range(20)
            )
        )
        checked = [a for a in answers if a.status_code == 401]
        assert [a.json()["error"]["code"] for a in checked] == ["invalid_mfa_code"] * 3
        _assert_limited([a for a in answers if a.status_code != 401])
        assert await _audit_count(database_url, "mfa.failed") == 3


async def test_a_refresh_refused_by_the_account_limit_keeps_its_token(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> None:
    app = create_app(
        settings_factory(
            database_url=database_url, valkey_url=clean_valkey, rate_limit_refresh="2/minute"
        )
    )
    async with app.router.lifespan_context(app):
        home, away = (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://t"
            )
            for ip in ("10.1.0.2", "10.1.0.3")
        )
        tokens = await register(home, "looper")
        token = tokens["refresh_token"]
        for _ in range(2):
            rotated = await home.post("/auth/refresh", json={"refresh_token": token})
            assert rotated.status_code == 200, rotated.text
            token = rotated.json()["refresh_token"]
        # A fresh address, the same account: refused by the account's limit.
        _assert_limited([await away.post("/auth/refresh", json={"refresh_token": token})])
        # Once the window is over (here: its keys dropped), the same token still works: the
        # refusal was decided before the rotation, so no new token was lost with the 429.
        async with Redis.from_url(clean_valkey) as valkey:
            stale = [k async for k in valkey.scan_iter(f"{keys.rate_limit_prefix()}*")]
            assert stale
            await valkey.delete(*stale)
        again = await away.post("/auth/refresh", json={"refresh_token": token})
        assert again.status_code == 200, again.text
        await home.aclose()
        await away.aclose()


async def _upload_keys(user: ApiUser, device: TestDevice, count: int) -> None:
    response = await user.post(
        "/keys/upload",
        json={
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(count),
            "fallback_key": device.fallback_key(),
        },
    )
    assert response.status_code == 200, response.text


async def test_one_user_cannot_drain_anothers_one_time_keys(
    limited_client: OpenClient,
) -> None:
    async with limited_client(rate_limit_key_claims="3/hour") as client:
        await register(client, "keyadmin")
        alice = ApiUser(client, await register(client, "keyalice"))
        mallory = ApiUser(client, await register(client, "keymallory"))
        carol = ApiUser(client, await register(client, "keycarol"))
        device = TestDevice(alice.id)
        await _upload_keys(alice, device, 10)
        body = {"one_time_keys": {alice.id: [device.device_id]}}
        answers = await asyncio.gather(*(mallory.post("/keys/claim", json=body) for _ in range(8)))
        assert Counter(a.status_code for a in answers) == {200: 3, 429: 5}
        _assert_limited([a for a in answers if a.status_code == 429])
        left = await alice.post("/keys/upload", json={})
        assert left.json()["one_time_key_counts"]["signed_curve25519"] == 7
        # Another claimer has a limit of their own: alice stays reachable.
        claimed = await carol.post("/keys/claim", json=body)
        assert claimed.status_code == 200
        assert claimed.json()["one_time_keys"][alice.id][device.device_id]["fallback"] is False
