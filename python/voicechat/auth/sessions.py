"""Login sessions in Valkey, with refresh tokens rotated on every use.

A session is a hash `vc:session:<sid>` (user, IP, user agent, created, last used, the hash of
its current refresh token and of the one before). Every refresh token ever issued for the
session keeps pointing at it (`vc:refresh:<hash>`) until it would have expired, so presenting
an old one is recognised as reuse and revokes the whole session (RFC 9700 §4.14.2).

One allowance: clients that share a token store (two tabs, an app and its background task)
race to refresh; the loser presents the token the winner just rotated. Within `grace_seconds` of
a rotation, the first such replay is refused *without* ending the session, so the loser can pick
up the winner's tokens; a second replay, or any replay after the window, is reuse. See
docs/auth.md for the reasoning.

Rotation runs as one Lua script so two concurrent refreshes cannot both win.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from uuid import UUID, uuid4

from voicechat.cache import Cache, keys
from voicechat.crypto import token_hash

_ROTATE = """
local prefix = ARGV[1]
local presented, fresh = ARGV[2], ARGV[3]
local now, grace, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local sid = redis.call('GET', prefix .. 'refresh:' .. presented)
if not sid then return {'unknown'} end
local skey = prefix .. 'session:' .. sid
local fields = redis.call('HMGET', skey, 'refresh', 'prev_refresh', 'rotated_at', 'user_id')
local current, previous, rotated_at, user_id = fields[1], fields[2], fields[3], fields[4]
if not current then return {'unknown'} end
if current ~= presented then
  if previous == presented and rotated_at and now - tonumber(rotated_at) <= grace
      and redis.call('HSETNX', skey, 'grace_used', '1') == 1 then
    return {'raced', sid, user_id}
  end
  return {'reuse', sid, user_id}
end
redis.call('HDEL', skey, 'grace_used')
redis.call('HSET', skey, 'refresh', fresh, 'prev_refresh', presented,
    'rotated_at', tostring(now), 'last_used_at', tostring(now))
redis.call('EXPIRE', skey, ttl)
redis.call('SET', prefix .. 'refresh:' .. fresh, sid, 'EX', ttl)
return {'rotated', sid, user_id}
"""

# KEYS: session hashes; ARGV: the matching "last used" times.
_TOUCH = """
for i, key in ipairs(KEYS) do
  local used = redis.call('HGET', key, 'last_used_at')
  if used and tonumber(used) < tonumber(ARGV[i]) then
    redis.call('HSET', key, 'last_used_at', ARGV[i])
  end
