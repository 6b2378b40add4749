"""The auth service: every way in and out of a session, with its limits and audit trail.

Routes stay thin: they parse, call one method here, and serialise. Nothing here knows HTTP.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from voicechat.auth import invites, mfa
from voicechat.auth.administration import refuse_disabled
from voicechat.auth.bot_tokens import BotTokens
from voicechat.auth.live_sessions import LiveSessions
from voicechat.auth.mfa_keys import backup_code_key, open_mfa_secret, seal_mfa_secret
from voicechat.auth.passwords import Passwords
from voicechat.auth.ratelimit import RateLimiter
from voicechat.auth.sessions import SessionInfo, SessionStore
from voicechat.auth.tokens import AccessClaims, AccessTokens
from voicechat.cache import Cache, keys
from voicechat.crypto import DecryptionError, keyed_hash, token_hash
from voicechat.db.pool import Connection, Pool
from voicechat.db.repositories import (
    AuditLog,
    MfaRepository,
    SessionRepository,
    User,
    UserRepository,
)
from voicechat.db.repositories.accounts import AccountRepository
from voicechat.db.repositories.moderation import ModerationRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from voicechat.server_keys import MasterKeyUnavailable, ServerKeys
from voicechat.settings import Settings

log = logging.getLogger(__name__)

MFA_CHALLENGE_TTL_SECONDS = 300
MFA_CHALLENGE_ATTEMPTS = 5
_LOGIN_FAILED = "invalid username or password"


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, for sessions, limits and the audit log."""

    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a successful login returns."""

    user: User
    session_id: UUID
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """A password login that still needs its second factor."""

    mfa_token: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The caller of an authenticated request."""

    user_id: UUID
    session_id: UUID
    claims: AccessClaims
    #: A bot's token (auth/bot_tokens.py); `session_id` is then the token's id.
    bot: bool = False


#: A bot's claims never expire by time: its token lives until it is revoked.
_BOT_CLAIMS_EXPIRY = 2**62


