"""SSO through OpenID Connect providers (SPEC §3 "SSO (OIDC)").

A login runs in three requests:

1. `start` (`POST /auth/login {provider}`): a fresh `state`, `nonce` and PKCE verifier are kept
   in Valkey under the hash of `state`; the person's browser goes to the provider.
2. `finish` (`GET /auth/oidc/callback`): the `state` is taken (read and deleted at once), the
   code is redeemed with the verifier, the ID token is checked against the provider's JWKS
   (algorithm pinned, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`, `at_hash`), UserInfo is
   merged in, and the subject is provisioned or updated. The answer is a one-time `login_code`.
3. `exchange` (`POST /auth/oidc/exchange`): the client trades the `login_code` for a session.

Provider metadata and keys are fetched lazily and cached per process, so a provider that is
down when the server starts only fails the logins that need it, with 503 (unreachable) or
502 (answered nonsense). Tokens, codes and verifiers never reach a log or the audit log.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID

import httpx

from voicechat.auth import invites
from voicechat.auth.oidc import (
    PROVIDER_ERROR_CODE,
    IdentityProvider,
)
from voicechat.auth.service import AuthService, Client, TokenPair
from voicechat.cache import Cache, keys
from voicechat.crypto import token_hash
from voicechat.db.pool import Connection, Pool
from voicechat.db.repositories import AuditLog, User, UserRepository
from voicechat.db.repositories.accounts import AccountRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    VoicechatError,
)
from voicechat.settings import OidcProvider, Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/auth/oidc/callback"
# Short: a login waits on these calls, and a dead provider must fail fast.
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_USERNAME_CHARS = re.compile(r"[^a-z0-9_.-]+")
_USERNAME_MAX = 32
_USERNAME_ATTEMPTS = 8


# -- redirect URIs --------------------------------------------------------------------------


def check_redirect_uri(uri: str, allowlist: Sequence[str]) -> str:
    """Accept a client's `redirect_uri`: loopback HTTP on any port, or an allow-listed URI.

    Loopback means `http://127.0.0.1`, `http://[::1]` or `http://localhost`, with any port and
    path (RFC 8252 §7.3: a desktop client listens on an ephemeral port). Anything else must
    equal an entry of the allowlist exactly.

    Raises:
        BadRequest: `invalid_redirect_uri`.
    """
    if uri in allowlist:
        return uri
    refused = BadRequest(
        "redirect_uri must be a loopback http:// URI or on the server's allowlist",
        code=ErrorCode.INVALID_REDIRECT_URI,
    )
    # Backslashes, spaces and controls are where URL parsers disagree; a real one has none.
    if any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 for ch in uri):
        raise refused
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        raise refused from None
    if (
        parts.scheme != "http"
        or parts.hostname not in _LOOPBACK_HOSTS
        or parts.username is not None
        or parts.password is not None
        or parts.fragment
    ):
        raise refused
    return uri


def _with_query(uri: str, **params: str) -> str:
    """`uri` with `params` appended to its query (existing parameters are kept)."""
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    base, _, fragment = uri.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{encoded}"
    return f"{joined}#{fragment}" if fragment else joined


# -- mapping claims to a profile ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappedProfile:
    """The profile attributes a provider's claims map to (SPEC §3 defaults, configurable)."""

    display_name: str | None
    email: str | None
    avatar_url: str | None
    roles: tuple[str, ...]
    username_candidates: tuple[str, ...]


