"""Accounts (SPEC §3 "Accounts", docs/accounts.md): password change and reset, email
verification, deletion and export.

Mail goes through the outbox (voicechat.mail.outbox): a request commits the mail with its
change and the background sender delivers it, so an SMTP outage never fails a request.

Two functions here are for `voicechat admin users` too, which works on the database directly:
:func:`issue_password_reset` (a one-time reset link) and :func:`delete_account`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote
from uuid import UUID

from pydantic_core import to_json

from voicechat.auth.service import Authenticated, AuthService, Client
from voicechat.auth.sessions import SessionStore
from voicechat.cache import Cache
from voicechat.db.pool import Connection, Pool
from voicechat.db.repositories import AuditLog, SessionRepository, UserRepository
from voicechat.db.repositories.accounts import (
    AccountRepository,
    AccountTokens,
    MailOutbox,
    TokenPurpose,
    export_pages,
    is_last_administrator,
)
from voicechat.error_codes import ErrorCode
from voicechat.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    RateLimited,
    ServiceUnavailable,
)
from voicechat.mail.outbox import MailSender
from voicechat.mail.templates import render
from voicechat.settings import Settings
from voicechat.storage import FileStorage

log = logging.getLogger(__name__)

#: An SSO account without MFA may delete itself only from a session this young (seconds).
FRESH_LOGIN_SECONDS = 600
#: Mail queued at most; past it, email verification answers 503 smtp_unavailable.
OUTBOX_LIMIT = 10_000
#: How often tombstones past their grace period are released and dead tokens purged.
HOUSEKEEPING_SECONDS = 3600.0


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """A one-time reset token, shown or mailed once."""

    user_id: UUID
    token: str
    link: str
    expires_at: datetime


def reset_link(settings: Settings, token: str) -> str:
    """The link a reset mail (or `voicechat admin users reset-password`) gives."""
    return f"{settings.public_base_url}/reset-password?token={quote(token)}"


async def issue_password_reset(
    conn: Connection, user_id: UUID, *, settings: Settings
) -> PasswordReset:
    """Create a single-use password reset token for a user (valid
    `password_reset_ttl_seconds`, 30 minutes by default); only its SHA-256 is stored.

    For `voicechat admin users reset-password`, which prints the link when no SMTP is
    configured, and for the forgot-password mail.
    """
    token = secrets.token_urlsafe(32)
    expires_at = await AccountTokens(conn).create(
        _digest(token), user_id, "password_reset", ttl_seconds=settings.password_reset_ttl_seconds
    )
    return PasswordReset(user_id, token, reset_link(settings, token), expires_at)


async def end_sessions(
    conn: Connection, cache: Cache, user_id: UUID, *, keep: UUID | None = None
) -> list[UUID]:
    """End every session of the user but `keep`; their sockets close on the revocation message
    (auth/live_sessions.py) within the revocation window. Returns the sessions ended."""
    store = SessionStore(cache, ttl_seconds=1, grace_seconds=0)  # revoking uses neither
    ended = [s.id for s in await store.list_for_user(user_id) if s.id != keep]
    repo = SessionRepository(conn)
    for session_id in ended:
        await store.revoke(session_id)
        await repo.revoked(session_id)
    return ended


async def delete_account(
    conn: Connection,
    user_id: UUID,
    *,
    cache: Cache,
    storage: FileStorage | None,
    actor_id: UUID | None = None,
    reason: str | None = None,
    client: Client | None = None,
) -> list[UUID]:
    """Delete an account: anonymise its row (a tombstone keeping the username until the grace
    period ends), remove devices and E2EE keys, tokens, queued mail, roles and the avatar, and
    end its sessions and sockets. Messages stay and show the deleted-user placeholder.

    For `DELETE /users/@me` and `voicechat admin users delete` (`actor_id` the operator's
    account, if any). Returns the sessions that were ended.

    Raises:
        NotFound: no such live account.
        Conflict: it is the last administrator (`last_administrator`).
    """
    async with conn.transaction():
        await UserRepository(conn).get(user_id)  # NotFound for a missing or deleted account
        if await is_last_administrator(conn, user_id):
            raise Conflict(
                "this is the server's only administrator: make someone else administrator first",
                code=ErrorCode.LAST_ADMINISTRATOR,
            )
        _, avatar_keys = await AccountRepository(conn).anonymise(user_id)
        await AuditLog(conn).record(
            "account.delete",
            user_id=actor_id or user_id,
            target_id=user_id,
            reason=reason,
            ip_address=client.ip or None if client else None,
            user_agent=client.user_agent if client else None,
        )
    ended = await end_sessions(conn, cache, user_id)
    if storage is not None and avatar_keys:
        await storage.discard(avatar_keys)
    return ended


class AccountService:
    """The account flows of one API instance."""

    def __init__(
        self,
        settings: Settings,
        db: Pool,
        cache: Cache,
        auth: AuthService,
        storage: FileStorage,
        mail: MailSender,
    ) -> None:
        self.settings = settings
        self._db = db
        self._cache = cache
        self._auth = auth
        self._storage = storage
        self.mail = mail
        self._background: set[asyncio.Task[None]] = set()
        self._housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the mail sender and the hourly housekeeping (tombstones, dead tokens)."""
        self.mail.start()
        self._housekeeping = asyncio.create_task(self._keep_house(), name="account-housekeeping")

    async def stop(self) -> None:
        """Let forgot-password requests in flight finish (briefly), then stop everything."""
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        tasks = [*self._background, *([self._housekeeping] if self._housekeeping else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._housekeeping = None
        await self.mail.stop()

    async def _keep_house(self) -> None:
        while True:
            try:
                async with self._db.acquire() as conn:
                    released = await AccountRepository(conn).release_tombstones(
                        self.settings.deleted_username_grace_days
                    )
                    await AccountTokens(conn).purge()
                if released:
                    log.info("released the usernames of %s deleted accounts", released)
            except Exception:
                log.exception("account housekeeping failed; retrying in an hour")
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    # -- password change ------------------------------------------------------------------

    async def change_password(
        self, caller: Authenticated, current: str, new: str, client: Client
    ) -> None:
        """Change the caller's password; every other session of theirs ends.

        Raises:
            Forbidden: an SSO account (`password_not_set`), or the current password is wrong.
            RateLimited: too many password checks on this account.
        """
        await self._auth.limits.hit(self.settings.rate_limit_reauth, "reauth", str(caller.user_id))
        async with self._db.acquire() as conn:
            user = await UserRepository(conn).get(caller.user_id)
        if user.password_hash is None:
            raise Forbidden(
                "this account signs in with single sign-on; its password is managed there",
                code=ErrorCode.PASSWORD_NOT_SET,
            )
        if not await self._auth.passwords.verify(user.password_hash, current):
            raise Forbidden("the current password is wrong", code=ErrorCode.WRONG_PASSWORD)
        new_hash = await self._auth.passwords.hash(new)
        async with self._db.acquire() as conn:
            async with conn.transaction():
                await UserRepository(conn).set_password_hash(user.id, new_hash)
                await AccountTokens(conn).retire(user.id, "password_reset")
                await _audit(conn, "account.password_change", user.id, client)
            ended = await end_sessions(conn, self._cache, user.id, keep=caller.session_id)
        for session_id in ended:
            self._auth.live.forget(session_id)

    # -- forgot and reset -----------------------------------------------------------------

    async def forgot_password(
        self, *, email: str | None, username: str | None, client: Client
    ) -> None:
        """Count the request, then look the account up and mail it off the response path.

        The answer (202) and its timing are the same whether the account exists, has an
        address, or SMTP works: only the rate limits (per IP and per given name or address,
        counted before anything is looked up) can refuse, and they refuse everyone alike.

        Raises:
            RateLimited: too many requests from this IP or for this account.
        """
        identifier = (email or username or "").strip().lower()
        limits = self._auth.limits
        await limits.hit(self.settings.rate_limit_password_forgot_ip, "forgot-ip", client.ip)
        await limits.hit(self.settings.rate_limit_password_forgot, "forgot-name", identifier)
        kind: Literal["email", "username"] = "email" if email is not None else "username"
        task = asyncio.create_task(self._mail_reset(kind, identifier, client))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _mail_reset(
        self, kind: Literal["email", "username"], identifier: str, client: Client
    ) -> None:
        try:
            async with self._db.acquire() as conn:
                if kind == "email":
                    user_ids = await AccountRepository(conn).local_ids_by_email(identifier)
                else:
                    user = await UserRepository(conn).find_by_username(identifier)
                    user_ids = [user.id] if user is not None and user.auth_method == "local" else []
                for user_id in user_ids:
                    await self._mail_reset_to(conn, user_id, client)
            if user_ids:
                self.mail.wake()
        except Exception:
            # Not silent: the person gets no mail and may ask again; the operator sees why.
            log.exception("a forgot-password request could not be processed")

    async def _mail_reset_to(self, conn: Connection, user_id: UUID, client: Client) -> None:
        try:
            # Per account as well as per name: the email and username forms count together.
            await self._auth.limits.hit(
                self.settings.rate_limit_password_forgot, "forgot-account", str(user_id)
            )
        except RateLimited:
            log.info("no reset mail for user %s: too many asked for within the hour", user_id)
            return
        user = await UserRepository(conn).get(user_id)
        async with conn.transaction():
            mailed = self.mail.configured and user.email is not None
            if mailed:
                assert user.email is not None
                reset = await issue_password_reset(conn, user_id, settings=self.settings)
                subject, body = render(
                    "password_reset",
                    server_name=self.settings.server_name,
                    username=user.username,
                    link=reset.link,
                    token=reset.token,
                    minutes=max(1, self.settings.password_reset_ttl_seconds // 60),
                )
                await MailOutbox(conn).enqueue(
                    user_id,
                    user.email,
                    subject,
                    body,
                    ttl_seconds=self.settings.password_reset_ttl_seconds,
                )
            await _audit(
                conn,
                "account.password_reset_request",
                user_id,
                client,
                details={"mailed": mailed},
            )
        if not mailed:
            log.info(
                "password reset asked for user %s, but %s; an operator can run "
                "`voicechat admin users reset-password`",
                user_id,
                "no SMTP is configured" if not self.mail.configured else "it has no address",
            )

    async def reset_password(self, token: str, new_password: str, client: Client) -> None:
        """Set a new password with a reset token; every session of the user ends.

        Raises:
            BadRequest: not a reset token (`account_token_invalid`).
            Gone: the token was used (`account_token_used`) or expired (`account_token_expired`).
            RateLimited: too many tokens tried from this IP.
        """
        await self._auth.limits.hit(
            self.settings.rate_limit_account_token_ip, "account-token-ip", client.ip
        )
        new_hash = await self._auth.passwords.hash(new_password)
        async with self._db.acquire() as conn:
            async with conn.transaction():
                used = await _use_token(conn, token, "password_reset")
                await UserRepository(conn).set_password_hash(used, new_hash)
                await AccountTokens(conn).retire(used, "password_reset")
                await _audit(conn, "account.password_reset", used, client)
            ended = await end_sessions(conn, self._cache, used)
        for session_id in ended:
            self._auth.live.forget(session_id)

    # -- email ----------------------------------------------------------------------------

    async def change_email(self, caller: Authenticated, email: str, client: Client) -> None:
        """Set the caller's address (unverified) and queue a verification mail to it.

        Raises:
            ServiceUnavailable: no SMTP is configured, or the outbox is full
                (`smtp_unavailable`): the mail cannot even be queued.
            RateLimited: too many verification mails for this account.
        """
        if not self.mail.configured:
            raise ServiceUnavailable(
                "this server sends no mail (no SMTP configured); ask an operator",
                code=ErrorCode.SMTP_UNAVAILABLE,
            )
        await self._auth.limits.hit(
            self.settings.rate_limit_email_change, "email-change", str(caller.user_id)
        )
        ttl = self.settings.email_verify_ttl_seconds
        token = secrets.token_urlsafe(32)
        async with self._db.acquire() as conn, conn.transaction():
            outbox = MailOutbox(conn)
            if await outbox.pending() >= OUTBOX_LIMIT:
                log.error("the mail outbox holds %s mails; refusing more", OUTBOX_LIMIT)
                raise ServiceUnavailable(
                    "mail cannot be sent right now; try again later",
                    code=ErrorCode.SMTP_UNAVAILABLE,
                )
            users = UserRepository(conn)
            user = await users.update_profile(caller.user_id, {"email": email})
            await AccountTokens(conn).create(
                _digest(token), user.id, "email_verify", ttl_seconds=ttl, email=email
            )
            subject, body = render(
                "email_verify",
                server_name=self.settings.server_name,
                username=user.username,
                link=f"{self.settings.public_base_url}/verify-email?token={quote(token)}",
                token=token,
                hours=max(1, ttl // 3600),
            )
            await outbox.enqueue(user.id, email, subject, body, ttl_seconds=ttl)
            await _audit(conn, "account.email_change", user.id, client)
        self.mail.wake()

    async def verify_email(self, token: str, client: Client) -> None:
        """Mark the address the token was sent to as verified.

        Raises:
            BadRequest: not a verification token, or the address changed since.
            Gone: the token was used or expired.
        """
        await self._auth.limits.hit(
            self.settings.rate_limit_account_token_ip, "account-token-ip", client.ip
        )
        async with self._db.acquire() as conn, conn.transaction():
            digest = _digest(token)
            accepted = await AccountTokens(conn).use(digest, "email_verify")
            if accepted is None:
                await _refuse(conn, digest, "email_verify")
            assert accepted is not None
            if accepted.email is None or not await AccountRepository(conn).set_verified_email(
                accepted.user_id, accepted.email
            ):
                raise BadRequest(
                    "this code was sent to an address the account no longer uses",
                    code=ErrorCode.ACCOUNT_TOKEN_INVALID,
                )
            await _audit(conn, "account.email_verify", accepted.user_id, client)

    # -- deletion and export --------------------------------------------------------------

    async def delete(
        self, caller: Authenticated, *, password: str | None, code: str | None, client: Client
    ) -> None:
        """Delete the caller's account after checking the password (local accounts), an MFA
        code (SSO accounts with MFA), or a login within the last 10 minutes (SSO without MFA).

        Raises:
            Forbidden: the check failed (`wrong_password`, `invalid_mfa_code`,
                `reauthentication_required`), or a bot (`not_for_bots`).
            Conflict: the last administrator.
            RateLimited: too many checks on this account.
        """
        await self._auth.limits.hit(self.settings.rate_limit_reauth, "reauth", str(caller.user_id))
        async with self._db.acquire() as conn:
            user = await UserRepository(conn).get(caller.user_id)
        if user.auth_method == "bot":
            raise Forbidden("a bot is deleted by its owner", code=ErrorCode.NOT_FOR_BOTS)
        if user.password_hash is not None:
            if password is None or not await self._auth.passwords.verify(
                user.password_hash, password
            ):
                raise Forbidden("the password is wrong", code=ErrorCode.WRONG_PASSWORD)
        elif user.mfa_enabled:
            if code is None or not await self._auth.check_mfa_code(user.id, code):
                raise Forbidden("wrong code", code=ErrorCode.INVALID_MFA_CODE)
        else:
            session = await self._auth.sessions.get(caller.session_id)
            if session is None or time.time() - session.created_at > FRESH_LOGIN_SECONDS:
                raise Forbidden(
                    "log in again with single sign-on, then delete the account within 10 minutes",
                    code=ErrorCode.REAUTHENTICATION_REQUIRED,
                )
        async with self._db.acquire() as conn:
            ended = await delete_account(
                conn, user.id, cache=self._cache, storage=self._storage, client=client
            )
        for session_id in ended:
            self._auth.live.forget(session_id)

    async def check_export(self, caller: Authenticated) -> None:
        """Count an export against its limit (before the response starts).

        Raises:
            RateLimited: too many exports.
        """
        await self._auth.limits.hit(self.settings.rate_limit_export, "export", str(caller.user_id))

    async def export(self, caller: Authenticated) -> AsyncIterator[bytes]:
        """The caller's data as one JSON document, streamed: profile, roles, sessions, uploaded
        files' metadata, then every plaintext message they wrote, a page at a time."""
        user_id = caller.user_id
        async with self._db.acquire() as conn:
            repo = AccountRepository(conn)
            profile = await repo.export_profile(user_id)
            roles = await repo.export_roles(user_id)
            sessions = await repo.export_sessions(user_id)
        yield b'{"format":"voicechat-export/1","exported_at":'
        yield to_json(datetime.now().astimezone())
        yield b',"profile":' + to_json(profile)
        yield b',"roles":' + to_json(roles)
        yield b',"sessions":' + to_json(sessions)
        for name in ("files", "messages"):
            yield b',"' + name.encode() + b'":['
            first = True
            async for page in export_pages(self._db, name, user_id):
                for item in page:
                    yield (b"" if first else b",") + to_json(item)
                    first = False
            yield b"]"
        yield b"}"


async def _use_token(conn: Connection, token: str, purpose: TokenPurpose) -> UUID:
    digest = _digest(token)
    accepted = await AccountTokens(conn).use(digest, purpose)
    if accepted is None:
        await _refuse(conn, digest, purpose)
    assert accepted is not None
    return accepted.user_id


async def _refuse(conn: Connection, digest: bytes, purpose: TokenPurpose) -> None:
    why = await AccountTokens(conn).refusal(digest, purpose)
    if why == "used":
        raise Gone(
            "this code was already used; ask for a new one", code=ErrorCode.ACCOUNT_TOKEN_USED
        )
    if why == "expired":
        raise Gone("this code has expired; ask for a new one", code=ErrorCode.ACCOUNT_TOKEN_EXPIRED)
    raise BadRequest("this code is not valid", code=ErrorCode.ACCOUNT_TOKEN_INVALID)


async def _audit(
    conn: Connection,
    event: str,
    user_id: UUID,
    client: Client,
    *,
    details: dict[str, object] | None = None,
) -> None:
    await AuditLog(conn).record(
        event,
        user_id=user_id,
        target_id=user_id,
        ip_address=client.ip or None,
        user_agent=client.user_agent,
        details=details,
    )
