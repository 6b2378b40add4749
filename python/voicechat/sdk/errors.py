"""Errors the SDK raises: the server's error shape, as exceptions."""

from __future__ import annotations

from typing import Any

from voicechat.error_codes import ErrorCode


class ApiError(Exception):
    """The server answered with an error (SPEC §3 shape)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class AuthError(ApiError):
    """401: not logged in, or the session ended."""


class ForbiddenError(ApiError):
    """403: logged in, but not allowed."""


class NotFoundError(ApiError):
    """404: no such thing (or not visible to you)."""


class ConflictError(ApiError):
    """409: conflicts with existing state."""


class RateLimitedError(ApiError):
    """429: slow down for `retry_after` seconds."""

    def __init__(self, *args: Any, retry_after: float) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class MfaRequired(Exception):
    """The password was right; finish with `Client.verify_mfa(code)`."""

    def __init__(self, mfa_token: str) -> None:
        super().__init__("this account needs its second factor: call verify_mfa(code)")
        self.mfa_token = mfa_token


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
}


def error_from_response(status: int, body: Any, retry_after: str | None) -> ApiError:
    """The exception for an error response."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = str(error.get("code", ErrorCode.ERROR))
    message = str(error.get("message", f"HTTP {status}"))
    request_id = error.get("request_id")
    if status == 429:
        return RateLimitedError(
            status, code, message, request_id, retry_after=float(retry_after or 1)
        )
    return _BY_STATUS.get(status, ApiError)(status, code, message, request_id)
