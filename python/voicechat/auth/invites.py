"""Who may create an account (VOICECHAT_REGISTRATION), and the invites that let them.

The modes (SPEC §3 "Moderation and administration"):

- `invite` (the default): the first account registers freely and becomes the administrator;
  every later one needs an invite, used up atomically in the registering transaction.
- `open`: anyone registers; an invite given anyway still grants its roles.
- `closed`: after the first account, only an operator (`voicechat admin`) creates accounts.

Local registration (`AuthService.register`) and SSO provisioning (`SsoService`) both call
:func:`admit` under the account-creation lock, then :func:`join` once the user exists; a
provider marked `trusted` skips the invite (its directory already vouches for the person).

Codes are 16 characters of the URL-safe base64 alphabet (`secrets.token_urlsafe(12)`: 96
random bits). `GET /invites/{code}` is limited per IP (`VOICECHAT_RATE_LIMIT_INVITE_IP`,
30/minute), so a guesser facing even a million live invites has a chance of about 2^-76 per
guess: an invite code is as safe to paste into a chat as a short-lived password is not.
"""

from __future__ import annotations

import secrets
from typing import Literal
from uuid import UUID

from voicechat.chat.permissions import Permission, require_global
from voicechat.db.pool import Connection
from voicechat.db.repositories import AuditLog
from voicechat.db.repositories.invites import Invite, InviteRepository, InviteUse
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden, NotFound

RegistrationMode = Literal["invite", "open", "closed"]

#: `secrets.token_urlsafe(12)`: 16 characters, 96 random bits (the module docstring says why).
CODE_BYTES = 12


def new_invite_code() -> str:
    """A fresh random invite code, URL-safe."""
    return secrets.token_urlsafe(CODE_BYTES)


def refusal(mode: RegistrationMode, invite: str | None) -> Forbidden | None:
    """Why a non-first account may not be created before any invite is looked at, if so."""
    if mode == "closed":
        return Forbidden(
            "registration is closed on this server; ask its operator for an account",
            code=ErrorCode.REGISTRATION_CLOSED,
        )
    if mode == "invite" and not invite:
        return Forbidden("this server needs an invite to register", code=ErrorCode.INVITE_REQUIRED)
    return None


def invalid_invite() -> Forbidden:
    """The one refusal for an unknown, revoked, expired or used-up invite."""
    return Forbidden(
        "this invite is not valid (unknown, revoked, expired or used up)",
        code=ErrorCode.INVITE_INVALID,
    )


async def admit(
    conn: Connection,
    mode: RegistrationMode,
    invite: str | None,
    *,
    first: bool,
    trusted: bool = False,
) -> InviteUse | None:
    """Decide whether an account may be created now, counting the invite's use if one is given.

    Call inside the transaction that creates the account, after taking the account-creation
    lock (so "first" holds until commit).

    Args:
        conn: the registering transaction.
        mode: VOICECHAT_REGISTRATION.
        invite: the code the person brought, if any.
        first: no account exists yet (the first one is always admitted).
        trusted: an SSO provider the operator vouches for (admitted in every mode).

    Returns:
        The counted use of the invite, or None when none was given (or needed).

    Raises:
        Forbidden: `registration_closed`, `invite_required`, `invite_invalid`.
    """
    if not first and not trusted:
        refused = refusal(mode, invite)
        if refused is not None:
            raise refused
    if not invite:
        return None
    used = await InviteRepository(conn).use(invite)
    if used is None:
        raise invalid_invite()
    return used


async def join(
    conn: Connection,
    used: InviteUse,
    user_id: UUID,
    *,
    ip_address: str | None,
    user_agent: str | None,
) -> list[UUID]:
    """Give a new account its invite's roles and audit `invite.use`; returns the roles given."""
    granted = await InviteRepository(conn).grant_roles(used.code, user_id)
    await AuditLog(conn).record(
        "invite.use",
        user_id=user_id,
        target_id=used.created_by,
        ip_address=ip_address,
        user_agent=user_agent,
        details={
            "code_prefix": code_prefix(used.code),
            "uses": used.uses,
            "max_uses": used.max_uses,
            "role_ids": [str(r) for r in granted],
        },
    )
    return granted


async def check_grantable_roles(conn: Connection, creator_id: UUID, role_ids: list[UUID]) -> None:
    """Insist that `creator_id` may hand out `role_ids` through an invite.

    Granting a role on join is assigning it: it needs `manage_roles`, every permission the
    role grants (as `PUT /users/{id}/roles/{role_id}` asks), and a highest role above it
    (administrators are above every role).

    Raises:
        Forbidden: `missing_permission`, `permission_escalation`, `role_above_yours`.
        NotFound: `role_not_found`.
    """
    if not role_ids:
        return
    granted = await require_global(conn, creator_id, Permission.MANAGE_ROLES)
    repo = InviteRepository(conn)
    ranks = {rank.id: rank for rank in await repo.role_ranks(role_ids)}
    missing = [r for r in role_ids if r not in ranks]
    if missing:
        raise NotFound("no such role", code=ErrorCode.ROLE_NOT_FOUND)
    administrator = Permission.ADMINISTRATOR in granted
    highest = await repo.highest_position(creator_id)
    for rank in ranks.values():
        lacking = sorted(set(rank.permissions) - granted)
        if lacking and not administrator:
            raise Forbidden(
                f"you cannot grant {lacking[0]} without holding it",
                code=ErrorCode.PERMISSION_ESCALATION,
            )
        if not administrator and rank.position >= highest:
            raise Forbidden(
                "an invite can only grant roles below your highest role",
                code=ErrorCode.ROLE_ABOVE_YOURS,
            )


async def create_invite(
    conn: Connection,
    *,
    created_by: UUID | None,
    max_uses: int | None,
    expires_in: float | None,
    role_ids: list[UUID],
    ip_address: str | None = None,
    user_agent: str | None = None,
) -> Invite:
    """Make an invite and audit `invite.create` (permissions are the caller's to check)."""
    async with conn.transaction():
        invite = await InviteRepository(conn).create(
            new_invite_code(),
            created_by=created_by,
            max_uses=max_uses,
            expires_in=expires_in,
            role_ids=sorted(set(role_ids)),
        )
        await AuditLog(conn).record(
            "invite.create",
            user_id=created_by,
            ip_address=ip_address,
            user_agent=user_agent,
            details=_described(invite),
        )
    return invite


async def revoke_invite(
    conn: Connection,
    code: str,
    *,
    actor_id: UUID | None,
    ip_address: str | None = None,
    user_agent: str | None = None,
) -> Invite:
    """Delete an invite and audit `invite.revoke`.

    Raises:
        NotFound: `invite_not_found`.
    """
    async with conn.transaction():
        repo = InviteRepository(conn)
        invite = await repo.get(code)
        if invite is None or not await repo.delete(code):
            raise NotFound("no such invite", code=ErrorCode.INVITE_NOT_FOUND)
        await AuditLog(conn).record(
            "invite.revoke",
            user_id=actor_id,
            target_id=invite.created_by,
            ip_address=ip_address,
            user_agent=user_agent,
            details=_described(invite),
        )
    return invite


def code_prefix(code: str) -> str:
    """What the audit log keeps of a code: enough to match it with GET /invites, while the
    ten characters left (60 bits) keep a reader of the log from using a live invite."""
    return code[:6]


def _described(invite: Invite) -> dict[str, object]:
    return {
        "code_prefix": code_prefix(invite.code),
        "max_uses": invite.max_uses,
        "expires_at": invite.expires_at.isoformat() if invite.expires_at else None,
        "role_ids": [str(r) for r in invite.role_ids],
    }
