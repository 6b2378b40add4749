"""An idle client does not redraw continuously: logged in, showing a channel's history, with
nobody doing anything, the window draws (almost) no frames.

The client runs in its own process (`tests.gui.probe`), resuming a stored session, so this test
needs no window in the test process and can run beside `test_client.py`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.gui.probe import Probe
from voicechat.sdk import Client
from voicechat.sdk.app import AppSession, ClientSettings, TokenStore

pytestmark = pytest.mark.slow


async def stored_login(url: str, home: Path, username: str, password: str) -> None:
    """Log in once with the client's application model so that `home` holds the settings and
    tokens a client started with `VOICECHAT_CLIENT_HOME=home` resumes from."""
    settings = ClientSettings.load(home)
    # No sound card needed unless a test sets one: the voice engine runs device-less.
    settings.audio.input_device = "none"
    settings.audio.output_device = "none"
    session = await AppSession.login(
        url, username, password, settings=settings, tokens=TokenStore(home, backend="file")
    )
    await session.close()


def client_env(home: Path) -> dict[str, str]:
    """The environment of a client process resuming the session stored in `home`."""
    return {
        **os.environ,
        "VOICECHAT_CLIENT_HOME": str(home),
        "VOICECHAT_CLIENT_TOKEN_STORE": "file",
    }


async def settled(probe: Probe, within: float = 30.0) -> None:
    """Wait for a second without a frame (start-up animations over)."""
    last = probe.frames()
    for _ in range(int(within)):
        await asyncio.sleep(1.0)
        now = probe.frames()
        if now == last:
            return
        last = now
    raise AssertionError(f"the client kept drawing for {within} s after start-up")


async def test_idle_client_draws_almost_nothing(
    live_server: LiveServer, x_display: str, tmp_path: Path
) -> None:
    url = live_server.base_url
    async with Client(url) as admin:
        await admin.register("admin", "admin password")
        general = await admin.create_channel("general", topic="Anything goes")
        for n in range(20):
            await admin.send(general.id, f"message {n}")
    home = tmp_path / "client-home"
    await stored_login(url, home, "admin", "admin password")

    probe = Probe("client", client_env(home), tmp_path / "client.log")
    try:
        _, screen, _ = probe.expect("ready")
        assert screen == "main", "the stored session was not resumed"
        # The first screen settles (history scrolled to the end, scroll bars fading out)...
        await settled(probe)
        # ...and then draws nothing while nothing changes. The window may draw up to 30 frames
        # a second; idle, it draws at most a stray one.
        before = probe.frames()
        await asyncio.sleep(3.0)
        drawn = probe.frames() - before
        assert drawn < 5, f"the idle client drew {drawn} frames in 3 s"
    finally:
        probe.close()
