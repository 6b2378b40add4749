"""Presence in Valkey: a user is online while at least one gateway socket of theirs is open on
a live API instance.

`presence(user)` maps each open socket to its instance; `instance_sockets(instance)` indexes
the same entries by instance, so that when an instance dies without cleaning up (SIGKILL) the
others find its entries once its heartbeat key has expired and remove them. Adding and removing
an entry and counting the rest happen in one MULTI, so exactly one caller sees a user's
online (first socket) or offline (last socket) transition, whichever instance it runs on.

The caps on open sockets (per user, per client address) are counted on the same entries:
`add` is one Lua script that counts the user's and the address's entries, refuses if either
is full, and otherwise adds the socket, so concurrent sockets on any number of instances cannot
slip past a cap. Entries of a dead instance count until they are reaped.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, cast
from uuid import UUID

from voicechat.cache import Cache, keys

Status = Literal["online", "idle", "dnd", "offline"]
STATUSES: frozenset[str] = frozenset({"online", "idle", "dnd", "offline"})
# The chosen status outlives the sockets (a `dnd` survives a reconnect) for this long.
CHOICE_TTL_SECONDS = keys.SESSION_TTL_SECONDS


# KEYS: the user's presence hash, the address's hash, the instance's entry set.
# ARGV: socket id, instance id, entry, cap per user, cap per address (0: none).
_ADD_SOCKET = """
local user_cap = tonumber(ARGV[4])
local ip_cap = tonumber(ARGV[5])
if user_cap > 0 and redis.call('HLEN', KEYS[1]) >= user_cap then
  return -1
end
if ip_cap > 0 and redis.call('HLEN', KEYS[2]) >= ip_cap then
  return -2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return redis.call('HLEN', KEYS[1])
"""
_USER_FULL = -1
_IP_FULL = -2


class Admission(Enum):
    """What `PresenceStore.add` did with a socket."""

    FIRST = "first"
    ADDED = "added"
    USER_FULL = "user_full"
    IP_FULL = "ip_full"


class PresenceStore:
    """The Valkey side of presence for one API instance."""

    def __init__(self, cache: Cache, instance_id: str) -> None:
        self._cache = cache
        self.instance_id = instance_id
        self._add_script = cache.register_script(_ADD_SOCKET)

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

    async def add(
        self,
        user_id: UUID,
        socket_id: str,
        ip: str,
        *,
        max_per_user: int | None = None,
        max_per_ip: int | None = None,
    ) -> Admission:
        """Record an open socket unless that would pass a cap, atomically.

        Args:
            user_id: the socket's user.
            socket_id: the socket.
            ip: the client address it came from.
            max_per_user: the most open sockets the user may hold (None: no cap).
            max_per_ip: the most open sockets the address may hold (None: no cap).

        Returns:
            `FIRST` when it is the user's first socket (they came online), `ADDED`, or
            `USER_FULL` / `IP_FULL` when a cap refused it (nothing was recorded).
        """
        result = await self._add_script(
            keys=[
                keys.presence(user_id),
                keys.address_sockets(ip),
                keys.instance_sockets(self.instance_id),
            ],
            args=[
                socket_id,
                self.instance_id,
                f"{user_id}:{socket_id}:{ip}",
                max_per_user or 0,
                max_per_ip or 0,
            ],
        )
        count = int(result)
        if count == _USER_FULL:
            return Admission.USER_FULL
        if count == _IP_FULL:
            return Admission.IP_FULL
        return Admission.FIRST if count == 1 else Admission.ADDED

    async def remove(
        self, user_id: UUID, socket_id: str, ip: str | None, instance_id: str | None = None
    ) -> bool:
        """Forget a socket; True when it was the user's last (they went offline)."""
        instance = instance_id or self.instance_id
        pipe = self._cache.pipeline(transaction=True)
        pipe.hdel(keys.presence(user_id), socket_id)
        pipe.hlen(keys.presence(user_id))
        pipe.srem(keys.instance_sockets(instance), f"{user_id}:{socket_id}:{ip}")
        if ip is None:  # an entry written before the caps existed
            pipe.srem(keys.instance_sockets(instance), f"{user_id}:{socket_id}")
        else:
            pipe.hdel(keys.address_sockets(ip), socket_id)
        removed, count, *_ = await pipe.execute()
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
            user, socket_id, *address = _text(entry).split(":", 2)
            ip = address[0] if address else None
            if await self.remove(UUID(user), socket_id, ip, instance_id):
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
