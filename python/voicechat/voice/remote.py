"""`RemoteMediaPlane`: the API side of the control channel to `voicechat voice` nodes.

A voice channel's room lives on one node, pinned in Valkey (`keys.voice_room_pin`), so every
participant of the channel meets on the same node whichever API instance it came through.
Requests go onto the node's list; replies and the SFU's events come back on this instance's
inbox (pub/sub). A node whose heartbeat key expired is taken for dead: its participants here
get `left` events (reason `node_lost`) and its rooms are pinned anew on the next join. See
docs/voice.md, "Voice nodes and the control channel".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import uuid4

from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from voicechat._native import SfuError, UnknownParticipantError
from voicechat.cache import Cache, keys
from voicechat.error_codes import ErrorCode
from voicechat.voice import control
from voicechat.voice.plane import PlaneEvent, VoiceUnavailable

log = logging.getLogger(__name__)

#: How often this instance checks that the nodes its participants are on are alive.
NODE_CHECK_INTERVAL = 1.0


class NodeInfo(BaseModel):
    """What a node's heartbeat key holds."""

    id: str
    address: tuple[str, int]
    capacity: int
    load: int


@dataclass(slots=True)
class _Placement:
    node: str
    room: str


class RemoteMediaPlane:
    """Voice nodes reached over Valkey (`VOICECHAT_VOICE_MODE=remote`).

    Args:
        cache: The Valkey client of this API instance.
        instance_id: This instance's id: its inbox, and the owner the nodes record.
        request_timeout: Seconds to wait for a node's reply before `VoiceUnavailable`.
        room_user_limit: The user limit rooms are created with.
    """

    component = "voice"

    def __init__(
        self,
        cache: Cache,
        instance_id: str,
        *,
        request_timeout: float = 5.0,
        room_user_limit: int = 50,
    ) -> None:
        self._cache = cache
        self._instance = instance_id
        self._timeout = request_timeout
        self._room_user_limit = room_user_limit
        self._placements: dict[str, _Placement] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[PlaneEvent | None] = asyncio.Queue()
        self._subscribed = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._delete_pin = cache.register_script(control.DELETE_PIN_SCRIPT)

    async def start(self) -> None:
        """Subscribe to this instance's inbox and start watching nodes."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="voice-inbox"),
            asyncio.create_task(self._watch_nodes(), name="voice-nodes"),
        ]
        try:
            async with asyncio.timeout(10):
                await self._subscribed.wait()
        except TimeoutError:
            log.warning("voice: not yet subscribed to the inbox; retrying in the background")

    # -- nodes --------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes (their heartbeat keys); forgets registrations that expired."""
        ids = sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self._cache.smembers(keys.voice_nodes())
        )
        if not ids:
            return []
        values = await self._cache.mget([keys.voice_node(node) for node in ids])
        alive, dead = [], []
        for node, value in zip(ids, values, strict=True):
            if value is None:
                dead.append(node)
                continue
            try:
                alive.append(NodeInfo.model_validate_json(value))
            except ValidationError:
                log.warning("voice: node %s has an unreadable heartbeat", node)
        if dead:
            await self._cache.srem(keys.voice_nodes(), *dead)
        return alive

    async def _node_for(self, room: str) -> str:
        pin = keys.voice_room_pin(room)
        for _ in range(3):
            raw = await self._cache.get(pin)
            if raw is not None:
                node = raw.decode() if isinstance(raw, bytes) else str(raw)
                if await self._cache.exists(keys.voice_node(node)):
                    await self._cache.expire(pin, keys.VOICE_ROOM_PIN_TTL_SECONDS)
                    return node
                log.info("voice: node %s of room %s is gone; pinning it anew", node, room)
                await self._delete_pin(keys=[pin], args=[node])
                continue
            nodes = await self.nodes()
            if not nodes:
                raise VoiceUnavailable("no voice node is running; try again shortly")
            free = [n for n in nodes if n.load < n.capacity]
            if not free:
                raise VoiceUnavailable("every voice node is full; try again later")
            best = min(free, key=lambda n: (n.load / n.capacity, n.id))
            if await self._cache.set(pin, best.id, nx=True, ex=keys.VOICE_ROOM_PIN_TTL_SECONDS):
                return best.id
        raise VoiceUnavailable()

    # -- requests -----------------------------------------------------------------------------

    async def _request(self, node: str, op: str, **fields: Any) -> dict[str, Any]:
        request_id = uuid4().hex
        message = control.encode(
            {
                "id": request_id,
                "op": op,
                "instance": self._instance,
                "deadline": time.time() + self._timeout,
                **fields,
            }
        )
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            try:
                pipe = self._cache.pipeline(transaction=False)
                pipe.lpush(keys.voice_node_requests(node), message)
                pipe.expire(keys.voice_node_requests(node), keys.VOICE_REQUESTS_TTL_SECONDS)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("voice: cannot reach Valkey for node %s (%s)", node, type(exc).__name__)
                raise VoiceUnavailable() from None
            try:
                async with asyncio.timeout(self._timeout):
                    reply = await future
            except TimeoutError:
                log.warning(
                    "voice: node %s did not answer %s within %.1fs", node, op, self._timeout
                )
                raise VoiceUnavailable(
                    "the voice server did not answer; try again shortly"
                ) from None
        finally:
            self._waiting.pop(request_id, None)
        if reply.get("ok") is True:
            result = reply.get("result")
            return result if isinstance(result, dict) else {}
        error = reply.get("error")
        if not isinstance(error, dict):
            error = {}
        code = str(error.get("code"))
        text = str(error.get("message") or "the voice node refused the request")
        native = control.ERRORS_BY_CODE.get(code)
        if native is not None:
            raise native(text)
        if code == ErrorCode.NODE_FULL:
            raise VoiceUnavailable("the voice server of this channel is full; try again later")
        log.warning("voice: node %s refused %s: %s (%s)", node, op, code, text)
        raise VoiceUnavailable()

    def _placed(self, participant_id: str) -> _Placement:
        placement = self._placements.get(participant_id)
        if placement is None:
            raise UnknownParticipantError(f"no participant {participant_id!r}")
        return placement

    async def check_available(self) -> None:
        """Raise `VoiceUnavailable` when no node is alive."""
        try:
            nodes = await self.nodes()
        except (RedisError, OSError):
            raise VoiceUnavailable() from None
        if not nodes:
            raise VoiceUnavailable("no voice node is running; try again shortly")

    async def join(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Join on the room's node (pinning the room to the least loaded node if new)."""
        try:
            node = await self._node_for(room_id)
        except (RedisError, OSError):
            raise VoiceUnavailable() from None
        try:
            result = await self._request(
                node,
                "join",
                room=room_id,
                participant=participant_id,
                sdp=offer_sdp,
                user_limit=self._room_user_limit,
            )
        except VoiceUnavailable:
            # The node may still run the join after we gave up: take it back.
            with contextlib.suppress(RedisError, OSError):
                await self._cache.lpush(
                    keys.voice_node_requests(node),
                    control.encode(
                        {
                            "id": uuid4().hex,
                            "op": "leave",
                            "instance": self._instance,
                            "deadline": time.time() + self._timeout,
                            "participant": participant_id,
                        }
                    ),
                )
            raise
        self._placements[participant_id] = _Placement(node, room_id)
        return str(result.get("sdp") or "")

    async def accept_answer(self, participant_id: str, sdp: str) -> None:
        """See `MediaPlane.accept_answer`."""
        placement = self._placed(participant_id)
        await self._request(placement.node, "answer", participant=participant_id, sdp=sdp)

    async def pending_offer(self, participant_id: str) -> str | None:
        """See `MediaPlane.pending_offer`."""
        placement = self._placed(participant_id)
        result = await self._request(placement.node, "pending_offer", participant=participant_id)
        sdp = result.get("sdp")
        return sdp if isinstance(sdp, str) else None

    async def set_muted(self, participant_id: str, muted: bool) -> None:
        """See `MediaPlane.set_muted`."""
        placement = self._placed(participant_id)
        await self._request(placement.node, "mute", participant=participant_id, muted=muted)

    async def leave(self, participant_id: str) -> None:
        """See `MediaPlane.leave`; forgets the participant even if its node does not answer."""
        placement = self._placements.pop(participant_id, None)
        if placement is None:
            raise UnknownParticipantError(f"no participant {participant_id!r}")
        await self._request(placement.node, "leave", participant=participant_id)

    async def stats(self, participant_id: str) -> dict[str, Any]:
        """See `MediaPlane.stats`."""
        placement = self._placed(participant_id)
        return await self._request(placement.node, "stats", participant=participant_id)

    async def ping(self, node: str) -> str:
        """Round trip through a node's request loop; returns its id."""
        return str((await self._request(node, "ping")).get("node"))

    # -- inbox --------------------------------------------------------------------------------

    async def _listen(self) -> None:
        inbox = keys.voice_inbox(self._instance)
        lost = False
        while not self._closing.is_set():
            # A fresh PubSub after any error: its SUBSCRIBE answering is the proof that we
            # listen again (the broken one is closed at once, with any subscription redis-py
            # may have renewed on it by itself).
            pubsub = self._cache.pubsub(ignore_subscribe_messages=True)
            retry_now = False
            try:
                await pubsub.subscribe(inbox)
                self._subscribed.set()
                if lost:
                    # Events published while we were away are lost: ask again for the offers
                    # our participants may be waiting for.
                    lost = False
                    log.info("voice: inbox subscription restored")
                    task = asyncio.create_task(self._resync(), name="voice-resync")
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                while not self._closing.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("voice: inbox subscription lost (%s)", type(exc).__name__)
                    retry_now = True  # a dropped connection: Valkey itself is likely fine
                lost = True
                self._subscribed.clear()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if lost and not retry_now:
                await asyncio.sleep(0.5)

    def _dispatch(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            if not isinstance(message, dict) or message.get("v") != control.VERSION:
                raise ValueError("not a version 1 message")
            if message.get("type") == "reply":
                future = self._waiting.get(str(message.get("id")))
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("type") == "event":
                self._on_event(message)
        except (ValueError, TypeError, KeyError):
            log.warning("voice: dropped an unreadable message from a voice node")

    def _on_event(self, message: dict[str, Any]) -> None:
        participant = str(message["participant"])
        placement = self._placements.get(participant)
        if placement is None or placement.node != message.get("node"):
            return  # not ours (any more), or from a node it has since left
        kind = message["kind"]
        if kind not in ("connected", "left", "speaking", "offer"):
            return
        if kind == "left":
            del self._placements[participant]
        speaking, sdp, reason = message.get("speaking"), message.get("sdp"), message.get("reason")
        self._events.put_nowait(
            PlaneEvent(
                kind=kind,
                room_id=placement.room,
                participant_id=participant,
                speaking=bool(speaking) if speaking is not None else None,
                reason=str(reason) if reason is not None else None,
                sdp=sdp if isinstance(sdp, str) else None,
            )
        )

    async def _resync(self) -> None:
        for participant, placement in list(self._placements.items()):
            try:
                sdp = await self.pending_offer(participant)
            except (SfuError, VoiceUnavailable):
                continue
            if sdp is not None:
                self._events.put_nowait(PlaneEvent("offer", placement.room, participant, sdp=sdp))

    async def _watch_nodes(self) -> None:
        while not self._closing.is_set():
            await asyncio.sleep(NODE_CHECK_INTERVAL)
            nodes = sorted({p.node for p in self._placements.values()})
            if not nodes:
                continue
            try:
                pipe = self._cache.pipeline(transaction=False)
                for node in nodes:
                    pipe.exists(keys.voice_node(node))
                alive = cast(list[int], await pipe.execute())
            except (RedisError, OSError) as exc:
                log.warning("voice: cannot check voice nodes (%s)", type(exc).__name__)
                continue
            for node, exists in zip(nodes, alive, strict=True):
                if exists:
                    continue
                lost = [(p, pl) for p, pl in self._placements.items() if pl.node == node]
                log.warning("voice: node %s is gone; %d participants here lost", node, len(lost))
                for participant, placement in lost:
                    del self._placements[participant]
                    self._events.put_nowait(
                        PlaneEvent("left", placement.room, participant, reason="node_lost")
                    )

    async def events(self) -> AsyncIterator[PlaneEvent]:
        """Events about this instance's participants, until `aclose()`."""
        while (event := await self._events.get()) is not None:
            yield event

    async def probe(self) -> str | None:
        """Raise `VoiceUnavailable` when no node is alive; else say how many are."""
        nodes = await self.nodes()
        if not nodes:
            raise VoiceUnavailable("no voice node is running")
        load = sum(n.load for n in nodes)
        return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {load} participants"

    def describe(self) -> str:
        """For the start-up log."""
        return "voice nodes over Valkey (VOICECHAT_VOICE_MODE=remote)"

    async def aclose(self) -> None:
        """Stop listening; pending requests fail with `VoiceUnavailable`. Idempotent."""
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._events.put_nowait(None)
