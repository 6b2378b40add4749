"""The control channel between API instances and `voicechat voice` nodes: message shapes.

Everything travels as JSON through Valkey (docs/voice.md, "Voice nodes and the control
channel"):

- requests: an API instance LPUSHes onto the node's list (`keys.voice_node_requests`), the node
  BRPOPs them in order;
- replies and SFU events: the node PUBLISHes on the requesting instance's inbox
  (`keys.voice_inbox`), which only that instance subscribes to.

Every message carries `v` (the protocol version, 1). Requests are validated field by field;
one that does not validate is answered with a `bad_request` error when it says who sent it,
and dropped (logged without its content) otherwise.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voicechat._native import (
    InvalidIdError,
    InvalidSdpError,
    ParticipantExistsError,
    RoomFullError,
    SfuError,
    UnknownParticipantError,
    UnknownRoomError,
)
from voicechat.error_codes import ErrorCode

VERSION = 1
#: Ids of nodes, instances, requests, rooms and participants (the SFU's id alphabet).
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_SDP_CHARS = 32 * 1024
#: A request whose deadline lies further ahead than this is refused (a clock gone wrong).
MAX_DEADLINE_AHEAD_SECONDS = 300.0

#: Lua (atomic in Valkey): a node refreshes a room's pin when the pin names the node or has
#: expired; a pin taken over by another node (this one was taken for dead) is left alone.
REFRESH_PIN_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
#: Lua: delete a pin only while it names the given node.
DELETE_PIN_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


Id = Annotated[str, Field(pattern=ID_PATTERN)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    #: Unique per request; the reply carries it back.
    id: Id
    #: The API instance to reply to (its inbox) and that owns the participant.
    instance: Id
    #: Unix time after which the requester has given up: the node drops the request unrun.
    deadline: float


class JoinRequest(_Request):
    """Add `participant` to `room` (created with `user_limit` if new); result `{sdp}`."""

    op: Literal["join"]
    room: Id
    participant: Id
    sdp: Sdp
    user_limit: int = Field(ge=1, le=100)


class AnswerRequest(_Request):
    """The participant's answer to the node's renegotiation offer; result `{}`."""

    op: Literal["answer"]
    participant: Id
    sdp: Sdp


class PendingOfferRequest(_Request):
    """The offer awaiting the participant's answer; result `{sdp}` (null when none)."""

    op: Literal["pending_offer"]
    participant: Id


class MuteRequest(_Request):
    """Stop or resume forwarding the participant; result `{}`."""

    op: Literal["mute"]
    participant: Id
    muted: bool


class LeaveRequest(_Request):
    """Remove the participant; result `{}`."""

    op: Literal["leave"]
    participant: Id


class StatsRequest(_Request):
    """The participant's counters; result the fields of `ParticipantStats`."""

    op: Literal["stats"]
    participant: Id


class PingRequest(_Request):
    """Liveness of the node's request loop; result `{node}`."""

    op: Literal["ping"]


Request = Annotated[
    JoinRequest
    | AnswerRequest
    | PendingOfferRequest
    | MuteRequest
    | LeaveRequest
    | StatsRequest
    | PingRequest,
    Field(discriminator="op"),
]
_REQUEST = TypeAdapter(Request)


class MalformedRequest(ValueError):
    """A request that does not validate; `reply_to` is (instance, id) when those parsed."""

    def __init__(self, message: str, reply_to: tuple[str, str] | None) -> None:
        super().__init__(message)
        self.reply_to = reply_to


def encode(message: dict[str, Any]) -> str:
    """Compact JSON with the protocol version."""
    return json.dumps({"v": VERSION, **message}, separators=(",", ":"))


def decode_request(raw: bytes | str) -> Request:
    """Parse and validate one request.

    Raises:
        MalformedRequest: Not JSON, not an object, or a field missing or wrong. The message
            names the field, never its value (SDP carries ICE credentials).
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("not JSON", None) from None
    if not isinstance(data, dict):
        raise MalformedRequest("not a JSON object", None)
    try:
        return _REQUEST.validate_python(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "request"
        raise MalformedRequest(f"{where}: {error.get('msg')}", _reply_to(data)) from None


def _reply_to(data: dict[str, Any]) -> tuple[str, str] | None:
    instance, request_id = data.get("instance"), data.get("id")
    id_ok = TypeAdapter(Id)
    try:
        return id_ok.validate_python(instance), id_ok.validate_python(request_id)
    except ValidationError:
        return None


def reply_ok(request_id: str, result: dict[str, Any]) -> str:
    """A successful reply."""
    return encode({"type": "reply", "id": request_id, "ok": True, "result": result})


def reply_error(request_id: str, code: ErrorCode, message: str) -> str:
    """A failed reply: `code` is one of `ERROR_CODES` or `bad_request`/`node_full`/`internal`."""
    return encode(
        {
            "type": "reply",
            "id": request_id,
            "ok": False,
            "error": {"code": code, "message": message},
        }
    )


def event_message(node_id: str, **fields: Any) -> str:
    """An SFU event for the owning instance: `kind`, `room`, `participant`, and per kind
    `sdp`, `speaking` or `reason`."""
    return encode({"type": "event", "node": node_id, **fields})


#: Native SFU errors and the codes they travel as; the API raises the same class again.
ERROR_CODES: dict[type[SfuError], ErrorCode] = {
    InvalidSdpError: ErrorCode.INVALID_SDP,
    RoomFullError: ErrorCode.ROOM_FULL,
    UnknownParticipantError: ErrorCode.UNKNOWN_PARTICIPANT,
    UnknownRoomError: ErrorCode.UNKNOWN_ROOM,
    ParticipantExistsError: ErrorCode.PARTICIPANT_EXISTS,
    InvalidIdError: ErrorCode.INVALID_ID,
}
# Keyed by `str`: a reply's code is whatever text the node sent.
ERRORS_BY_CODE: dict[str, type[SfuError]] = {code: cls for cls, code in ERROR_CODES.items()}


def error_code(exc: SfuError) -> ErrorCode:
    """The wire code of a native error (`internal` for any other SFU error)."""
    for cls, code in ERROR_CODES.items():
        if isinstance(exc, cls):
            return code
    return ErrorCode.INTERNAL
