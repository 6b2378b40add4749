"""Signing in: password, registration, the second factor, single sign-on, and resuming a stored
session, each of them one authentication step through one connect-and-clean-up path
(:meth:`SignIn.connect`); and two-factor set-up once signed in (:class:`TwoFactor`).

A :class:`SignIn` carries what every way in needs afterwards (settings, the token store, the
engine factory), so that none of them threads it on its own.
"""

from __future__ import annotations

import asyncio
import inspect
import webbrowser
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from voicechat.sdk.app.engines import EngineFactory
from voicechat.sdk.app.feed import NETWORK_ERRORS, ChangeFeed
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.settings import ClientSettings
from voicechat.sdk.app.sso import LoopbackRedirect
from voicechat.sdk.app.state import Change
from voicechat.sdk.app.tokens import StoredTokens, TokenStore
from voicechat.sdk.client import Client, MfaSetup
from voicechat.sdk.errors import AuthError
from voicechat.sdk.errors import MfaRequired as SdkMfaRequired
from voicechat.sdk.models import Me

USER_AGENT = "voicechat-desktop"

Authenticate = Callable[[Client], Awaitable[object]]


def normalize_code(code: str) -> str:
    """A one-time code as typed (`123 456 `) as the server wants it (`123456`)."""
    return code.strip().replace(" ", "")


@dataclass(frozen=True, slots=True)
class Provider:
    """A single sign-on provider: `id` goes to :meth:`AppSession.sso`, `name` on the button."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """How one client install signs in to a server, and where the session's state then goes.

    Attributes:
        settings: the client's settings (the server and username are remembered in them).
        tokens: where the session's tokens are kept for the next start.
        engine_factory: how the session's calls get their audio engine (None: the sound
            devices).
    """

    settings: ClientSettings
    tokens: TokenStore
    engine_factory: EngineFactory | None = None

    @classmethod
    def of(
        cls,
        settings: ClientSettings,
        tokens: TokenStore | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> SignIn:
        """A sign-in whose tokens go to `tokens`, by default the store in the client home."""
        store = tokens if tokens is not None else TokenStore(settings.home)
        return cls(settings, store, engine_factory)

    async def connect(self, server_url: str, authenticate: Authenticate) -> Client:
        """A client for `server_url` that `authenticate` signed in.

        Whatever goes wrong closes the client, except a second factor being needed: then the
        client stays open in the :class:`MfaRequired`'s challenge.
        """
        client = Client(server_url, user_agent=USER_AGENT)
        try:
            await authenticate(client)
        except SdkMfaRequired as needed:
            raise MfaRequired(MfaChallenge(client, self), needed.mfa_token) from None
        except BaseException:
            await client.close()
            raise
        return client

    async def password(self, server_url: str, username: str, password: str) -> Client:
        """Sign in with a password (raises :class:`MfaRequired` for the second factor)."""
        return await self.connect(server_url, lambda c: c.login(username, password))

    async def register(
        self, server_url: str, username: str, password: str, display_name: str | None
    ) -> Client:
        """Create an account and sign in as it."""
        return await self.connect(
            server_url, lambda c: c.register(username, password, display_name=display_name)
        )

    async def sso(
        self,
        server_url: str,
        provider: str,
        open_browser: Callable[[str], object] = webbrowser.open,
        timeout: float = 300.0,
    ) -> Client:
        """Sign in at a provider in the browser; a loopback listener receives the login code."""

        async def through_browser(client: Client) -> None:
            async with LoopbackRedirect() as redirect:
                url = await client.sso_start(provider, redirect.redirect_uri)
                if inspect.iscoroutinefunction(open_browser):
                    await open_browser(url)
                else:
                    # webbrowser.open may wait for the browser process to start.
                    await asyncio.to_thread(open_browser, url)
                code = await redirect.login_code(timeout)
            await client.sso_exchange(code)

        return await self.connect(server_url, through_browser)

    async def resume(self) -> Client | None:
        """The session stored for `settings.server_url`, or None.

        An expired access token is refreshed silently; an unreachable server still gives a
        client (with the stored identity); a session the server ended is forgotten here.
        """
        server_url = self.settings.server_url
        stored = self.tokens.load(server_url)
        if stored is None:
            return None

        async def with_stored_tokens(client: Client) -> None:
            client.use_tokens(stored.access_token, stored.refresh_token)
            try:
                await client.me()
            except NETWORK_ERRORS:
                if stored.user_id is not None:
                    client.user = Me(
                        id=UUID(stored.user_id), username=stored.username or "", status="online"
                    )

        try:
            return await self.connect(server_url, with_stored_tokens)
        except AuthError:
            self.tokens.delete(server_url)
            return None

    def keep_tokens(self, client: Client) -> None:
        """Store the client's current tokens (after signing in, and after each refresh)."""
        if client.access_token is None or client.refresh_token is None:
            return
        user = client.user
        self.tokens.save(
            client.base_url,
            StoredTokens(
                access_token=client.access_token,
                refresh_token=client.refresh_token,
                user_id=str(user.id) if user and user.id else None,
                username=user.username if user else None,
            ),
        )

    def remember_account(self, client: Client) -> None:
        """Remember the server and username for the Login screen of the next start."""
        if client.user is not None and client.user.username:
            self.settings.server_url = client.base_url
            self.settings.username = client.user.username
            self.settings.save()


