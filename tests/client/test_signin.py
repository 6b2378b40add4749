"""Signing in through one path (`SignIn.connect`): a failed step closes its client, a second
factor keeps it open in the challenge, resume forgets a session the server ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.conftest import headless_settings
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import AuthError, Client
from voicechat.sdk.app import TokenStore
from voicechat.sdk.app.signin import MfaRequired, SignIn, normalize_code
from voicechat.sdk.errors import MfaRequired as SdkMfaRequired


def _sign_in(home: Path, server: LiveServer) -> SignIn:
    return SignIn.of(headless_settings(home, server.base_url), TokenStore(home))


async def test_one_connect_path_closes_what_failed_and_keeps_a_challenge(
    home: Path, server: LiveServer
) -> None:
    sign_in = _sign_in(home, server)
    seen: list[Client] = []

    async def refused(client: Client) -> None:
        seen.append(client)
        await client.login("nobody", "wrong")

    with pytest.raises(AuthError):
        await sign_in.connect(server.base_url, refused)
    assert seen[0]._http.is_closed, "a failed sign-in leaves no connection open"

    async def second_factor(client: Client) -> None:
        seen.append(client)
        raise SdkMfaRequired("token")

    with pytest.raises(MfaRequired) as needed:
        await sign_in.connect(server.base_url, second_factor)
    challenge = needed.value.challenge
    assert challenge.client is seen[1]
    assert challenge.sign_in is sign_in
    assert not seen[1]._http.is_closed, "the challenge still needs its client"
    await challenge.cancel()
    assert seen[1]._http.is_closed

    client = await sign_in.register(server.base_url, "alice", DEFAULT_PASSWORD, None)
    try:
        assert client.user is not None
        assert client.user.username == "alice"
        sign_in.keep_tokens(client)
        sign_in.remember_account(client)
        stored = sign_in.tokens.load(server.base_url)
        assert stored is not None
        assert stored.username == "alice"
        assert sign_in.settings.username == "alice"
    finally:
        await client.close()


async def test_resume_gives_a_signed_in_client_or_forgets_an_ended_session(
    home: Path, server: LiveServer
) -> None:
    sign_in = _sign_in(home, server)
    assert await sign_in.resume() is None, "nothing stored: show Login"
    client = await sign_in.register(server.base_url, "bob", DEFAULT_PASSWORD, "Bob")
    sign_in.keep_tokens(client)
    await client.close()

    resumed = await sign_in.resume()
    assert resumed is not None
    assert resumed.user is not None
    assert resumed.user.username == "bob"
    await resumed.logout()
    await resumed.close()
    assert await sign_in.resume() is None
    assert sign_in.tokens.load(server.base_url) is None, "the ended session is forgotten"


def test_codes_are_sent_as_digits_only() -> None:
    assert normalize_code(" 123 456 ") == "123456"