def _first_string(claims: Mapping[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _role_values(claims: Mapping[str, Any], names: Sequence[str]) -> tuple[str, ...]:
    """The values of the first roles claim present: a list of strings, or one string."""
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            # Keycloak sends group paths ("/moderators"); the last segment is the name.
            found = [v.strip().rsplit("/", 1)[-1] for v in value if isinstance(v, str)]
            return tuple(dict.fromkeys(v for v in found if 0 < len(v) <= 64))
    return ()


def sanitise_username(value: str) -> str | None:
    """A username of SPEC §3's shape made from `value`, or None if too little is left."""
    folded = _USERNAME_CHARS.sub("_", value.strip().lower()).strip("._-")[:_USERNAME_MAX]
    return folded if len(folded) >= 3 else None


def map_claims(config: OidcProvider, claims: Mapping[str, Any]) -> MappedProfile:
    """Apply the provider's attribute mapping to the merged ID token and UserInfo claims."""
    display_name = _first_string(claims, config.display_name_claims)
    email = _first_string(claims, config.email_claims)
    if email is not None and (len(email) > 254 or "@" not in email):
        email = None
    avatar = _first_string(claims, config.avatar_claims)
    if avatar is not None and (
        len(avatar) > 2048 or not avatar.startswith(("https://", "http://"))
    ):
        avatar = None
    hints = [
        _first_string(claims, ("preferred_username",)),
        email.split("@", 1)[0] if email else None,
        _first_string(claims, ("nickname", "name")),
    ]
    candidates = tuple(
        dict.fromkeys(c for c in (sanitise_username(h) for h in hints if h) if c is not None)
    )
    return MappedProfile(
        display_name=display_name[:64] if display_name else None,
        email=email,
        avatar_url=avatar,
        roles=_role_values(claims, config.roles_claims),
        username_candidates=candidates or ("user",),
    )


# -- the service -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SsoCallbackResult:
    """A finished provider login: the one-time code, and where the client wants it."""

    login_code: str
    redirect_uri: str | None
    expires_in: int


class SsoFailed(Exception):
    """A login that failed after its start was recognised, for a client that gave a
    `redirect_uri`: the callback sends the browser there with `error` instead of a page."""

    def __init__(self, error: VoicechatError, redirect_uri: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.redirect_uri = redirect_uri


class SsoService:
    """Starts and finishes OIDC logins against the configured providers."""

    def __init__(
        self,
        settings: Settings,
        db: Pool,
        cache: Cache,
        auth: AuthService,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._cache = cache
        self._auth = auth
        self._http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._owns_http = http is None
        self.providers = {p.id: IdentityProvider(p, self._http) for p in settings.oidc_providers}
        self.callback_url = settings.public_base_url + CALLBACK_PATH

    async def aclose(self) -> None:
        """Close the HTTP client (if this service made it)."""
        if self._owns_http:
            await self._http.aclose()

    def _provider(self, provider_id: str) -> IdentityProvider:
        provider = self.providers.get(provider_id)
        if provider is None:
            raise NotFound("no such SSO provider", code=ErrorCode.UNKNOWN_PROVIDER)
        return provider

    async def start(
        self,
        provider: str,
        redirect_uri: str | None,
        client: Client | None = None,
        *,
        invite: str | None = None,
    ) -> str:
        """The provider's authorization URL for a new login.

        Args:
            provider: a configured provider id.
            redirect_uri: where the callback sends the client its `login_code` (loopback or
                allow-listed); None for a page that shows the code.
            client: the caller, for the per-IP login limit.
            invite: an invite code, used if the login provisions a new account (kept with
                the state; checked, and counted, only then).

        Raises:
            NotFound: `unknown_provider`.
            BadRequest: `invalid_redirect_uri`.
            ServiceUnavailable / BadGateway: the provider is down or misconfigured.
        """
        idp = self._provider(provider)
        if redirect_uri is not None:
            check_redirect_uri(redirect_uri, self._settings.oidc_redirect_allowlist)
        if client is not None:
            await self._auth.limits.hit(self._settings.rate_limit_login_ip, "login-ip", client.ip)
        metadata = await idp.metadata()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters; RFC 7636 asks for 43 to 128
        key = keys.oidc_state(token_hash(state))
        async with self._cache.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "provider": idp.id,
                    "nonce": nonce,
                    "verifier": verifier,
                    "redirect_uri": redirect_uri or "",
                    "invite": invite or "",
                },
            )
            pipe.expire(key, keys.OIDC_STATE_TTL_SECONDS)
            await pipe.execute()
        return idp.authorization_url(
            metadata, redirect_uri=self.callback_url, state=state, nonce=nonce, verifier=verifier
        )

    async def _take_state(self, state: str) -> dict[str, str] | None:
        key = keys.oidc_state(token_hash(state))
        async with self._cache.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        if not raw:
            return None
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }

    async def finish(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        client: Client,
    ) -> SsoCallbackResult:
        """Handle the provider's redirect: check `state`, redeem the code, provision the user.

        Every outcome is audited (`login.sso_failed` with a reason, or `user.provisioned`);
        the session itself is opened and audited by :meth:`exchange`.

        Raises:
            BadRequest: `invalid_state` (unknown, used or expired), `missing_code`.
            Unauthorized: `sso_denied`, `sso_code_rejected`, `invalid_id_token`,
                `invalid_nonce`, `invalid_userinfo`.
            Forbidden: a new subject the registration mode refuses (`registration_closed`,
                `invite_required`, `invite_invalid`).
            ServiceUnavailable / BadGateway: the provider is down or misbehaves.
        """
        stored = await self._take_state(state) if state else None
        if stored is None or stored.get("provider") not in self.providers:
            await self._audit_failure(client, None, "invalid_state")
            raise BadRequest(
                "this SSO login is unknown, expired or already finished; start again",
                code=ErrorCode.INVALID_STATE,
            )
        try:
            return await self._finish(stored, code=code, error=error, client=client)
        except VoicechatError as exc:
            if stored.get("redirect_uri"):
                # The client waits on its redirect_uri (a loopback listener): tell it there.
                raise SsoFailed(exc, stored["redirect_uri"]) from None
            raise

    async def _finish(
        self, stored: dict[str, Any], *, code: str | None, error: str | None, client: Client
    ) -> SsoCallbackResult:
        idp = self.providers[stored["provider"]]
        if error is not None:
            reason = error if PROVIDER_ERROR_CODE.match(error) else "unknown"
            await self._audit_failure(client, idp.id, f"provider_error:{reason}")
            raise Unauthorized(
                f"the identity provider did not log you in ({reason})", code=ErrorCode.SSO_DENIED
            )
        if not code:
            await self._audit_failure(client, idp.id, "missing_code")
            raise BadRequest("the provider's redirect carries no code", code=ErrorCode.MISSING_CODE)
        try:
            metadata = await idp.metadata()
            id_token, access_token = await idp.exchange_code(
                metadata, code, verifier=stored["verifier"], redirect_uri=self.callback_url
            )
            claims = await idp.verify_id_token(
                metadata, id_token, nonce=stored["nonce"], access_token=access_token
            )
            subject = str(claims["sub"])
            userinfo = await idp.userinfo(metadata, access_token, subject)
        except (Unauthorized, BadGateway, ServiceUnavailable) as exc:
            await self._audit_failure(client, idp.id, exc.code)
            raise
        merged = {**claims, **userinfo}
        try:
            user = await self._provision(
                idp.config,
                subject,
                map_claims(idp.config, merged),
                client,
                invite=stored.get("invite") or None,
            )
        except (Conflict, Forbidden) as exc:
            await self._audit_failure(client, idp.id, exc.code)
            raise
        login_code = secrets.token_urlsafe(32)
        await self._cache.set(
            keys.oidc_login_code(token_hash(login_code)),
            json.dumps({"user_id": str(user.id), "provider": idp.id}),
            ex=keys.OIDC_LOGIN_CODE_TTL_SECONDS,
        )
        return SsoCallbackResult(
            login_code=login_code,
            redirect_uri=stored.get("redirect_uri") or None,
            expires_in=keys.OIDC_LOGIN_CODE_TTL_SECONDS,
        )

    async def exchange(self, login_code: str, *, client: Client) -> TokenPair:
        """Trade a one-time `login_code` for a session (the code dies on first use).

        Raises:
            Unauthorized: `invalid_login_code` (unknown, used or expired).
        """
        await self._auth.limits.hit(self._settings.rate_limit_login_ip, "login-ip", client.ip)
        raw = await self._cache.getdel(keys.oidc_login_code(token_hash(login_code)))
        if raw is None:
            await self._audit_failure(client, None, "invalid_login_code")
            raise Unauthorized(
                "the login code is unknown, expired or already used",
                code=ErrorCode.INVALID_LOGIN_CODE,
            )
        entry = json.loads(raw)
        async with self._db.acquire() as conn:
            try:
                user = await UserRepository(conn).get(UUID(entry["user_id"]))
            except NotFound:
                raise Unauthorized(
                    "the account no longer exists", code=ErrorCode.INVALID_LOGIN_CODE
                ) from None
        return await self._auth.open_session(user, client, method=f"oidc:{entry['provider']}")

    # -- provisioning ------------------------------------------------------------------------

    async def _provision(
        self,
        config: OidcProvider,
        subject: str,
        profile: MappedProfile,
        client: Client,
        *,
        invite: str | None = None,
    ) -> User:
        """Find the subject's user (refreshing the mapped attributes) or create one.

        Users are matched by (provider, subject) only, never by email: an email address
        from a provider proves nothing about a local account of the same address. A new
        subject is admitted as a local registration is (VOICECHAT_REGISTRATION, auth/invites.py)
        unless the provider is `trusted`.

        Raises:
            Forbidden: `registration_closed`, `invite_required`, `invite_invalid`.
        """
        changes: dict[str, object] = {
            "display_name": profile.display_name,
            "email": profile.email,
            "avatar_url": profile.avatar_url,
        }
        async with self._db.acquire() as conn:
            users = UserRepository(conn)
            user = await users.find_by_subject(config.id, subject)
            if user is None and await AccountRepository(conn).is_tombstone_subject(
                config.id, subject
            ):
                # A deleted account is not silently re-created (docs/accounts.md, "Deletion").
                raise Forbidden("this account was deleted", code=ErrorCode.ACCOUNT_DELETED)
            if user is None:
                async with conn.transaction():
                    # The lock registration takes too: "first user" and username picks serialise.
                    await users.lock_account_creation()
                    user = await users.find_by_subject(config.id, subject)
                    if user is None:
                        used = await invites.admit(
                            conn,
                            self._settings.registration,
                            invite,
                            first=await users.count() == 0,
                            trusted=config.trusted,
                        )
                        user = await self._create(conn, config, subject, profile, client)
                        if used is not None:
                            await invites.join(
                                conn,
                                used,
                                user.id,
                                ip_address=client.ip or None,
                                user_agent=client.user_agent,
                            )
            if any(getattr(user, k) != v for k, v in changes.items()):
                user = await users.update_profile(user.id, changes)
            for role in profile.roles:
                await users.assign_role(user.id, role)
        return user

    async def _create(
        self,
        conn: Connection,
        config: OidcProvider,
        subject: str,
        profile: MappedProfile,
        client: Client,
    ) -> User:
        users = UserRepository(conn)
        first = await users.count() == 0
        base = profile.username_candidates[0]
        names = [*profile.username_candidates]
        names += [
            f"{base[: _USERNAME_MAX - 5]}-{secrets.randbelow(10_000):04d}"
            for _ in range(_USERNAME_ATTEMPTS)
        ]
        for username in names:
            if await users.find_by_username(username) is not None:
                continue
            try:
                async with conn.transaction():  # a savepoint: a lost race leaves the rest intact
                    user = await users.create(
                        username,
                        auth_method="oidc",
                        external_id=subject,
                        provider=config.id,
                        display_name=profile.display_name,
                        email=profile.email,
                    )
            except Conflict:
                continue
            if first:
                await users.assign_role(user.id, "administrator")
            await AuditLog(conn).record(
                "user.provisioned",
                user_id=user.id,
                ip_address=client.ip or None,
                user_agent=client.user_agent,
                details={"provider": config.id, "username": username, "administrator": first},
            )
            return user
        raise Conflict(
            "no free username could be found for this account",
            code=ErrorCode.SSO_PROVISIONING_FAILED,
        )

    async def _audit_failure(self, client: Client, provider: str | None, reason: str) -> None:
        async with self._db.acquire() as conn:
            await AuditLog(conn).record(
                "login.sso_failed",
                ip_address=client.ip or None,
                user_agent=client.user_agent,
                details={"provider": provider, "reason": reason},
            )
