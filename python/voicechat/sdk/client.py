"""The REST side of the SDK, with silent token refresh."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from uuid import UUID

import httpx

from voicechat.sdk.crypto import Crypto, CryptoStore, TrustEvent
from voicechat.sdk.errors import AuthError, MfaRequired, error_from_response
from voicechat.sdk.gateway import Gateway, GatewayEvent
from voicechat.sdk.models import Channel, Me, Message, Role, User, VoiceState
from voicechat.sdk.search import SearchResult, SearchResults

_REFRESHABLE = {"invalid_token"}


@dataclass(frozen=True, slots=True)
class MfaSetup:
    """A TOTP secret waiting for its first code (show `otpauth_uri` as a QR code)."""

    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class Page:
    """A page of history, newest first."""

    messages: list[Message]
    has_more: bool


class Client:
    """An async voicechat client. Use as `async with Client(url) as chat:`.

    Args:
        base_url: the server, e.g. `http://127.0.0.1:8080`.
        timeout: seconds per HTTP request.
        transport: an httpx transport (tests use an in-process ASGI one).
        bot_token: a bot account's token (docs/accounts.md "Bots"): every request and the
            gateway authenticate with it, no login needed (nor possible).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "voicechat-sdk",
        bot_token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.bot_token = bot_token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": user_agent},
        )
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.user: Me | None = None
        self._mfa_token: str | None = None
        self._refresh_lock = asyncio.Lock()
        self._gateway: Gateway | None = None
        self.crypto: Crypto | None = None
        # Called after every new token pair (login, refresh), so an application can store it.
        self.on_tokens: Callable[[], None] | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the gateway and the HTTP connections (does not log out)."""
        if self._gateway is not None:
            await self._gateway.close()
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, auth: bool = True, retry: bool = True, **kwargs: Any
    ) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if auth and self.credential is not None:
            headers["Authorization"] = self.credential
        response = await self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401 and auth and retry and self.refresh_token is not None:
            code = _error_code(response)
            if code in _REFRESHABLE:
                await self.refresh(stale=self.access_token)
                return await self._request(method, path, auth=auth, retry=False, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_response(
                response.status_code, body, response.headers.get("retry-after")
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @property
    def credential(self) -> str | None:
        """The `Authorization` value: `Bot <token>` for a bot, else the access token's."""
        if self.bot_token is not None:
            return f"Bot {self.bot_token}"
        return None if self.access_token is None else f"Bearer {self.access_token}"

    def _take_tokens(self, body: dict[str, Any]) -> Me:
        if body.get("mfa_required"):
            self._mfa_token = body["mfa_token"]
            raise MfaRequired(body["mfa_token"])
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.user = Me.model_validate(body["user"])
        if self.on_tokens is not None:
            self.on_tokens()
        return self.user

    # -- auth -------------------------------------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        invite: str | None = None,
    ) -> Me:
        """Create an account and log in as it (`invite`: a code, needed in invite mode)."""
        body: dict[str, Any] = {"username": username, "password": password}
        if invite is not None:
            body["invite"] = invite
        if email is not None:
            body["email"] = email
        if display_name is not None:
            body["display_name"] = display_name
        return self._take_tokens(
            await self._request("POST", "/auth/register", auth=False, json=body)
        )

    async def login(self, username: str, password: str) -> Me:
        """Log in with a password.

        Raises:
            MfaRequired: the account has MFA on; call :meth:`verify_mfa` with a code.
            AuthError: wrong username or password.
        """
        body = {"username": username, "password": password}
        return self._take_tokens(await self._request("POST", "/auth/login", auth=False, json=body))

    async def verify_mfa(self, code: str) -> Me:
        """Finish a login that raised :class:`MfaRequired`."""
        if self._mfa_token is None:
            raise RuntimeError("no login is waiting for a code")
        body = {"mfa_token": self._mfa_token, "code": code}
        me = self._take_tokens(
            await self._request("POST", "/auth/mfa/verify", auth=False, json=body)
        )
        self._mfa_token = None
        return me

    async def sso_start(self, provider: str, redirect_uri: str) -> str:
        """The provider's authorization URL to open in a browser."""
        body = {"provider": provider, "redirect_uri": redirect_uri}
        answer = await self._request("POST", "/auth/login", auth=False, json=body)
        return str(answer["authorization_url"])

    async def sso_exchange(self, login_code: str) -> Me:
        """Finish an SSO login with the one-time code from the loopback redirect."""
        answer = await self._request(
            "POST", "/auth/oidc/exchange", auth=False, json={"login_code": login_code}
        )
        return self._take_tokens(answer)

    def use_tokens(self, access_token: str, refresh_token: str) -> None:
        """Resume a session from stored tokens."""
        self.access_token = access_token
        self.refresh_token = refresh_token

    async def refresh(self, *, stale: str | None = None) -> None:
        """Rotate the token pair. Concurrent callers share one refresh.

        Raises:
            AuthError: the session has ended; log in again.
        """
        async with self._refresh_lock:
            if stale is not None and self.access_token != stale:
                return  # another task refreshed while we waited
            if self.refresh_token is None:
                raise AuthError(401, "missing_token", "not logged in")
            answer = await self._request(
                "POST", "/auth/refresh", auth=False, json={"refresh_token": self.refresh_token}
            )
            self._take_tokens(answer)

    async def logout(self) -> None:
        """End this session on the server."""
        await self._request("POST", "/auth/logout", json={"refresh_token": self.refresh_token})
        self.access_token = self.refresh_token = None

    async def mfa_setup(self) -> MfaSetup:
        """Start turning MFA on: a new secret, inactive until :meth:`mfa_enable` confirms it."""
        answer = await self._request("POST", "/auth/mfa/setup")
        return MfaSetup(str(answer["secret"]), str(answer["otpauth_uri"]))

    async def mfa_enable(self, code: str) -> list[str]:
        """Confirm MFA set-up with a code from the authenticator; returns the backup codes
        (shown once)."""
        answer = await self._request("POST", "/auth/mfa/verify", json={"code": code})
        if self.user is not None:
            self.user = self.user.model_copy(update={"mfa_enabled": True})
        return [str(c) for c in answer["backup_codes"]]

    async def mfa_disable(self, code: str) -> None:
        """Turn MFA off (needs a current code or a backup code)."""
        await self._request("POST", "/auth/mfa/disable", json={"code": code})
        if self.user is not None:
            self.user = self.user.model_copy(update={"mfa_enabled": False})

    async def providers(self) -> list[dict[str, str]]:
        """The SSO providers configured on the server: `[{id, name}]`."""
        answer = await self._request("GET", "/auth/providers", auth=False)
        return [{"id": str(p["id"]), "name": str(p["name"])} for p in answer]

    async def me(self) -> Me:
        """The logged-in user's profile."""
        self.user = Me.model_validate(await self._request("GET", "/users/@me"))
        return self.user

    async def update_me(self, **changes: Any) -> Me:
        """Change display_name, status, email or avatar."""
        self.user = Me.model_validate(await self._request("PATCH", "/users/@me", json=changes))
        return self.user

    async def change_password(self, current_password: str, new_password: str) -> None:
        """Change this account's password; every other session of it ends."""
        body = {"current_password": current_password, "new_password": new_password}
        await self._request("POST", "/auth/password", json=body)

    async def forgot_password(
        self, *, email: str | None = None, username: str | None = None
    ) -> None:
        """Ask for a reset mail (the server answers the same whether the account exists)."""
        body = {"email": email} if email is not None else {"username": username}
        await self._request("POST", "/auth/password/forgot", auth=False, json=body)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password with the code from the reset mail (it works once)."""
        body = {"token": token, "new_password": new_password}
        await self._request("POST", "/auth/password/reset", auth=False, json=body)

    async def set_email(self, email: str) -> None:
        """Change this account's address; a verification code is mailed to it."""
        await self._request("POST", "/users/@me/email", json={"email": email})

    async def verify_email(self, token: str) -> None:
        """Confirm the address with the mailed code."""
        await self._request("POST", "/auth/email/verify", auth=False, json={"token": token})

    async def delete_account(self, *, password: str | None = None, code: str | None = None) -> None:
        """Delete this account (password, or an MFA code for an SSO account); logs out."""
        body = {k: v for k, v in {"password": password, "code": code}.items() if v is not None}
        await self._request("DELETE", "/users/@me", json=body)
        self.access_token = self.refresh_token = None

    async def export(self) -> dict[str, Any]:
        """A JSON archive of this account's data (profile, sessions, roles, files, messages)."""
        answer: dict[str, Any] = await self._request("GET", "/users/@me/export")
        return answer

    async def get_user(self, user_id: UUID | str) -> User:
        """Someone's public profile."""
        return User.model_validate(await self._request("GET", f"/users/{user_id}"))

    async def users(self, *, page_size: int = 500) -> list[User]:
        """Every member of the server with their presence, by username (all pages)."""
        users: list[User] = []
        after = ""
        while True:
            answer = await self._request(
                "GET", "/users", params={"after": after, "limit": page_size}
            )
            users.extend(User.model_validate(u) for u in answer)
            if len(answer) < page_size:
                return users
            after = users[-1].username

    async def voice_states(self) -> list[VoiceState]:
        """Who is in which voice call, in the channels this user can see."""
        answer = await self._request("GET", "/voice/states")
        return [VoiceState.model_validate(s) for s in answer]

    async def enable_encryption(
        self,
        store: CryptoStore | None = None,
        *,
        device_id: str | None = None,
        on_trust_event: Callable[[TrustEvent], None] | None = None,
    ) -> Crypto:
        """Make this client an end-to-end encryption device (after logging in).

        From then on :meth:`send` encrypts and :meth:`messages` decrypts in encrypted
        channels and DMs; plain channels are unaffected.

        Args:
            store: where the device's keys persist (default: this process only; see
                :func:`voicechat.sdk.crypto.default_store`).
            device_id: the id of a new device (default: random); a stored device keeps its own.
            on_trust_event: told about devices seen for the first time, changed keys and
                forged devices.
        """
        crypto = Crypto(self, store, on_trust_event=on_trust_event)
        await crypto.start(device_id)
        self.crypto = crypto
        return crypto

    # -- channels ---------------------------------------------------------------------------

    async def channels(self) -> list[Channel]:
        """Every channel you can see."""
        return [Channel.model_validate(c) for c in await self._request("GET", "/channels")]

    async def channel(self, channel_id: UUID | str) -> Channel:
        """One channel."""
        return Channel.model_validate(await self._request("GET", f"/channels/{channel_id}"))

    async def channel_by_name(self, name: str) -> Channel:
        """The first visible channel with this name.

        Raises:
            LookupError: none has it.
        """
        for channel in await self.channels():
            if channel.name == name:
                return channel
        raise LookupError(f"no channel named {name!r}")

    async def create_channel(
        self,
        name: str,
        type: Literal["text", "voice", "category"] = "text",
        **options: Any,
    ) -> Channel:
        """Create a channel (needs manage_channels)."""
        body = {"name": name, "type": type, **options}
        body = {k: str(v) if isinstance(v, UUID) else v for k, v in body.items()}
        return Channel.model_validate(await self._request("POST", "/channels", json=body))

    async def dm(self, *user_ids: UUID | str) -> Channel:
        """The DM with these users (created if needed)."""
        body = {"user_ids": [str(u) for u in user_ids]}
        return Channel.model_validate(await self._request("POST", "/dms", json=body))

    async def members(self, channel_id: UUID | str) -> list[User]:
        """Members of a private channel or DM (empty for a public channel)."""
        answer = await self._request("GET", f"/channels/{channel_id}/members")
        return [User.model_validate(m) for m in answer]

    async def roles(self) -> list[Role]:
        """All roles."""
        return [Role.model_validate(r) for r in await self._request("GET", "/roles")]

    # -- invites and the audit log ----------------------------------------------------------

    async def create_invite(
        self,
        *,
        max_uses: int | None = None,
        expires_in: int | None = None,
        role_ids: list[UUID | str] | None = None,
    ) -> dict[str, Any]:
        """Make an invite (`create_invites`); `expires_in` in seconds. Returns `{code, ...}`."""
        body: dict[str, Any] = {"role_ids": [str(r) for r in role_ids or ()]}
        if max_uses is not None:
            body["max_uses"] = max_uses
        if expires_in is not None:
            body["expires_in"] = expires_in
        answer: dict[str, Any] = await self._request("POST", "/invites", json=body)
        return answer

    async def list_invites(self) -> list[dict[str, Any]]:
        """The caller's invites (everyone's with `manage_server`), newest first."""
        answer: list[dict[str, Any]] = await self._request("GET", "/invites")
        return answer

    async def revoke_invite(self, code: str) -> None:
        """Revoke an invite (one's own; anyone's with `manage_server`)."""
        await self._request("DELETE", f"/invites/{code}")

    async def get_invite(self, code: str) -> dict[str, Any]:
        """`{valid, server_name, inviter}` of an invite; needs no login."""
        answer: dict[str, Any] = await self._request("GET", f"/invites/{code}", auth=False)
        return answer

    async def audit_log(
        self,
        *,
        before: int | None = None,
        limit: int = 50,
        action: str | None = None,
        actor_id: UUID | str | None = None,
        target_id: UUID | str | None = None,
    ) -> list[dict[str, Any]]:
        """Audit entries newest first (`view_audit_log`); page with `before=` the last id."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("before", before),
            ("action", action),
            ("actor_id", actor_id),
            ("target_id", target_id),
        ):
            if value is not None:
                params[key] = str(value)
        answer: list[dict[str, Any]] = await self._request("GET", "/audit-log", params=params)
        return answer

    # -- messages ---------------------------------------------------------------------------

    async def messages(
        self,
        channel_id: UUID | str,
        *,
        before: UUID | str | None = None,
        after: UUID | str | None = None,
        limit: int = 50,
    ) -> Page:
        """One page of history, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = str(before)
        if after is not None:
            params["after"] = str(after)
        answer = await self._request("GET", f"/channels/{channel_id}/messages", params=params)
        messages = [Message.model_validate(m) for m in answer["messages"]]
        crypto = self.crypto
        if crypto is not None and any(m.encrypted is not None for m in messages):
            await crypto.sync()
            messages = [crypto.decrypt(m) for m in messages]
        return Page(messages, answer["has_more"])

    async def search_messages(
        self,
        q: str,
        *,
        channel_id: UUID | str | None = None,
        author_id: UUID | str | None = None,
        before: UUID | str | None = None,
        after: UUID | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchResults:
        """Search the server's plaintext channels (docs/search.md): best match first.

        Args:
            q: words, `"a phrase"`, `-word`, `or`; the last word also matches as a prefix.
            channel_id: only this channel (an encrypted one is refused: search it locally).
            author_id: only this author's messages.
            before: older than this message id or ISO 8601 time.
            after: newer than this message id or ISO 8601 time.
            limit: results per page, 1-25 (the server's default: 25).
            cursor: `next_cursor` of the previous page, with the same query and filters.
        """
        optional = {
            "channel_id": channel_id,
            "author_id": author_id,
            "before": before,
            "after": after,
            "limit": limit,
            "cursor": cursor,
        }
        params = {"q": q, **{k: str(v) for k, v in optional.items() if v is not None}}
        answer = await self._request("GET", "/search/messages", params=params)
        return SearchResults(
            [
                SearchResult(
                    Message.model_validate(r["message"]),
                    UUID(r["channel_id"]),
                    r["highlight"],
                    r["rank"],
                )
                for r in answer["results"]
            ],
            answer["has_more"],
            answer["next_cursor"],
        )

    async def history(
        self, channel_id: UUID | str, *, page_size: int = 100
    ) -> AsyncIterator[Message]:
        """Every message of a channel, newest first, fetched page by page."""
        before: UUID | None = None
        while True:
            page = await self.messages(channel_id, before=before, limit=page_size)
            for message in page.messages:
                yield message
            if not page.has_more or not page.messages:
                return
            before = page.messages[-1].id

    async def send(
        self,
        channel_id: UUID | str,
        content: str | None = None,
        *,
        reply_to: UUID | str | None = None,
        attachments: list[UUID | str] | None = None,
        nonce: str | None = None,
        encrypted: dict[str, str] | None = None,
    ) -> Message:
        """Send a message. A nonce is generated so a retried send never duplicates.

        With encryption enabled, `content` for an encrypted channel or DM is encrypted here;
        the answer then carries the plaintext back in `content`.
        """
        body: dict[str, Any] = {"nonce": nonce or uuid.uuid4().hex}
        crypto = self.crypto
        if (
            crypto is not None
            and content is not None
            and encrypted is None
            and await crypto.is_encrypted(channel_id)
        ):
            encrypted, content = await crypto.encrypt(channel_id, content), None
        if content is not None:
            body["content"] = content
        if encrypted is not None:
            body.update(encrypted)
        if reply_to is not None:
            body["reply_to"] = str(reply_to)
        if attachments:
            body["attachments"] = [str(a) for a in attachments]
        answer = await self._request("POST", f"/channels/{channel_id}/messages", json=body)
        message = Message.model_validate(answer)
        return message if crypto is None else crypto.decrypt(message)

    async def edit(self, message_id: UUID | str, content: str) -> Message:
        """Replace your message's content (encrypted again if the message was encrypted)."""
        crypto = self.crypto
        channel_id = None if crypto is None else crypto.channel_of(message_id)
        body: dict[str, Any] = {"content": content}
        if crypto is not None and channel_id is not None:
            body = dict(await crypto.encrypt(channel_id, content))
        answer = await self._request("PATCH", f"/messages/{message_id}", json=body)
        message = Message.model_validate(answer)
        return message if crypto is None else crypto.decrypt(message)

    async def delete(self, message_id: UUID | str) -> None:
        """Delete a message (yours, or any with manage_messages)."""
        await self._request("DELETE", f"/messages/{message_id}")

    # -- files ------------------------------------------------------------------------------

    async def upload(
        self,
        file: Path | bytes,
        *,
        filename: str | None = None,
        channel_id: UUID | str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (to attach to a message in `channel_id`, or as an avatar)."""
        if isinstance(file, Path):
            name = filename or file.name
            content = await asyncio.to_thread(file.read_bytes)
        else:
            name, content = filename or "file", file
        data = {"channel_id": str(channel_id)} if channel_id is not None else None
        answer: dict[str, Any] = await self._request(
            "POST", "/upload", files={"file": (name, content)}, data=data
        )
        return answer

    async def download(self, file_id: UUID | str) -> bytes:
        """A file's bytes."""
        headers = {"Authorization": self.credential} if self.credential else {}
        response = await self._http.get(f"/files/{file_id}", headers=headers)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.json(), None)
        return response.content

    # -- bots and administration (docs/accounts.md) ----------------------------------------

    async def create_bot(self, username: str, display_name: str | None = None) -> dict[str, Any]:
        """A new bot owned by you (`manage_bots`): `{"bot": {...}, "token": "vcb_..."}`; the
        token is shown this once."""
        body: dict[str, Any] = {"username": username}
        if display_name is not None:
            body["display_name"] = display_name
        made: dict[str, Any] = await self._request("POST", "/bots", json=body)
        return made

    async def bots(self) -> list[dict[str, Any]]:
        """Your bots (every bot for an administrator), each with its token's last use."""
        listed: list[dict[str, Any]] = await self._request("GET", "/bots")
        return listed

    async def delete_bot(self, bot_id: UUID | str) -> None:
        """Delete a bot; its token stops working at once."""
        await self._request("DELETE", f"/bots/{bot_id}")

    async def new_bot_token(self, bot_id: UUID | str) -> dict[str, Any]:
        """A new token for a bot (`{"bot", "token"}`); the old one stops working at once."""
        made: dict[str, Any] = await self._request("POST", f"/bots/{bot_id}/token")
        return made

    async def admin_users(
        self, q: str | None = None, *, after: str = "", limit: int = 100
    ) -> dict[str, Any]:
        """Accounts as administrators see them: `{"users": [...], "next": after-or-null}`."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if q:
            params["q"] = q
        page: dict[str, Any] = await self._request("GET", "/admin/users", params=params)
        return page

    async def admin_update_user(
        self,
        user_id: UUID | str,
        *,
        disabled: bool | None = None,
        administrator: bool | None = None,
    ) -> dict[str, Any]:
        """Disable/enable or promote/demote an account (administrators)."""
        body = {
            k: v
            for k, v in {"disabled": disabled, "administrator": administrator}.items()
            if v is not None
        }
        updated: dict[str, Any] = await self._request("PATCH", f"/admin/users/{user_id}", json=body)
        return updated

    # -- gateway ----------------------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        """The WebSocket gateway connection (connects on first use)."""
        if self._gateway is None:
            self._gateway = Gateway(self)
        return self._gateway

    def events(self) -> AsyncIterator[GatewayEvent]:
        """Server events as they arrive; reconnects (and re-authenticates) by itself."""
        return self.gateway.events()

    async def typing(self, channel_id: UUID | str) -> None:
        """Show that you are typing in a channel (for 8 seconds)."""
        await self.gateway.request("typing.start", {"channel_id": str(channel_id)})

    async def set_presence(self, status: Literal["online", "idle", "dnd", "offline"]) -> None:
        """Set your presence."""
        await self.gateway.request("presence.set", {"status": status})

    # -- moderation (docs/moderation.md) -----------------------------------------------------

    async def ban(
        self, user_id: UUID | str, *, reason: str | None = None, delete_message_seconds: int = 0
    ) -> None:
        """Ban a user (`ban_members`); their sockets close with 4003 and their logins are
        refused with `banned`; their messages of the last `delete_message_seconds` go."""
        await self._request(
            "PUT",
            f"/bans/{user_id}",
            json={"reason": reason, "delete_message_seconds": delete_message_seconds},
        )

    async def unban(self, user_id: UUID | str) -> None:
        """Lift a user's ban (`ban_members`)."""
        await self._request("DELETE", f"/bans/{user_id}")

    async def list_bans(self) -> list[dict[str, Any]]:
        """Every ban (`ban_members`): user_id, username, reason, banned_by, created_at."""
        bans: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if after is not None:
                params["after"] = after
            page = await self._request("GET", "/bans", params=params)
            bans.extend(page)
            if len(page) < 1000:
                return bans
            after = page[-1]["user_id"]

    async def timeout(
        self, user_id: UUID | str, until: datetime, *, reason: str | None = None
    ) -> datetime | None:
        """Time a user out until `until` (`moderate_members`, at most 28 days ahead)."""
        answer = await self._request(
            "PUT",
            f"/users/{user_id}/timeout",
            json={"until": until.isoformat(), "reason": reason},
        )
        return _timestamp(answer["communication_disabled_until"])

    async def clear_timeout(self, user_id: UUID | str) -> None:
        """End a user's timeout (`moderate_members`)."""
        await self._request("DELETE", f"/users/{user_id}/timeout")

    async def update_voice_state(
        self,
        user_id: UUID | str,
        *,
        server_mute: bool | None = None,
        server_deaf: bool | None = None,
        channel_id: UUID | str | Literal["keep"] | None = "keep",
    ) -> None:
        """Server mute or deafen someone in voice (`mute_members`), move them to another voice
        channel or disconnect them with `channel_id=None` (`move_members`); what is not given
        stays as it is."""
        body: dict[str, Any] = {}
        if server_mute is not None:
            body["server_mute"] = server_mute
        if server_deaf is not None:
            body["server_deaf"] = server_deaf
        if channel_id != "keep":
            body["channel_id"] = None if channel_id is None else str(channel_id)
        await self._request("PATCH", f"/voice/states/{user_id}", json=body)


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
