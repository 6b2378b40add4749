"""A voice node (`voicechat voice`): the SFU in its own process, driven over Valkey.

The node registers itself with a heartbeat key, takes control requests from its list in order,
answers each on the requesting API instance's inbox and publishes the SFU's events about a
participant to the instance that owns it. See docs/voice.md, "Voice nodes and the control
channel", and `voicechat.voice.control` for the message shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from redis.exceptions import RedisError

from voicechat._native import SfuError, UnknownParticipantError, UnknownRoomError
from voicechat._native import sfu as native_sfu
from voicechat.cache import Cache, keys
from voicechat.error_codes import ErrorCode
from voicechat.voice import control
from voicechat.voice.control import (
    AnswerRequest,
    JoinRequest,
    LeaveRequest,
    MalformedRequest,
    MuteRequest,
    PendingOfferRequest,
    PingRequest,
    Request,
    StatsRequest,
)
from voicechat.voice.media import Sfu
from voicechat.voice.plane import stats_dict

log = logging.getLogger(__name__)

#: Seconds one BRPOP for requests waits (below the client's socket timeout).
REQUEST_POLL_SECONDS = 1


@dataclass(slots=True)
class _Member:
    """A participant on this node: its room and the API instance that owns it."""

    room: str
    instance: str


class NodeError(Exception):
    """A request the node refuses for a reason of its own (full, not the owner's)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class VoiceNode:
    """One voice node.

    Args:
        cache: The Valkey client shared with the API instances.
        config: The native SFU configuration (media port, addresses, room size).
        capacity: Most participants the node takes; joins beyond it are refused (`node_full`).
        node_id: Its id in Valkey; a fresh random one by default, so requests queued for a
            previous run of the node are never taken by this one.
        alive_file: Touched after every heartbeat that reached Valkey, for a container
            health check that cannot ask Valkey itself (docker/docker-compose.yml).
    """

    def __init__(
        self,
        cache: Cache,
        config: native_sfu.SfuConfig,
        *,
        capacity: int = 500,
        node_id: str | None = None,
        alive_file: Path | None = None,
    ) -> None:
        self.cache = cache
        self.config = config
        self.capacity = capacity
        self.node_id = node_id or uuid4().hex
        self.alive_file = alive_file
        self.sfu: Sfu | None = None
        self._members: dict[str, _Member] = {}
        self._refresh_pin = cache.register_script(control.REFRESH_PIN_SCRIPT)
        self._delete_pin = cache.register_script(control.DELETE_PIN_SCRIPT)
        self._last_beat = 0.0

    @property
    def address(self) -> tuple[str, int]:
        """(advertised ip, UDP port) that clients send media to."""
        assert self.sfu is not None
        return self.config.advertised_ip, self.sfu.local_addr[1]

    async def start(self) -> None:
        """Bind the media socket and register (raises if Valkey cannot be reached)."""
        self.sfu = await asyncio.to_thread(Sfu, self.config)
        try:
            await self._beat()
        except BaseException:
            await self.sfu.aclose()
            raise

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then leave every room and deregister."""
        assert self.sfu is not None
        tasks = [
            asyncio.create_task(self._serve_requests(stop), name="voice-node-requests"),
            asyncio.create_task(self._pump_events(), name="voice-node-events"),
            asyncio.create_task(self._heartbeat(stop), name="voice-node-heartbeat"),
        ]
        try:
            await stop.wait()
        finally:
            tasks[0].cancel()
            tasks[2].cancel()
            await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
            await self._shutdown()
            tasks[1].cancel()
            await asyncio.gather(tasks[1], return_exceptions=True)
            await self.sfu.aclose()

    # -- registration -------------------------------------------------------------------------

    async def _beat(self) -> None:
        now = time.monotonic()
        if self._last_beat and now - self._last_beat > keys.VOICE_NODE_TTL_SECONDS:
            # Our heartbeat lapsed (Valkey was out of reach): the API instances have announced
            # our participants as gone, so they must not linger here either.
            log.warning(
                "voice node: heartbeat lapsed; dropping %d participants", len(self._members)
            )
            await self._drop(list(self._members))
        info = {
            "id": self.node_id,
            "address": list(self.address),
            "capacity": self.capacity,
            "load": len(self._members),
        }
        pipe = self.cache.pipeline(transaction=False)
        pipe.set(keys.voice_node(self.node_id), json.dumps(info), ex=keys.VOICE_NODE_TTL_SECONDS)
        pipe.sadd(keys.voice_nodes(), self.node_id)
        await pipe.execute()
        self._last_beat = now
        if self.alive_file is not None:
            try:
                await asyncio.to_thread(self.alive_file.write_text, f"{self.node_id}\n")
            except OSError as exc:
                log.warning("voice node: cannot write %s (%s)", self.alive_file, exc.strerror)
        for room in {member.room for member in self._members.values()}:
            pinned = await self._refresh_pin(
                keys=[keys.voice_room_pin(room)],
                args=[self.node_id, keys.VOICE_ROOM_PIN_TTL_SECONDS],
            )
            if not pinned:
                log.warning("voice node: room %s is pinned to another node", room)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keys.VOICE_NODE_TTL_SECONDS / 3):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await self._beat()
                await self._reap_dead_instances()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("voice node: heartbeat failed (%s)", type(exc).__name__)
            except Exception:
                log.exception("voice node: heartbeat failed")

    async def _reap_dead_instances(self) -> None:
        instances = sorted({member.instance for member in self._members.values()})
        if not instances:
            return
        pipe = self.cache.pipeline(transaction=False)
        for instance in instances:
            pipe.exists(keys.instance_heartbeat(instance))
        alive = await pipe.execute()
        for instance, exists in zip(instances, alive, strict=True):
            if not exists:
                gone = [p for p, m in self._members.items() if m.instance == instance]
                log.info("voice node: API instance %s is gone; dropping %d", instance, len(gone))
                await self._drop(gone)

    async def _drop(self, participants: list[str]) -> None:
        assert self.sfu is not None
        for participant in participants:
            member = self._members.pop(participant, None)
            with contextlib.suppress(UnknownParticipantError):
                await self.sfu.leave(participant)
            if member is not None:
                await self._close_if_empty(member.room)

    async def _close_if_empty(self, room: str) -> None:
        assert self.sfu is not None
        if any(member.room == room for member in self._members.values()):
            return
        with contextlib.suppress(UnknownRoomError):
            await self.sfu.close_room(room)

    async def _shutdown(self) -> None:
        """Tell the owners that everyone left, close the calls, deregister."""
        members = dict(self._members)
        self._members.clear()
        for participant, member in members.items():
            with contextlib.suppress(RedisError, OSError):
                await self._publish(
                    member.instance,
                    control.event_message(
                        self.node_id,
                        kind="left",
                        room=member.room,
                        participant=participant,
                        reason="node_stopped",
                    ),
                )
            if self.sfu is not None:
                with contextlib.suppress(SfuError):
                    await self.sfu.leave(participant)
        try:
            pipe = self.cache.pipeline(transaction=False)
            pipe.delete(keys.voice_node(self.node_id), keys.voice_node_requests(self.node_id))
            pipe.srem(keys.voice_nodes(), self.node_id)
            await pipe.execute()
            if self.alive_file is not None:
                self.alive_file.unlink(missing_ok=True)
            for room in {member.room for member in members.values()}:
                await self._delete_pin(keys=[keys.voice_room_pin(room)], args=[self.node_id])
        except (RedisError, OSError) as exc:
            log.warning("voice node: could not deregister (%s)", type(exc).__name__)
        log.info("voice node %s: stopped, %d participants let go", self.node_id, len(members))

    # -- requests -----------------------------------------------------------------------------

    async def _serve_requests(self, stop: asyncio.Event) -> None:
        queue = keys.voice_node_requests(self.node_id)
        while not stop.is_set():
            try:
                item = await self.cache.brpop([queue], timeout=REQUEST_POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("voice node: cannot read requests (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if item is None:
                continue
            try:
                await self.handle(item[1])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("voice node: could not answer a request (%s)", type(exc).__name__)
            except Exception:
                # handle() answers every failure itself; this is a last resort for the loop.
                log.exception("voice node: a request failed")

    async def handle(self, raw: bytes | str) -> None:
        """Run one control request and publish its reply; never raises for a bad request."""
        try:
            request = control.decode_request(raw)
        except MalformedRequest as exc:
            log.warning("voice node: malformed control request (%s)", exc)
            if exc.reply_to is not None:
                instance, request_id = exc.reply_to
                await self._publish(
                    instance, control.reply_error(request_id, ErrorCode.BAD_REQUEST, str(exc))
                )
            return
        now = time.time()
        if now > request.deadline:
            log.info("voice node: dropped a stale %s request %s", request.op, request.id)
            return
        if request.deadline > now + control.MAX_DEADLINE_AHEAD_SECONDS:
            await self._publish(
                request.instance,
                control.reply_error(request.id, ErrorCode.BAD_REQUEST, "deadline: too far ahead"),
            )
            return
        try:
            result = await self._run(request)
        except NodeError as exc:
            reply = control.reply_error(request.id, exc.code, str(exc))
        except SfuError as exc:
            reply = control.reply_error(request.id, control.error_code(exc), str(exc))
        except Exception:
            log.exception("voice node: %s request %s failed", request.op, request.id)
            reply = control.reply_error(request.id, ErrorCode.INTERNAL, "the voice node failed")
        else:
            reply = control.reply_ok(request.id, result)
        await self._publish(request.instance, reply)

    async def _run(self, request: Request) -> dict[str, Any]:
        sfu = self.sfu
        assert sfu is not None
        if isinstance(request, PingRequest):
            return {"node": self.node_id}
        if isinstance(request, JoinRequest):
            return {"sdp": await self._join(request)}
        member = self._members.get(request.participant)
        if member is None or member.instance != request.instance:
            # Only the instance that joined a participant may drive it.
            raise UnknownParticipantError(f"no participant {request.participant!r} of yours")
        participant = request.participant
        if isinstance(request, AnswerRequest):
            await sfu.accept_answer(participant, request.sdp)
        elif isinstance(request, PendingOfferRequest):
            return {"sdp": await sfu.pending_offer(participant)}
        elif isinstance(request, MuteRequest):
            await sfu.set_muted(participant, request.muted)
        elif isinstance(request, LeaveRequest):
            del self._members[participant]
            with contextlib.suppress(UnknownParticipantError):
                await sfu.leave(participant)
            await self._close_if_empty(member.room)
        elif isinstance(request, StatsRequest):
            return stats_dict(await sfu.stats(participant))
        return {}

    async def _join(self, request: JoinRequest) -> str:
        assert self.sfu is not None
        previous = self._members.get(request.participant)
        if previous is not None:
            # The same user joined again (another socket, maybe through another instance):
            # the new call replaces the old one, whose owner learns it moved.
            del self._members[request.participant]
            with contextlib.suppress(UnknownParticipantError):
                await self.sfu.leave(request.participant)
            await self._publish(
                previous.instance,
                control.event_message(
                    self.node_id,
                    kind="left",
                    room=previous.room,
                    participant=request.participant,
                    reason="moved",
                ),
            )
            await self._close_if_empty(previous.room)
        if len(self._members) >= self.capacity:
            raise NodeError(
                ErrorCode.NODE_FULL, f"this voice node is full ({self.capacity} participants)"
            )
        await self.sfu.create_room(request.room, request.user_limit)
        answer = await self.sfu.join(request.room, request.participant, request.sdp)
        self._members[request.participant] = _Member(request.room, request.instance)
        return answer

    async def _publish(self, instance: str, message: str) -> None:
        await self.cache.publish(keys.voice_inbox(instance), message)

    # -- SFU events ---------------------------------------------------------------------------

    async def _pump_events(self) -> None:
        assert self.sfu is not None
        async for event in self.sfu.events():
            member = self._members.get(event.participant_id)
            if member is None or event.kind == "unknown":
                continue
            if event.kind == "left":
                del self._members[event.participant_id]
                log.info(
                    "voice node: %s left %s (%s)", event.participant_id, member.room, event.reason
                )
            fields: dict[str, Any] = {
                "kind": event.kind,
                "room": event.room_id,
                "participant": event.participant_id,
            }
            if event.kind == "offer":
                fields["sdp"] = event.sdp
            elif event.kind == "speaking":
                fields["speaking"] = bool(event.speaking)
            elif event.kind == "left":
                fields["reason"] = event.reason
            try:
                await self._publish(member.instance, control.event_message(self.node_id, **fields))
                if event.kind == "left":
                    await self._close_if_empty(member.room)
            except (RedisError, OSError) as exc:
                log.warning("voice node: could not publish an event (%s)", type(exc).__name__)
            except SfuError:
                log.warning("voice node: could not close an empty room", exc_info=True)