class AuthService:
    """Registration, login, MFA, refresh, logout and session management."""

    def __init__(self, settings: Settings, keys_: ServerKeys, db: Pool, cache: Cache) -> None:
        self.settings = settings
        self._db = db
        self._cache = cache
        self._master_keys = keys_.master_keys
        # Loaded on first use (auth/mfa_keys.py); its value never changes, only its wrapping.
        self._backup_key: bytes | None = None
        self.passwords = Passwords()
        self.tokens = AccessTokens(
            keys_, issuer=settings.jwt_issuer, ttl_seconds=settings.access_token_ttl
        )
        self.sessions = SessionStore(
            cache,
            ttl_seconds=settings.refresh_token_ttl,
            grace_seconds=settings.refresh_grace_seconds,
        )
        self.live = LiveSessions(cache, self.sessions)
        self.limits = RateLimiter(cache)
        self.bot_tokens = BotTokens(
            db, self.live, self.limits, failure_limit=settings.rate_limit_bot_token_ip
        )

    async def start(self) -> None:
        """Start following revocations (cached session verdicts) and writing "last used"."""
        await self.live.start()
        await self.bot_tokens.start()

    async def stop(self) -> None:
        """Stop those tasks; pending "last used" times are written first."""
        await self.bot_tokens.stop()
        await self.live.stop()

    # -- registration and login ---------------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        *,
        client: Client,
        email: str | None = None,
        display_name: str | None = None,
        invite: str | None = None,
    ) -> TokenPair:
        """Create a local account and log it in. The first account is the administrator.

        Raises:
            Conflict: the username is taken.
            Forbidden: the registration mode refuses it (auth/invites.py).
            RateLimited: too many registrations from this IP.
        """
        await self.limits.hit(self.settings.rate_limit_register_ip, "register-ip", client.ip)
        mode = self.settings.registration
        if (refused := invites.refusal(mode, invite)) is not None:
            # Refused before the costly hash; decided for good under the lock below.
            async with self._db.acquire() as conn:
                if await UserRepository(conn).count() > 0:
                    raise refused
        password_hash = await self.passwords.hash(password)
        async with self._db.acquire() as conn, conn.transaction():
            users = UserRepository(conn)
            await users.lock_account_creation()
            first = await users.count() == 0
            used = await invites.admit(conn, mode, invite, first=first)
            user = await users.create(
                username, password_hash=password_hash, display_name=display_name, email=email
            )
            if first:
                await users.assign_role(user.id, "administrator")
            if used is not None:
                await invites.join(
                    conn, used, user.id, ip_address=client.ip or None, user_agent=client.user_agent
                )
            await AuditLog(conn).record(
                "user.registered",
                user_id=user.id,
                ip_address=client.ip,
                user_agent=client.user_agent,
                details={"administrator": first},
            )
        return await self.open_session(user, client, method="register")

    async def login(
        self, username: str, password: str, *, client: Client
    ) -> TokenPair | MfaChallenge:
        """Check a password; returns tokens, or a challenge when MFA is on.

        An unknown username and a wrong password take the same time and give the same error.

        Raises:
            Unauthorized: wrong username or password.
            RateLimited: too many attempts from this IP or on this account.
        """
        account = username.strip().lower()
        # Both attempts are counted before the password is looked at (auth/ratelimit.py):
        # concurrent guesses cannot all slip under the limit.
        await self.limits.hit(self.settings.rate_limit_login_ip, "login-ip", client.ip)
        await self.limits.hit(self.settings.rate_limit_login, "login-account", account)
        async with self._db.acquire() as conn:
            user = await UserRepository(conn).find_by_username(account)
        if user is not None and user.bot:
            raise Forbidden(
                "bot accounts cannot log in with a password: send Authorization: Bot <token>",
                code=ErrorCode.NOT_FOR_BOTS,
            )
        stored = user.password_hash if user is not None else None
        if not await self.passwords.verify(stored, password) or user is None:
            await self._audit(
                "login.failed", client, user.id if user else None, {"username": account[:64]}
            )
            if user is None:
                async with self._db.acquire() as conn:
                    # A tombstone keeps its username for a while (docs/accounts.md, "Deletion").
                    if await AccountRepository(conn).is_tombstone_username(account):
                        raise Unauthorized(
                            "this account was deleted", code=ErrorCode.ACCOUNT_DELETED
                        )
            raise Unauthorized(_LOGIN_FAILED, code=ErrorCode.INVALID_CREDENTIALS)
        if self.passwords.needs_rehash(stored or ""):
            new_hash = await self.passwords.hash(password)
            async with self._db.acquire() as conn:
                await UserRepository(conn).set_password_hash(user.id, new_hash)
        # The right password forgives the attempts before it (the second factor, if any, has
        # limits of its own).
        await self.limits.clear(self.settings.rate_limit_login, "login-account", account)
        if user.mfa_enabled:
            async with self._db.acquire() as conn:
                await refuse_disabled(conn, user.id)  # before the second factor is asked for
                await refuse_banned(conn, user.id)
            return await self._mfa_challenge(user, client)
        return await self.open_session(user, client, method="password")

    async def open_session(self, user: User, client: Client, *, method: str) -> TokenPair:
        """Start a session for an authenticated user (password, MFA, SSO) and audit it.

        Raises:
            Forbidden: the account is disabled (`account_disabled`) or banned (`banned`).
        """
        async with self._db.acquire() as conn:
            await refuse_disabled(conn, user.id)
            await refuse_banned(conn, user.id)
        session_id, refresh = await self.sessions.create(
            user.id, ip=client.ip, user_agent=client.user_agent
        )
        async with self._db.acquire() as conn:
            await SessionRepository(conn).record(
                session_id,
                user.id,
                refresh_hash=token_hash(refresh),
                ttl_seconds=self.settings.refresh_token_ttl,
                ip=client.ip or None,
                user_agent=client.user_agent,
            )
            await AuditLog(conn).record(
                "login.succeeded",
                user_id=user.id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
                details={"method": method, "session_id": str(session_id)},
            )
        return TokenPair(
            user=user,
            session_id=session_id,
            access_token=self.tokens.issue(user.id, session_id),
            refresh_token=refresh,
            expires_in=self.tokens.ttl_seconds,
        )

    # -- MFA --------------------------------------------------------------------------------

    async def _mfa_challenge(self, user: User, client: Client) -> MfaChallenge:
        token = secrets.token_urlsafe(32)
        key = keys.mfa_challenge(token_hash(token))
        async with self._cache.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"user_id": str(user.id), "attempts": 0})
            pipe.expire(key, MFA_CHALLENGE_TTL_SECONDS)
            await pipe.execute()
        await self._audit("login.mfa_required", client, user.id)
        return MfaChallenge(mfa_token=token)

    async def finish_mfa_login(self, mfa_token: str, code: str, *, client: Client) -> TokenPair:
        """Second step of a login with MFA: a TOTP code or an unused backup code.

        Raises:
            Unauthorized: unknown or expired challenge, or a wrong code.
            RateLimited: too many codes tried on this account.
        """
        key = keys.mfa_challenge(token_hash(mfa_token))
        raw_user = await self._cache.hget(key, "user_id")
        if raw_user is None:
            raise Unauthorized(
                "the MFA challenge expired; log in again", code=ErrorCode.INVALID_MFA_TOKEN
            )
        user_id = UUID(raw_user.decode() if isinstance(raw_user, bytes) else raw_user)
        await self.limits.hit(self.settings.rate_limit_mfa_ip, "mfa-ip", client.ip)
        await self.limits.hit(self.settings.rate_limit_mfa, "mfa", str(user_id))
        if await self._cache.hincrby(key, "attempts", 1) > MFA_CHALLENGE_ATTEMPTS:
            await self._cache.delete(key)
            raise Unauthorized(
                "too many wrong codes; log in again", code=ErrorCode.INVALID_MFA_TOKEN
            )
        async with self._db.acquire() as conn:
            accepted, how = await self._accept_code(conn, user_id, code, allow_backup=True)
            if not accepted:
                await AuditLog(conn).record(
                    "mfa.failed",
                    user_id=user_id,
                    ip_address=client.ip or None,
                    user_agent=client.user_agent,
                )
                raise Unauthorized("wrong code", code=ErrorCode.INVALID_MFA_CODE)
            user = await UserRepository(conn).get(user_id)
        await self._cache.delete(key)
        return await self.open_session(user, client, method=f"password+{how}")

    async def _accept_code(
        self, conn: Connection, user_id: UUID, code: str, *, allow_backup: bool
    ) -> tuple[bool, Literal["totp", "backup_code"]]:
        repo = MfaRepository(conn)
        sealed, key_id = await repo.sealed_secret(user_id)
        secret = self._open_secret(user_id, sealed, key_id)
        code = code.strip().replace(" ", "")
        if secret is not None:
            step = mfa.matching_step(secret, code)
            if step is not None and await repo.claim_totp_step(user_id, step):
                return True, "totp"
        if allow_backup and not code.isdigit():
            backup_key = await self._backup_code_key(conn)
            digest = keyed_hash(backup_key, mfa.normalize_backup_code(code).encode())
            if await repo.use_backup_code(user_id, digest):
                return True, "backup_code"
        return False, "totp"

    async def check_mfa_code(self, user_id: UUID, code: str) -> bool:
        """True for a current TOTP code or an unused backup code of the user's (consumed), as
        re-authentication for account deletion (auth/accounts.py)."""
        async with self._db.acquire() as conn:
            accepted, _ = await self._accept_code(conn, user_id, code, allow_backup=True)
        return accepted

    def _open_secret(self, user_id: UUID, sealed: bytes | None, key_id: bytes | None) -> str | None:
        if sealed is None:
            return None
        try:
            return open_mfa_secret(self._master_keys, user_id, sealed, key_id)
        except MasterKeyUnavailable as exc:
            log.error(
                "the MFA secret of user %s is sealed under master key %s, which is not configured",
                user_id,
                exc.key_id.hex(),
            )
            raise ServiceUnavailable(
                "the second factor cannot be checked: its secret is sealed under a master key "
                "this server does not have",
                code=ErrorCode.MASTER_KEY_UNAVAILABLE,
            ) from None
        except DecryptionError:
            log.error("the MFA secret of user %s does not decrypt under the master key", user_id)
            return None

    async def _backup_code_key(self, conn: Connection) -> bytes:
        if self._backup_key is None:
            try:
                self._backup_key = await backup_code_key(conn, self._master_keys)
            except MasterKeyUnavailable:
                raise ServiceUnavailable(
                    "backup codes cannot be checked: their key is sealed under a master key "
                    "this server does not have",
                    code=ErrorCode.MASTER_KEY_UNAVAILABLE,
                ) from None
        return self._backup_key

    async def setup_mfa(self, caller: Authenticated, client: Client) -> tuple[str, str]:
        """Begin MFA set-up: a new secret and its otpauth URI (inactive until confirmed).

        Raises:
            Conflict: MFA is already on (turn it off first).
            Forbidden: a bot (bots hold no second factor).
        """
        if caller.bot:
            raise Forbidden("bot accounts cannot set up MFA", code=ErrorCode.NOT_FOR_BOTS)
        async with self._db.acquire() as conn:
            user = await UserRepository(conn).get(caller.user_id)
            if user.mfa_enabled:
                raise Conflict("MFA is already enabled", code=ErrorCode.MFA_ALREADY_ENABLED)
            secret = mfa.new_secret()
            key_id, sealed = seal_mfa_secret(self._master_keys, user.id, secret)
            await MfaRepository(conn).set_pending_secret(user.id, sealed, master_key_id=key_id)
            await AuditLog(conn).record(
                "mfa.setup_started",
                user_id=user.id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
            )
        return secret, mfa.provisioning_uri(secret, user.username, self.settings.jwt_issuer)

    async def confirm_mfa(self, caller: Authenticated, code: str, client: Client) -> list[str]:
        """Finish set-up with a first code; returns the ten backup codes (shown once).

        Raises:
            BadRequest: set-up was not started, or MFA is already on.
            Unauthorized: the code is wrong.
        """
        await self.limits.hit(self.settings.rate_limit_mfa, "mfa", str(caller.user_id))
        async with self._db.acquire() as conn:
            repo = MfaRepository(conn)
            sealed, enabled = await repo.state(caller.user_id)
            if enabled:
                raise Conflict("MFA is already enabled", code=ErrorCode.MFA_ALREADY_ENABLED)
            if sealed is None:
                raise BadRequest("call /auth/mfa/setup first", code=ErrorCode.MFA_NOT_STARTED)
            accepted, _ = await self._accept_code(conn, caller.user_id, code, allow_backup=False)
            if not accepted:
                raise Unauthorized("wrong code", code=ErrorCode.INVALID_MFA_CODE)
            codes = mfa.new_backup_codes()
            await repo.enable(
                caller.user_id,
                [keyed_hash(await self._backup_code_key(conn), c.encode()) for c in codes],
            )
            await AuditLog(conn).record(
                "mfa.enabled",
                user_id=caller.user_id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
            )
        return codes

    async def disable_mfa(self, caller: Authenticated, code: str, client: Client) -> None:
        """Turn MFA off; needs a current code (or a backup code).

        Raises:
            BadRequest: MFA is not on.
            Unauthorized: the code is wrong.
        """
        await self.limits.hit(self.settings.rate_limit_mfa, "mfa", str(caller.user_id))
        async with self._db.acquire() as conn:
            repo = MfaRepository(conn)
            _, enabled = await repo.state(caller.user_id)
            if not enabled:
                raise BadRequest("MFA is not enabled", code=ErrorCode.MFA_NOT_ENABLED)
            accepted, _ = await self._accept_code(conn, caller.user_id, code, allow_backup=True)
            if not accepted:
                raise Unauthorized("wrong code", code=ErrorCode.INVALID_MFA_CODE)
            await repo.disable(caller.user_id)
            await AuditLog(conn).record(
                "mfa.disabled",
                user_id=caller.user_id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
            )

    # -- tokens and sessions ------------------------------------------------------------

    async def authenticate(self, access_token: str) -> Authenticated:
        """Verify an access token and that its session is still live.

        Both answers come from memory when they can: a token's signature is checked once
        (auth/tokens.py), and a session's verdict is kept for at most a second and dropped as
        soon as any process ends the session (auth/live_sessions.py).

        Raises:
            Unauthorized: bad token, or its session was revoked.
        """
        claims = self.tokens.verify(access_token)
        owner = await self.live.owner(claims.session_id)
        if owner is None or owner != claims.user_id:
            raise Unauthorized(
                "the session has ended; log in again", code=ErrorCode.SESSION_REVOKED
            )
        self.live.used(claims.session_id)
        return Authenticated(user_id=claims.user_id, session_id=claims.session_id, claims=claims)

    async def authenticate_bot(self, token: str, ip: str) -> Authenticated:
        """Verify a bot token (`Authorization: Bot <token>`): the bot, as the caller.

        Raises:
            Unauthorized: unknown, rotated or revoked token, or a disabled or deleted bot.
            RateLimited: too many such tokens from this IP.
        """
        token_id, bot_id = await self.bot_tokens.verify(token, ip)
        claims = AccessClaims(
            user_id=bot_id,
            session_id=token_id,
            token_id=token_id.hex,
            expires_at=_BOT_CLAIMS_EXPIRY,
        )
        return Authenticated(user_id=bot_id, session_id=token_id, claims=claims, bot=True)

    async def authenticate_credential(self, credential: str, ip: str) -> Authenticated:
        """The gateway's `auth` token: an access token, or `Bot <token>` for a bot.

        Raises:
            Unauthorized: as :meth:`authenticate` or :meth:`authenticate_bot`.
            RateLimited: too many unknown bot tokens from this IP.
        """
        scheme, _, rest = credential.partition(" ")
        if rest and scheme.lower() == "bot":
            return await self.authenticate_bot(rest.strip(), ip)
        return await self.authenticate(credential)

    async def refresh(self, refresh_token: str, *, client: Client) -> TokenPair:
        """Rotate a refresh token. A token that was already rotated revokes its session.

        Raises:
            Unauthorized: unknown, expired, revoked or reused token.
            RateLimited: refreshing too often from this IP.
        """
        await self.limits.hit(self.settings.rate_limit_refresh, "refresh-ip", client.ip)
        # Counted before the rotation, once the owner is known: a client stuck in a refresh
        # loop is slowed down on every address it uses, and a refused refresh leaves its
        # token valid (counting after the rotation would lose the new token with the 429).
        owner = await self.sessions.owner_of_refresh_token(refresh_token)
        if owner is not None:
            await self.limits.hit(self.settings.rate_limit_refresh, "refresh-account", str(owner))
        rotation = await self.sessions.rotate(refresh_token)
        if rotation.outcome == "reuse":
            assert rotation.session_id is not None
            await self._end_session(rotation.session_id, client, "refresh.reuse_detected")
            raise Unauthorized(
                "this refresh token was already used; the session has been ended",
                code=ErrorCode.REFRESH_TOKEN_REUSED,
            )
        if rotation.outcome == "raced":
            await self._audit("refresh.replayed_in_grace", client, rotation.user_id)
            raise Unauthorized(
                "this refresh token was just rotated; use the newest one",
                code=ErrorCode.REFRESH_TOKEN_ROTATED,
            )
        if rotation.outcome == "unknown" or rotation.user_id is None:
            # A ban ended the session: say so (403 `banned`) rather than "invalid token".
            async with self._db.acquire() as conn:
                if await ModerationRepository(conn).banned_owner_of_refresh(
                    token_hash(refresh_token)
                ):
                    raise Forbidden("this account is banned from the server", code=ErrorCode.BANNED)
            raise Unauthorized(
                "invalid or expired refresh token", code=ErrorCode.INVALID_REFRESH_TOKEN
            )
        assert rotation.session_id is not None
        assert rotation.refresh_token is not None
        async with self._db.acquire() as conn:
            await SessionRepository(conn).rotated(
                rotation.session_id,
                refresh_hash=token_hash(rotation.refresh_token),
                ttl_seconds=self.settings.refresh_token_ttl,
            )
            user = await UserRepository(conn).get(rotation.user_id)
        return TokenPair(
            user=user,
            session_id=rotation.session_id,
            access_token=self.tokens.issue(user.id, rotation.session_id),
            refresh_token=rotation.refresh_token,
            expires_in=self.tokens.ttl_seconds,
        )

    async def logout(self, caller: Authenticated, client: Client) -> None:
        """End the caller's session: its access and refresh tokens stop working at once."""
        await self._end_session(caller.session_id, client, "logout")

    async def list_sessions(self, caller: Authenticated) -> list[SessionInfo]:
        """The caller's live sessions."""
        return await self.sessions.list_for_user(caller.user_id)

    async def revoke_session(self, caller: Authenticated, session_id: UUID, client: Client) -> None:
        """End one of the caller's sessions.

        Raises:
            NotFound: no such live session of the caller's.
        """
        info = await self.sessions.get(session_id)
        if info is None or info.user_id != caller.user_id:
            raise NotFound("no such session", code=ErrorCode.SESSION_NOT_FOUND)
        await self._end_session(session_id, client, "session.revoked")

    async def _end_session(self, session_id: UUID, client: Client, event: str) -> None:
        user_id = await self.sessions.revoke(session_id)
        # This process refuses the session at once; the others on the revocation message.
        self.live.forget(session_id)
        async with self._db.acquire() as conn:
            await SessionRepository(conn).revoked(session_id)
            await AuditLog(conn).record(
                event,
                user_id=user_id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
                details={"session_id": str(session_id)},
            )

    async def _audit(
        self,
        event: str,
        client: Client,
        user_id: UUID | None,
        details: dict[str, object] | None = None,
    ) -> None:
        async with self._db.acquire() as conn:
            await AuditLog(conn).record(
                event,
                user_id=user_id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
                details=details,
            )


async def refuse_banned(conn: Connection, user_id: UUID) -> None:
    """Refuse to open a session for a banned account (docs/moderation.md "Bans").

    Raises:
        Forbidden: `banned`.
    """
    if await ModerationRepository(conn).is_banned(user_id):
        raise Forbidden("this account is banned from the server", code=ErrorCode.BANNED)
