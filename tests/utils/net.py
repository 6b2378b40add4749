"""Loopback helpers for tests that start servers."""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(
    base_url: str, *, timeout: float = 60.0, expect_ok: bool = True
) -> dict[str, object]:
    """Poll `/health` until it answers (and, by default, answers ok)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/health", timeout=2.0)
            body = response.json()
            if not expect_ok or body.get("status") == "ok":
                return dict(body)
            last = body
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{base_url}/health did not become healthy: {last!r}")