async def sso_providers(server_url: str) -> list[Provider]:
    """The single sign-on providers a server offers.

    Raises:
        ApiError, httpx.HTTPError: see :func:`~voicechat.sdk.app.readable_error`.
    """
    async with Client(server_url, user_agent=USER_AGENT) as client:
        return [Provider(p["id"], p["name"]) for p in await client.providers()]


@dataclass(slots=True)
class MfaChallenge:
    """A password login waiting for its second factor; pass to :meth:`AppSession.complete_mfa`.

    Call :meth:`cancel` when the person gives up, to close its connections.
    """

    client: Client
    sign_in: SignIn

    async def verify(self, code: str) -> None:
        """Send the code (raises AuthError for a wrong or spent one; try again)."""
        await self.client.verify_mfa(normalize_code(code))

    async def cancel(self) -> None:
        """Abandon the login."""
        await self.client.close()


class MfaRequired(SdkMfaRequired):
    """The password was right; ask for a code and call :meth:`AppSession.complete_mfa`."""

    def __init__(self, challenge: MfaChallenge, mfa_token: str) -> None:
        super().__init__(mfa_token)
        self.challenge = challenge


class TwoFactor:
    """Two-factor set-up of the signed-in account (these raise: they answer a form).

    Args:
        client: the signed-in client.
        roster: its `me` is refreshed when the setting changes.
        feed: where the `me` change goes.
    """

    def __init__(self, client: Client, roster: Roster, feed: ChangeFeed) -> None:
        self._client = client
        self._roster = roster
        self._feed = feed

    async def setup(self) -> tuple[str, str]:
        """Start two-factor set-up: `(otpauth_uri, secret)` for a QR code and manual entry.

        Raises:
            ApiError: e.g. MFA is already on (see :func:`readable_error`).
        """
        setup: MfaSetup = await self._client.mfa_setup()
        return setup.otpauth_uri, setup.secret

    async def enable(self, code: str) -> list[str]:
        """Confirm the set-up with a code; returns the backup codes (show them once)."""
        codes = await self._client.mfa_enable(normalize_code(code))
        self._changed()
        return codes

    async def disable(self, code: str) -> None:
        """Turn two-factor authentication off (a current code or a backup code)."""
        await self._client.mfa_disable(normalize_code(code))
        self._changed()

    def _changed(self) -> None:
        self._roster.me = self._client.user
        self._feed.notify(Change("me"))
