"""Errors as sentences for a person: what the desktop client shows instead of a traceback."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import httpx
import websockets
from pydantic import ValidationError

from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.sdk.crypto import CryptoError, StoreError
from voicechat.sdk.errors import ApiError, MfaRequired, RateLimitedError
from voicechat.sdk.gateway import GatewayError

# Sentences for the codes a person of the desktop client can run into. Codes not listed fall
# back to the server's own message, which SPEC §3 already writes for a person. Keyed by
# catalogue members, which are their wire text: the code read off a response finds its entry.
_BY_CODE: dict[str, str] = {
    ErrorCode.INVALID_CREDENTIALS: "Wrong username or password.",
    ErrorCode.INVALID_MFA_CODE: "That code is not right, or it was already used. Try the next one.",
    ErrorCode.INVALID_MFA_TOKEN: "The sign-in took too long. Enter your password again.",
    ErrorCode.MISSING_TOKEN: "You are not signed in. Sign in again.",
    ErrorCode.INVALID_TOKEN: "Your session has ended. Sign in again.",
    ErrorCode.SESSION_REVOKED: "Your session has ended. Sign in again.",
    ErrorCode.INVALID_REFRESH_TOKEN: "Your session has ended. Sign in again.",
    ErrorCode.REFRESH_TOKEN_REUSED: "Your session was ended for safety. Sign in again.",
    ErrorCode.USERNAME_TAKEN: "That username is taken. Choose another one.",
    ErrorCode.NOT_AUTHOR: "You can only edit your own messages.",
    ErrorCode.MISSING_PERMISSION: "You are not allowed to do that here.",
    ErrorCode.MESSAGE_NOT_FOUND: "That message no longer exists.",
    ErrorCode.CHANNEL_NOT_FOUND: "That channel no longer exists, or you cannot see it.",
    ErrorCode.FILE_NOT_FOUND: "That file no longer exists, or you cannot see it.",
    ErrorCode.USER_NOT_FOUND: "There is no such user.",
    ErrorCode.EMPTY_MESSAGE: "Write something first.",
    ErrorCode.FIELD_TOO_LONG: "That is too long.",
    ErrorCode.NOT_A_TEXT_CHANNEL: "You cannot write in a voice channel.",
    ErrorCode.NOT_A_VOICE_CHANNEL: "That is not a voice channel.",
    ErrorCode.VOICE_CHANNEL_FULL: "That voice channel is full.",
    ErrorCode.ENCRYPTION_REQUIRED: (
        "This conversation is end-to-end encrypted, and this device has no keys for it yet."
    ),
    ErrorCode.MFA_ALREADY_ENABLED: "Two-factor authentication is already on.",
    ErrorCode.MFA_NOT_ENABLED: "Two-factor authentication is not on.",
    ErrorCode.MFA_NOT_STARTED: "Start the two-factor set-up first.",
    ErrorCode.UNKNOWN_PROVIDER: "The server does not offer that single sign-on provider.",
    ErrorCode.SSO_DENIED: "The sign-in was cancelled at the provider.",
    ErrorCode.INVALID_LOGIN_CODE: "That sign-in link has expired. Try again.",
    ErrorCode.INVALID_STATE: "That sign-in link has expired. Try again.",
    ErrorCode.SSO_PROVIDER_UNAVAILABLE: "The single sign-on provider cannot be reached right now.",
    ErrorCode.SSO_PROVIDER_ERROR: "The single sign-on provider answered with an error.",
    ErrorCode.PAYLOAD_TOO_LARGE: "That file is too large for this server.",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "That kind of file is not accepted here.",
    ErrorCode.BANNED: "You have been banned from this server.",
    ErrorCode.TIMED_OUT: "You are timed out: you can read but not send for now.",
    ErrorCode.SERVER_MUTED: "Muted by a moderator: you cannot unmute yourself.",
    ErrorCode.ROLE_HIERARCHY: "You cannot act on someone whose role is as high as yours.",
    ErrorCode.CANNOT_MODERATE_SELF: "You cannot do that to yourself.",
    ErrorCode.NOT_IN_VOICE: "They are no longer in a voice channel.",
    ErrorCode.BAN_NOT_FOUND: "That user is not banned.",
    ErrorCode.INVALID_TIMEOUT: "A timeout lasts at most 28 days.",
}

# Keyed by the JSON-RPC code as text, the form `GatewayError.code` has.
_GATEWAY_CODES: dict[str, str] = {
    str(RpcErrorCode.FORBIDDEN): "You are not allowed to do that here.",
    str(RpcErrorCode.NOT_FOUND): "That channel no longer exists, or you cannot see it.",
    str(RpcErrorCode.RATE_LIMITED): "You are doing that too often. Wait a moment.",
}


def readable_error(exc: BaseException, *, server_url: str | None = None) -> str:
    """One or two sentences saying what went wrong, for the person in front of the client.

    Args:
        exc: what an SDK call raised.
        server_url: the server, named in "cannot reach" messages.
    """
    where = f" at {server_url}" if server_url else ""
    if isinstance(exc, MfaRequired):
        return "Enter the code from your authenticator app."
    if isinstance(exc, RateLimitedError):
        seconds = max(1, math.ceil(exc.retry_after))
        unit = "second" if seconds == 1 else "seconds"
        return f"Too many attempts. Try again in {seconds} {unit}."
    if isinstance(exc, GatewayError):
        known = _BY_CODE.get(exc.reason or "") or _GATEWAY_CODES.get(exc.code)
        return known or _sentence(exc.message)
    if isinstance(exc, ApiError):
        if exc.code in _BY_CODE:
            return _BY_CODE[exc.code]
        if exc.status == 413:
            return _BY_CODE[ErrorCode.PAYLOAD_TOO_LARGE]
        if exc.status >= 500:
            return f"The server{where} had a problem ({exc.status}). Try again in a moment."
        return _sentence(exc.message)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return f"The server{where} did not answer in time. Check your connection."
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "That server address is not valid. It should look like https://chat.example.com."
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        name = Path(str(exc.filename)).name if exc.filename else "the file"
        if isinstance(exc, FileNotFoundError):
            reason = "it does not exist"
        elif isinstance(exc, PermissionError):
            reason = "you may not read it"
        else:
            reason = "it is a folder"
        return f"Cannot open {name}: {reason}."
    if isinstance(
        exc,
        httpx.TransportError | ConnectionError | socket.gaierror | websockets.ConnectionClosed,
    ):
        return f"Cannot reach the server{where}. Check the address and your connection."
    if isinstance(exc, OSError):
        return _sentence(exc.strerror or type(exc).__name__)
    if _is_audio_error(exc) and str(exc):
        return _sentence(str(exc))
    if isinstance(exc, StoreError):
        return (
            "The encryption keys on this computer cannot be opened (a wrong passphrase, or a "
            "damaged file)."
        )
    if isinstance(exc, CryptoError):
        return _sentence(f"End-to-end encryption could not start: {exc}")
    if isinstance(exc, ValidationError) and exc.errors():
        return _sentence(str(exc.errors()[0]["msg"]).removeprefix("Value error, "))
    if isinstance(exc, ValueError) and str(exc):
        return _sentence(str(exc).splitlines()[0])
    return f"Something went wrong ({type(exc).__name__}). Try again."


def _is_audio_error(exc: BaseException) -> bool:
    # By name, so reading an error never imports the audio package (and PortAudio).
    return any(
        cls.__name__ == "AudioError" and cls.__module__.startswith("voicechat.sdk.audio")
        for cls in type(exc).__mro__
    )


def _sentence(text: str) -> str:
    text = text.strip() or "Something went wrong"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
