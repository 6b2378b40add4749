"""The gateway's wire protocol: JSON-RPC 2.0 text frames, error codes and close codes.

The JSON-RPC error codes (`RpcErrorCode`) live with every other error code in
`voicechat.error_codes`, where the SDK reads them too.

See docs/gateway.md for the client's view of all of this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.errors import Forbidden, NotFound, RateLimited, Unauthorized, VoicechatError
from voicechat.storable import find_unstorable

# A text frame larger than this closes the socket with 1009. uvicorn enforces it on the
# wire (`ws_max_size`, set from here in the CLI); the session checks it again in case the
# app runs under a server configured otherwise.
MAX_FRAME_BYTES = 64 * 1024


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses."""

    NORMAL = 1000
    #: A frame that breaks RFC 6455 (unmasked, reserved bits, bad opcode).
    PROTOCOL_ERROR = 1002
    #: A text frame that is not UTF-8 (sent by uvicorn, which decodes frames).
    INVALID_PAYLOAD = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    #: A dependency the socket needs (Valkey, PostgreSQL) is down or too slow: retry with
    #: backoff (docs/reliability.md, "When a dependency fails").
    TRY_AGAIN_LATER = 1013
    #: No `auth` request within the deadline, or the first request was something else.
    NOT_AUTHENTICATED = 4001
    #: The client stopped sending anything (not even `ping`) for longer than the timeout.
    HEARTBEAT_TIMEOUT = 4002
    #: The `auth` request carried a token that was refused (bad, expired, session ended).
    AUTHENTICATION_FAILED = 4003
    #: The client kept sending after being told it was rate limited.
    RATE_LIMITED = 4008
    #: The client did not read its events fast enough; its send queue filled up.
    SLOW_CONSUMER = 4009
    #: A cap refused the socket: too many open sockets (user or address) or too many
    #: connection attempts (docs/gateway.md, "Caps on sockets").
    TOO_MANY_CONNECTIONS = 4029


class RpcError(Exception):
    """An error answer to one request; the socket stays open."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def from_domain(cls, error: VoicechatError) -> RpcError:
        """Map a domain error to its JSON-RPC code; `data.code` keeps the snake_case code."""
        code = RpcErrorCode.SERVER_ERROR
        data: dict[str, Any] = {**error.details, "code": error.code}
        if isinstance(error, Unauthorized):
            code = RpcErrorCode.UNAUTHORIZED
        elif isinstance(error, Forbidden):
            code = RpcErrorCode.FORBIDDEN
        elif isinstance(error, NotFound):
            code = RpcErrorCode.NOT_FOUND
        elif isinstance(error, RateLimited):
            code = RpcErrorCode.RATE_LIMITED
            data["retry_after"] = error.retry_after
        return cls(code, error.message, data)


RequestId = str | int | None


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed client request; `is_notification` when it carried no id (no answer owed)."""

    method: str
    params: dict[str, Any]
    id: RequestId
    is_notification: bool


class InvalidFrame(Exception):
    """A frame that is not a usable JSON-RPC request; answered with `error`, id `request_id`."""

    def __init__(self, error: RpcError, request_id: RequestId = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def parse_request(text: str) -> Request:
    """Parse one text frame as a JSON-RPC 2.0 request (batches are not supported).

    Raises:
        InvalidFrame: not JSON (-32700), or not a request (-32600), or params not an
            object (-32602), or anywhere in the frame a value the server cannot store (NUL,
            lone surrogate, NaN, integer past 64 bits, nesting over 64: -32602 with
            `data.code` `validation_error` and `data.field`; voicechat.storable).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidFrame(
            RpcError(RpcErrorCode.PARSE_ERROR, "the frame is not valid JSON")
        ) from None
    if not isinstance(data, dict):
        raise InvalidFrame(
            RpcError(RpcErrorCode.INVALID_REQUEST, "send one JSON-RPC request object per frame")
        )
    raw_id = data.get("id")
    request_id: RequestId = (
        raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    )
    unstorable = find_unstorable(data)
    if unstorable is not None:
        # An id that cannot be stored cannot be echoed either (a lone surrogate is not UTF-8).
        echoed_id = None if unstorable.path[:1] == ("id",) else request_id
        raise InvalidFrame(
            RpcError(
                RpcErrorCode.INVALID_PARAMS,
                f"{unstorable.field or 'frame'}: {unstorable.reason}",
                {"code": ErrorCode.VALIDATION_ERROR, "field": unstorable.field},
            ),
            echoed_id,
        )
    if data.get("jsonrpc") != "2.0" or not isinstance(data.get("method"), str):
        raise InvalidFrame(
            RpcError(
                RpcErrorCode.INVALID_REQUEST, 'a request needs "jsonrpc": "2.0" and a "method"'
            ),
            request_id,
        )
    if "id" in data and request_id is None and raw_id is not None:
        raise InvalidFrame(
            RpcError(RpcErrorCode.INVALID_REQUEST, "a request id must be a string or an integer")
        )
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InvalidFrame(
            RpcError(RpcErrorCode.INVALID_PARAMS, "params must be an object"), request_id
        )
    return Request(
        method=data["method"], params=params, id=request_id, is_notification="id" not in data
    )


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, default=str, separators=(",", ":"), ensure_ascii=False)


def result_frame(request_id: RequestId, result: Any) -> str:
    """The success answer to a request."""
    return _dump({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_frame(request_id: RequestId, error: RpcError) -> str:
    """The error answer to a request (id null when the request's id could not be read)."""
    body: dict[str, Any] = {"code": int(error.code), "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return _dump({"jsonrpc": "2.0", "id": request_id, "error": body})


def notification_frame(method: str, params: dict[str, Any]) -> str:
    """A server → client notification."""
    return _dump({"jsonrpc": "2.0", "method": method, "params": params})
