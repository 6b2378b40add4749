"""Domain errors. Repositories and services raise these; one handler maps them to HTTP.

Each class carries the snake_case `code` and the HTTP status of SPEC §3's error shape. A
class's own code is the generic one of its status; a raise site passes a more specific one, always
a member of the catalogue (`voicechat.error_codes.ErrorCode`, described in docs/errors.md).
"""

from __future__ import annotations

from voicechat.error_codes import ErrorCode


class VoicechatError(Exception):
    """Base of every error a person may see; `str(error)` is written for that person."""

    code: ErrorCode = ErrorCode.ERROR
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: More fields of the error object, beside `code` and `message` (a timeout's
        #: `until`): in the REST error body and the gateway's `error.data`.
        self.details = details or {}


class BadRequest(VoicechatError):
    """The request is malformed."""

    code = ErrorCode.BAD_REQUEST
    status = 400


class Unauthorized(VoicechatError):
    """No valid credentials."""

    code = ErrorCode.UNAUTHORIZED
    status = 401


class Forbidden(VoicechatError):
    """Valid credentials, but not allowed."""

    code = ErrorCode.FORBIDDEN
    status = 403


class NotFound(VoicechatError):
    """The thing does not exist, or the caller may not know that it does."""

    code = ErrorCode.NOT_FOUND
    status = 404


class Conflict(VoicechatError):
    """The change conflicts with existing state (a taken username, say)."""

    code = ErrorCode.CONFLICT
    status = 409


class Gone(VoicechatError):
    """The thing existed but is no more (a one-time code that was used or expired)."""

    code = ErrorCode.GONE
    status = 410


class PayloadTooLarge(VoicechatError):
    """The body is over its limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE
    status = 413


class UnsupportedMediaType(VoicechatError):
    """The body's type is not accepted here."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    status = 415


class ValidationFailed(VoicechatError):
    """The body is well-formed but its values break a rule."""

    code = ErrorCode.VALIDATION_ERROR
    status = 422


class RateLimited(VoicechatError):
    """Too many attempts; try again after `retry_after` seconds."""

    code = ErrorCode.RATE_LIMITED
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class BadGateway(VoicechatError):
    """A dependency (an identity provider) answered, but not with anything usable."""

    code = ErrorCode.BAD_GATEWAY
    status = 502


class ServiceUnavailable(VoicechatError):
    """A dependency (database, Valkey, identity provider) is down."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    status = 503


class MigrationError(Exception):
    """The schema cannot be brought up to date; the server must not start."""