end
return 0
"""
_TOUCH_BATCH = 500


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session as its owner sees it."""

    id: UUID
    user_id: UUID
    ip_address: str
    user_agent: str
    created_at: int
    last_used_at: int


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    outcome: Literal["rotated", "raced", "reuse", "unknown"]
    session_id: UUID | None = None
    user_id: UUID | None = None
    refresh_token: str | None = None


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class SessionStore:
    """Sessions and refresh tokens in Valkey."""

    def __init__(self, cache: Cache, *, ttl_seconds: int, grace_seconds: int) -> None:
        self._cache = cache
        self.ttl_seconds = ttl_seconds
        self.grace_seconds = grace_seconds
        self._rotate = cache.register_script(_ROTATE)
        self._touch = cache.register_script(_TOUCH)

    async def create(self, user_id: UUID, *, ip: str, user_agent: str) -> tuple[UUID, str]:
        """Open a session; returns its id and first refresh token."""
        session_id = uuid4()
        refresh = new_refresh_token()
        now = str(int(time.time()))
        async with self._cache.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.session(session_id),
                mapping={
                    "user_id": str(user_id),
                    "ip": ip,
                    "user_agent": user_agent,
                    "created_at": now,
                    "last_used_at": now,
                    "refresh": token_hash(refresh),
                },
            )
            pipe.expire(keys.session(session_id), self.ttl_seconds)
            pipe.sadd(keys.user_sessions(user_id), str(session_id))
            pipe.expire(keys.user_sessions(user_id), self.ttl_seconds)
            pipe.set(keys.refresh_token(token_hash(refresh)), str(session_id), ex=self.ttl_seconds)
            await pipe.execute()
        return session_id, refresh

    async def rotate(self, refresh_token: str) -> Rotation:
        """Exchange a refresh token for a new one, detecting reuse."""
        fresh = new_refresh_token()
        result = await self._rotate(
            args=[
                keys.PREFIX,
                token_hash(refresh_token),
                token_hash(fresh),
                int(time.time()),
                self.grace_seconds,
                self.ttl_seconds,
            ]
        )
        outcome = result[0].decode()
        if outcome == "unknown":
            return Rotation("unknown")
        session_id = UUID(result[1].decode())
        user_id = UUID(result[2].decode()) if len(result) > 2 and result[2] else None
        if outcome == "reuse":
            return Rotation("reuse", session_id, user_id)
        if outcome == "raced":
            return Rotation("raced", session_id, user_id)
        return Rotation("rotated", session_id, user_id, fresh)

    async def owner_of_refresh_token(self, refresh_token: str) -> UUID | None:
        """The user whose live session `refresh_token` belongs to (current or past token).

        For counting a refresh against its account's limit before rotating; None when the
        token names no live session.
        """
        session_id = await self._cache.get(keys.refresh_token(token_hash(refresh_token)))
        if session_id is None:
            return None
        user_id = await self._cache.hget(keys.session(UUID(_text(session_id))), "user_id")
        return None if user_id is None else UUID(_text(user_id))

    async def owner(self, session_id: UUID) -> UUID | None:
        """The session's user if it is live, else None. One round trip, nothing written."""
        user_id = await self._cache.hget(keys.session(session_id), "user_id")
        return None if user_id is None else UUID(_text(user_id))

    async def mark_used(self, last_used: Mapping[UUID, int]) -> None:
        """Record when sessions were last used (unix seconds), in batches of 500.

        Requests do not write "last used" themselves (auth/live_sessions.py collects it and
        calls this every few seconds). A session that ended meanwhile is left alone: the script
        writes only to a hash that still exists, and never moves the time backwards.
        """
        items = list(last_used.items())
        for start in range(0, len(items), _TOUCH_BATCH):
            batch = items[start : start + _TOUCH_BATCH]
            await self._touch(
                keys=[keys.session(session_id) for session_id, _ in batch],
                args=[used for _, used in batch],
            )

    async def get(self, session_id: UUID) -> SessionInfo | None:
        """The session, if live."""
        fields = await self._cache.hgetall(keys.session(session_id))
        return _info(session_id, fields)

    async def list_for_user(self, user_id: UUID) -> list[SessionInfo]:
        """A user's live sessions, newest first; forgets ids whose session expired."""
        members = await self._cache.smembers(keys.user_sessions(user_id))
        ids = [UUID(_text(raw)) for raw in members]
        async with self._cache.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(keys.session(session_id))
            rows = await pipe.execute()
        live: list[SessionInfo] = []
        expired: list[str] = []
        for session_id, fields in zip(ids, rows, strict=True):
            info = _info(session_id, fields)
            if info is None or info.user_id != user_id:
                expired.append(str(session_id))
            else:
                live.append(info)
        if expired:
            await self._cache.srem(keys.user_sessions(user_id), *expired)
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    async def revoke(self, session_id: UUID) -> UUID | None:
        """End a session at once; returns its user (None if it was already gone)."""
        fields = await self._cache.hgetall(keys.session(session_id))
        info = _info(session_id, fields)
        async with self._cache.pipeline(transaction=True) as pipe:
            pipe.delete(keys.session(session_id))
            if info is not None:
                pipe.srem(keys.user_sessions(info.user_id), str(session_id))
            # The refresh keys stay: presenting one now finds no session and is refused.
            # Every API process drops its cached verdict on this message (after the DEL, in
            # the same transaction, so a process that reads again sees the session gone).
            pipe.publish(keys.session_revocations(), str(session_id))
            await pipe.execute()
        return None if info is None else info.user_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _info(session_id: UUID, raw: Mapping[bytes | str, bytes | str]) -> SessionInfo | None:
    fields = {_text(key): _text(value) for key, value in raw.items()}
    if "user_id" not in fields or "created_at" not in fields:
        return None
    return SessionInfo(
        id=session_id,
        user_id=UUID(fields["user_id"]),
        ip_address=fields.get("ip", ""),
        user_agent=fields.get("user_agent", ""),
        created_at=int(fields["created_at"]),
        last_used_at=int(fields.get("last_used_at", fields["created_at"])),
    )
