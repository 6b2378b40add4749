"""Signing in with the application model: password, MFA, stored sessions, logout, SSO, and
the sentences a person sees when it goes wrong."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.client.conftest import ServerEnv, SessionFactory, headless_settings, until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from tests.utils.net import free_port
from tests.utils.oidc import running_provider
from voicechat.sdk import AuthError, ConflictError, RateLimitedError
from voicechat.sdk.app import AppSession, Change, MfaRequired, TokenStore, readable_error


async def test_log_in_resume_from_stored_tokens_and_log_out(
    sessions: SessionFactory, server: LiveServer, home: Path
) -> None:
    first = await sessions("alice")
    await first.close()
    settings = headless_settings(home / "laptop", server.base_url)
    tokens = TokenStore(home / "laptop")

    session = await AppSession.login(
        server.base_url, "alice", DEFAULT_PASSWORD, settings=settings, tokens=tokens
    )
    assert session.me is not None
    assert session.me.username == "alice"
    assert (settings.username, settings.server_url) == ("alice", server.base_url)
    stored = tokens.load(server.base_url)
    assert stored is not None
    assert stored.username == "alice"
    assert DEFAULT_PASSWORD not in tokens.path.read_text()
    await session.close()

    # Next start: no login screen. The stored access token is unusable (say it expired):
    # the session refreshes silently and stores the new pair.
    tokens.save(server.base_url, stored.__class__("not-a-jwt", stored.refresh_token, None, None))
    resumed = await AppSession.resume(settings, tokens=tokens)
    assert resumed is not None
    assert resumed.me is not None
    assert resumed.me.username == "alice"
    renewed = tokens.load(server.base_url)
    assert renewed is not None
    assert renewed.refresh_token != stored.refresh_token
    assert renewed.access_token != "not-a-jwt"

    await resumed.logout()
    assert tokens.load(server.base_url) is None
    assert await AppSession.resume(settings, tokens=tokens) is None
    # The logged-out tokens are dead on the server too.
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        me = await http.get(
            "/users/@me", headers={"Authorization": f"Bearer {renewed.access_token}"}
        )
    assert me.status_code == 401


async def test_mfa_set_up_then_login_with_a_code(
    sessions: SessionFactory, server: LiveServer, home: Path
) -> None:
    carol = await sessions("carol")
    uri, secret = await carol.mfa_setup()
    assert uri.startswith("otpauth://totp/")
    assert secret in uri
    totp = pyotp.TOTP(secret)
    backup_codes = await carol.mfa_enable(totp.now())
    assert len(backup_codes) == 10
    assert carol.me is not None
    assert carol.me.mfa_enabled
    await carol.close()

    settings = headless_settings(home / "carol-2", server.base_url)
    with pytest.raises(MfaRequired) as needed:
        await AppSession.login(server.base_url, "carol", DEFAULT_PASSWORD, settings=settings)
    assert readable_error(needed.value) == "Enter the code from your authenticator app."
    challenge = needed.value.challenge
    with pytest.raises(AuthError) as wrong:
        await AppSession.complete_mfa(challenge, "000000")
    assert readable_error(wrong.value) == (
        "That code is not right, or it was already used. Try the next one."
    )
    # The next time step is accepted (±1 step) and has not been spent by the set-up.
    session = await AppSession.complete_mfa(challenge, totp.at(time.time() + 30))
    assert session.me is not None
    assert session.me.username == "carol"

    await session.mfa_disable(backup_codes[0])
    assert session.me is not None
    assert not session.me.mfa_enabled
    await session.close()
    plain = await AppSession.login(server.base_url, "carol", DEFAULT_PASSWORD, settings=settings)
    await plain.close()


async def test_readable_errors_for_what_goes_wrong_at_login(
    live_server_factory: Callable[..., LiveServer], server_env: ServerEnv, home: Path
) -> None:
    server = await asyncio.to_thread(
        live_server_factory, server_env(VOICECHAT_RATE_LIMIT_LOGIN="2/minute")
    )
    settings = headless_settings(home, server.base_url)
    first = await AppSession.register(server.base_url, "dave", DEFAULT_PASSWORD, settings=settings)
    await first.close()

    for _ in range(2):
        with pytest.raises(AuthError) as wrong:
            await AppSession.login(server.base_url, "dave", "not the password", settings=settings)
        assert readable_error(wrong.value) == "Wrong username or password."
    with pytest.raises(RateLimitedError) as limited:
        await AppSession.login(server.base_url, "dave", "not the password", settings=settings)
    sentence = readable_error(limited.value)
    assert sentence.startswith("Too many attempts. Try again in ")
    assert sentence.endswith(" seconds.")

    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(httpx.ConnectError) as unreachable:
        await AppSession.login(nowhere, "dave", DEFAULT_PASSWORD, settings=settings)
    assert readable_error(unreachable.value, server_url=nowhere) == (
        f"Cannot reach the server at {nowhere}. Check the address and your connection."
    )

    with pytest.raises(ConflictError) as taken:
        await AppSession.register(server.base_url, "dave", DEFAULT_PASSWORD, settings=settings)
    assert readable_error(taken.value) == "That username is taken. Choose another one."


# -- SSO ------------------------------------------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[str]:
    """A running `oidc-provider-mock` on loopback; yields its issuer URL."""
    with running_provider(tmp_path / "oidc-provider.log") as idp:
        yield idp.issuer


@pytest.mark.slow
async def test_sso_through_the_system_browser_and_a_loopback_redirect(
    live_server_factory: Callable[..., LiveServer],
    server_env: ServerEnv,
    provider: str,
    home: Path,
) -> None:
    configured = [
        {
            "id": "corp",
            "name": "Corp SSO",
            "issuer": provider,
            "client_id": "voicechat-corp",
            "client_secret": "secret-of-corp",
        }
    ]
    server = await asyncio.to_thread(
        live_server_factory, server_env(VOICECHAT_OIDC_PROVIDERS=json.dumps(configured))
    )
    async with httpx.AsyncClient(timeout=5) as http:
        registered = await http.put(
            f"{provider}/users/sso-0001",
            json={"preferred_username": "erin", "email": "erin@example.org"},
        )
    assert registered.status_code == 204, registered.text
    providers = await AppSession.sso_providers(server.base_url)
    assert [(p.id, p.name) for p in providers] == [("corp", "Corp SSO")]

    seen: list[str] = []
    pages: list[httpx.Response] = []

    def browser(url: str) -> bool:
        """The system browser: the person submits the provider's form, redirects follow."""
        seen.append(url)

        def run() -> None:
            pages.append(
                httpx.post(url, data={"sub": "sso-0001"}, follow_redirects=True, timeout=10)
            )

        threading.Thread(target=run, daemon=True).start()
        return True

    settings = headless_settings(home, server.base_url)
    tokens = TokenStore(home)
    session = await AppSession.sso(
        server.base_url, "corp", settings=settings, open_browser=browser, timeout=60, tokens=tokens
    )
    try:
        assert seen
        assert seen[0].startswith(provider)
        assert session.me is not None
        assert session.me.username == "erin"
        assert session.state in ("connecting", "online")
        assert tokens.load(server.base_url) is not None
        await until(lambda: pages, "the browser to show the last page")
        assert pages[0].status_code == 200
        assert "You can close this tab" in pages[0].text
        assert str(pages[0].url).startswith("http://127.0.0.1:")
    finally:
        await session.close()


async def test_a_session_ended_elsewhere_sends_the_client_back_to_login(
    sessions: SessionFactory, server: LiveServer, home: Path
) -> None:
    alice = await sessions("alice")
    ended: list[Change] = []
    alice.subscribe(lambda change: ended.append(change) if change.kind == "session_ended" else None)
    await until(lambda: alice.state == "online", "alice online")
    # Signed out from another place (e.g. "log out everywhere"): the server ends the session.
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        out = await http.post(
            "/auth/logout", headers={"Authorization": f"Bearer {alice.client.access_token}"}
        )
    assert out.status_code == 204
    await until(lambda: ended, "the client to notice", within=60)
    assert alice.state == "offline"
    assert alice.error == "Your session has ended. Sign in again."
    assert TokenStore(home / "alice").load(server.base_url) is None
