"""An expired reset token, and the forgot-password limits (counted before anything is looked
up, so they answer alike for accounts that exist and those that do not)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.accounts.conftest import SmtpServer, token_of
from tests.utils.auth import register
from voicechat.api import create_app
from voicechat.settings import Settings


async def test_an_expired_reset_token_is_refused_and_limits_hold(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    smtp: SmtpServer,
) -> None:
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        password_reset_ttl_seconds=1,
        rate_limit_password_forgot="2/hour",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await register(http, "frank", email="frank@example.org")
            sent = await http.post("/auth/password/forgot", json={"username": "frank"})
            assert sent.status_code == 202
            (mail,) = await smtp.mailbox.wait_for("frank@example.org")
            await asyncio.sleep(1.5)
            late = await http.post(
                "/auth/password/reset",
                json={"token": token_of(mail), "new_password": "too late password"},
            )
            assert late.status_code == 410
            assert late.json()["error"]["code"] == "account_token_expired"

            # The same limit for a name that exists and one that does not.
            for name in ("frank", "nobody-here"):
                answers = [
                    await http.post("/auth/password/forgot", json={"username": name})
                    for _ in range(3)
                ]
                # frank's first request was the one above.
                expected = [202, 429, 429] if name == "frank" else [202, 202, 429]
                assert [a.status_code for a in answers] == expected
                assert answers[-1].headers["retry-after"]
