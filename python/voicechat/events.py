"""Gateway events between API instances, over Valkey pub/sub.

Producers (routes, services) call :meth:`EventBus.publish`; every API instance's gateway
subscribes to `keys.events_channel()` and delivers each event to its own sockets whose user may
receive it: for a channel event, users who can see the channel; for a user event, those users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from voicechat.cache import Cache, keys


@dataclass(frozen=True, slots=True)
class Event:
    """One server → client notification (a JSON-RPC method and its params) and its audience.

    `channel_id` (everyone who can see that channel) or `user_ids` (those users) says who
    receives it. With neither, the event is for the gateways themselves (`roles.update`: every
    user's visible channels may have changed) and reaches no client.
    """

    method: str
    params: dict[str, Any]
    channel_id: UUID | None = None
    user_ids: tuple[UUID, ...] = field(default=())

    def encode(self) -> str:
        """The wire form on the pub/sub channel."""
        return json.dumps(
            {
                "method": self.method,
                "params": self.params,
                "channel_id": str(self.channel_id) if self.channel_id else None,
                "user_ids": [str(u) for u in self.user_ids],
            },
            default=str,
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Event:
        """Parse the wire form."""
        data = json.loads(raw)
        return cls(
            method=data["method"],
            params=data["params"],
            channel_id=UUID(data["channel_id"]) if data.get("channel_id") else None,
            user_ids=tuple(UUID(u) for u in data.get("user_ids") or ()),
        )


class EventBus:
    """Publishes events to every API instance."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def publish(self, event: Event) -> None:
        """Send `event` to all instances (fire and forget: pub/sub has no backlog)."""
        await self._cache.publish(keys.events_channel(), event.encode())
