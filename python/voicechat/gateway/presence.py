"""Presence in Valkey: a user is online while at least one gateway socket of theirs is open on
a live API instance.

`presence(user)` maps each open socket to its instance; `instance_sockets(instance)` indexes
the same entries by instance, so that when an instance dies without cleaning up (SIGKILL) the
others find its entries once its heartbeat key has expired and remove them. Adding and removing
an entry and counting the rest happen in one MULTI, so exactly one caller sees a user's
online (first socket) or offline (last socket) transition, whichever instance it runs on.
"""

from __future__ import annotations

from typing import Literal, cast
from uuid import UUID

from voicechat.cache import Cache, keys

Status = Literal["online", "idle", "dnd", "offline"]
STATUSES: frozenset[str] = frozenset({"online", "idle", "dnd", "offline"})
# The chosen status outlives the sockets (a `dnd` survives a reconnect) for this long.
CHOICE_TTL_SECONDS = keys.SESSION_TTL_SECONDS


class PresenceStore:
    """The Valkey side of presence for one API instance."""

    def __init__(self, cache: Cache, instance_id: str) -> None:
        self._cache = cache
        self.instance_id = instance_id

    async def beat(self) -> bool:
        """Refresh this instance's heartbeat; False when it had expired (we were taken for dead
        and our entries may have been reaped: the caller registers its sockets again)."""
        pipe = self._cache.pipeline(transaction=True)
        pipe.set(
            keys.instance_heartbeat(self.instance_id),
            b"1",
            ex=keys.INSTANCE_HEARTBEAT_TTL_SECONDS,
            get=True,
        )
        pipe.sadd(keys.instances(), self.instance_id)
        previous, _ = await pipe.execute()
        return previous is not None

    async def add(self, user_id: UUID, socket_id: str) -> bool:
        """Record an open socket; True when it is the user's first (they came online)."""
        pipe = self._cache.pipeline(transaction=True)
        pipe.hset(keys.presence(user_id), socket_id, self.instance_id)
        pipe.hlen(keys.presence(user_id))
        pipe.sadd(keys.instance_sockets(self.instance_id), f"{user_id}:{socket_id}")
        _, count, _ = await pipe.execute()
        return int(count) == 1

    async def remove(self, user_id: UUID, socket_id: str, instance_id: str | None = None) -> bool:
        """Forget a socket; True when it was the user's last (they went offline)."""
        pipe = self._cache.pipeline(transaction=True)
        pipe.hdel(keys.presence(user_id), socket_id)
        pipe.hlen(keys.presence(user_id))
        pipe.srem(keys.instance_sockets(instance_id or self.instance_id), f"{user_id}:{socket_id}")
        removed, count, _ = await pipe.execute()
        return int(removed) == 1 and int(count) == 0

    async def is_connected(self, user_id: UUID) -> bool:
        """Whether the user has an open socket anywhere (entries of dead instances count until
        they are reaped)."""
        return int(await self._cache.hlen(keys.presence(user_id))) > 0

    async def dead_instances(self) -> list[str]:
        """Instances that registered sockets but whose heartbeat key has expired."""
        members = [_text(m) for m in await self._cache.smembers(keys.instances())]
        if not members:
            return []
        pipe = self._cache.pipeline(transaction=False)
        for instance_id in members:
            pipe.exists(keys.instance_heartbeat(instance_id))
        alive = await pipe.execute()
        return [i for i, up in zip(members, alive, strict=True) if not up]

    async def reap(self, instance_id: str) -> list[UUID]:
        """Remove every entry of a dead instance; returns the users who went offline by it.

        Several instances may reap the same dead one at once: each entry's removal is counted
        by exactly one of them.
        """
        entries = await self._cache.smembers(keys.instance_sockets(instance_id))
        offline: list[UUID] = []
        for entry in entries:
            user, _, socket_id = _text(entry).partition(":")
            if await self.remove(UUID(user), socket_id, instance_id):
                offline.append(UUID(user))
        pipe = self._cache.pipeline(transaction=True)
        pipe.delete(keys.instance_sockets(instance_id))
        pipe.srem(keys.instances(), instance_id)
        await pipe.execute()
        return offline

    async def stop(self) -> list[UUID]:
        """A clean shutdown: reap our own entries and stop beating."""
        offline = await self.reap(self.instance_id)
        await self._cache.delete(keys.instance_heartbeat(self.instance_id))
        return offline

    async def choice(self, user_id: UUID) -> Status:
        """The status the user chose (online unless they set another)."""
        value = await self._cache.get(keys.presence_choice(user_id))
        text = _text(value) if value else "online"
        return cast(Status, text) if text in STATUSES else "online"

    async def set_choice(self, user_id: UUID, status: Status) -> None:
        """Remember the user's chosen status."""
        await self._cache.set(keys.presence_choice(user_id), status, ex=CHOICE_TTL_SECONDS)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
