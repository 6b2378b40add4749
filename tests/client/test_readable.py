"""`readable_error` for failures that need no server to provoke."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from voicechat.sdk.app import ClientSettings, readable_error
from voicechat.sdk.errors import ApiError, ConflictError, error_from_response
from voicechat.sdk.gateway import GatewayError


@pytest.mark.parametrize(
    ("exc", "sentence"),
    [
        (
            error_from_response(429, {"error": {"code": "rate_limited", "message": "x"}}, "1"),
            "Too many attempts. Try again in 1 second.",
        ),
        (
            ConflictError(409, "voice_channel_full", "the channel is full (2 users)"),
            "That voice channel is full.",
        ),
        (
            ApiError(400, "some_new_code", "the server explains this one"),
            "The server explains this one.",
        ),
        (
            ApiError(503, "service_unavailable", "down"),
            "The server had a problem (503). Try again in a moment.",
        ),
        (
            GatewayError(400, "-32029", "rate limited"),
            "You are doing that too often. Wait a moment.",
        ),
        (
            GatewayError(400, "-32000", "the channel is full (2 users)", "voice_channel_full"),
            "That voice channel is full.",
        ),
        (httpx.ReadTimeout("slow"), "The server did not answer in time. Check your connection."),
        (
            httpx.UnsupportedProtocol("no scheme"),
            "That server address is not valid. It should look like https://chat.example.com.",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            "Cannot reach the server. Check the address and your connection.",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "attachments/notes.txt"),
            "Cannot open notes.txt: it does not exist.",
        ),
        (RuntimeError("internal detail"), "Something went wrong (RuntimeError). Try again."),
    ],
)
def test_sentences(exc: BaseException, sentence: str) -> None:
    assert readable_error(exc) == sentence


def test_a_bad_setting_reads_as_its_reason(tmp_path: Path) -> None:
    settings = ClientSettings.load(tmp_path)
    with pytest.raises(ValueError, match="validation error") as bad:
        settings.server_url = "chat.example.com"
    assert readable_error(bad.value) == ("The server address must start with http:// or https://.")
