"""Errors as sentences for a person: what the desktop client shows instead of a traceback."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import httpx
import websockets
from pydantic import ValidationError

from voicechat.sdk.crypto import CryptoError, StoreError
from voicechat.sdk.errors import ApiError, MfaRequired, RateLimitedError
from voicechat.sdk.gateway import GatewayError

# Sentences for the codes a person of the desktop client can run into. Codes not listed fall
# back to the server's own message, which SPEC §3 already writes for a person.
_BY_CODE = {
    "invalid_credentials": "Wrong username or password.",
    "invalid_mfa_code": "That code is not right, or it was already used. Try the next one.",
    "invalid_mfa_token": "The sign-in took too long. Enter your password again.",
    "missing_token": "You are not signed in. Sign in again.",
    "invalid_token": "Your session has ended. Sign in again.",
    "session_revoked": "Your session has ended. Sign in again.",
    "invalid_refresh_token": "Your session has ended. Sign in again.",
    "refresh_token_reused": "Your session was ended for safety. Sign in again.",
    "username_taken": "That username is taken. Choose another one.",
    "not_author": "You can only edit your own messages.",
    "missing_permission": "You are not allowed to do that here.",
    "message_not_found": "That message no longer exists.",
    "channel_not_found": "That channel no longer exists, or you cannot see it.",
    "file_not_found": "That file no longer exists, or you cannot see it.",
    "user_not_found": "There is no such user.",
    "empty_message": "Write something first.",
    "field_too_long": "That is too long.",
    "not_a_text_channel": "You cannot write in a voice channel.",
    "not_a_voice_channel": "That is not a voice channel.",
    "voice_channel_full": "That voice channel is full.",
    "encryption_required": "This conversation is end-to-end encrypted, and this device has no "
    "keys for it yet.",
    "mfa_already_enabled": "Two-factor authentication is already on.",
    "mfa_not_enabled": "Two-factor authentication is not on.",
    "mfa_not_started": "Start the two-factor set-up first.",
    "unknown_provider": "The server does not offer that single sign-on provider.",
    "sso_denied": "The sign-in was cancelled at the provider.",
    "invalid_login_code": "That sign-in link has expired. Try again.",
    "invalid_state": "That sign-in link has expired. Try again.",
    "sso_provider_unavailable": "The single sign-on provider cannot be reached right now.",
    "sso_provider_error": "The single sign-on provider answered with an error.",
    "payload_too_large": "That file is too large for this server.",
    "unsupported_media_type": "That kind of file is not accepted here.",
}

_GATEWAY_CODES = {
    "-32003": "You are not allowed to do that here.",
    "-32004": "That channel no longer exists, or you cannot see it.",
    "-32029": "You are doing that too often. Wait a moment.",
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
            return _BY_CODE["payload_too_large"]
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
