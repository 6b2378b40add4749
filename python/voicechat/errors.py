"""Domain errors. Repositories and services raise these; one handler maps them to HTTP.

Each class carries the snake_case `code` and the HTTP status of SPEC §3's error shape.
"""

from __future__ import annotations


class VoicechatError(Exception):
    """Base of every error a person may see; `str(error)` is written for that person."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(VoicechatError):
    """The request is malformed."""

    code = "bad_request"
    status = 400


class Unauthorized(VoicechatError):
    """No valid credentials."""

    code = "unauthorized"
    status = 401


class Forbidden(VoicechatError):
    """Valid credentials, but not allowed."""

    code = "forbidden"
    status = 403


class NotFound(VoicechatError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not_found"
    status = 404


class Conflict(VoicechatError):
    """The change conflicts with existing state (a taken username, say)."""

    code = "conflict"
    status = 409


class PayloadTooLarge(VoicechatError):
    """The body is over its limit."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(VoicechatError):
    """The body's type is not accepted here."""

    code = "unsupported_media_type"
    status = 415


class ValidationFailed(VoicechatError):
    """The body is well-formed but its values break a rule."""

    code = "validation_error"
    status = 422


class RateLimited(VoicechatError):
    """Too many attempts; try again after `retry_after` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class BadGateway(VoicechatError):
    """A dependency (an identity provider) answered, but not with anything usable."""

    code = "bad_gateway"
    status = 502


class ServiceUnavailable(VoicechatError):
    """A dependency (database, Valkey, identity provider) is down."""

    code = "service_unavailable"
    status = 503


class MigrationError(Exception):
    """The schema cannot be brought up to date; the server must not start."""
