"""The SDK's REST side against the real app: auth, channels, messages, refresh, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from voicechat.sdk import (
    AuthError,
    Client,
    ForbiddenError,
    MfaRequired,
    NotFoundError,
    RateLimitedError,
)

ClientFactory = Callable[[], Client]


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[ClientFactory]:
    clients: list[Client] = []

    def make() -> Client:
        transport = httpx.ASGITransport(app=app)
        client = Client("http://testserver", transport=transport)
        clients.append(client)
        return client

    async with app.router.lifespan_context(app):
        yield make
        for client in clients:
            await client.close()


async def test_a_bot_chats(sdk: ClientFactory) -> None:
    owner, bot = sdk(), sdk()
    me = await owner.register("owner", "owner password", display_name="Owner")
    assert me.roles == ["administrator"]
    await bot.register("bot", "bot password")
    general = await owner.create_channel("general", topic="talk")
    found = await bot.channel_by_name("general")
    assert found.id == general.id
    sent = await bot.send(general.id, "hello from the bot")
    assert sent.author.username == "bot"
    reply = await owner.send(general.id, "hi bot", reply_to=sent.id)
    assert reply.reply_to == sent.id
    edited = await bot.edit(sent.id, "hello (edited)")
    assert edited.edited_at is not None
    page = await owner.messages(general.id, limit=1)
    assert [m.content for m in page.messages] == ["hi bot"]
    assert page.has_more
    everything = [m.content async for m in owner.history(general.id, page_size=1)]
    assert everything == ["hi bot", "hello (edited)"]
    await bot.delete(sent.id)
    assert [m.id async for m in owner.history(general.id)] == [reply.id]


async def test_the_same_nonce_sends_once(sdk: ClientFactory) -> None:
    chat = sdk()
    await chat.register("nonce", "nonce password")
    channel = await chat.create_channel("c")
    first = await chat.send(channel.id, "once", nonce="abc")
    second = await chat.send(channel.id, "once", nonce="abc")
    assert first.id == second.id


async def test_errors_are_typed(sdk: ClientFactory) -> None:
    admin, member = sdk(), sdk()
    await admin.register("admin", "admin password")
    await member.register("member", "member password")
    with pytest.raises(ForbiddenError) as forbidden:
        await member.create_channel("nope")
    assert forbidden.value.code == "missing_permission"
    with pytest.raises(NotFoundError):
        await member.channel("00000000-0000-7000-8000-000000000000")
    with pytest.raises(AuthError):
        await sdk().login("member", "wrong password")


async def test_rate_limit_exposes_retry_after(
    settings_factory: Callable[..., object], database_url: str, clean_valkey: str
) -> None:
    from voicechat.api import create_app

    app = create_app(
        settings_factory(  # type: ignore[arg-type]
            database_url=database_url, valkey_url=clean_valkey, rate_limit_login="2/minute"
        )
    )
    async with app.router.lifespan_context(app):
        client = Client("http://t", transport=httpx.ASGITransport(app=app))
        try:
            await client.register("limited", "limited password")
            for _ in range(2):
                with pytest.raises(AuthError):
                    await client.login("limited", "wrong password")
            with pytest.raises(RateLimitedError) as limited:
                await client.login("limited", "wrong password")
            assert limited.value.retry_after >= 1
        finally:
            await client.close()


async def test_silent_refresh_when_the_access_token_expires(
    sdk: ClientFactory, app: FastAPI
) -> None:
    chat = sdk()
    await chat.register("sleepy", "sleepy password")
    old_refresh = chat.refresh_token
    # Replace the access token with an expired one of the same session.
    import time

    import jwt

    claims = jwt.decode(chat.access_token or "", options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 60
    key = app.state.resources.keys.jwt_private_key
    chat.access_token = jwt.encode(claims, key, algorithm="EdDSA")
    me = await chat.me()
    assert me.username == "sleepy"
    assert chat.refresh_token != old_refresh


async def test_mfa_login(sdk: ClientFactory) -> None:
    import pyotp

    setup_client = sdk()
    await setup_client.register("guarded", "guarded password")
    setup = await setup_client._request("POST", "/auth/mfa/setup")
    totp = pyotp.TOTP(setup["secret"])
    confirmed = await setup_client._request("POST", "/auth/mfa/verify", json={"code": totp.now()})
    chat = sdk()
    with pytest.raises(MfaRequired):
        await chat.login("guarded", "guarded password")
    me = await chat.verify_mfa(confirmed["backup_codes"][0])
    assert me.username == "guarded"
    assert me.mfa_enabled


async def test_logout_ends_the_session(sdk: ClientFactory) -> None:
    chat = sdk()
    await chat.register("leaver", "leaver password")
    token = chat.access_token
    await chat.logout()
    chat.access_token = token
    with pytest.raises(AuthError):
        await chat.me()
