"""An idle client does not redraw continuously: logged in, showing a channel's history, with
nobody doing anything, the window draws (almost) no frames, and Kivy's loop wakes up less
often until the next input.

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

# kivy_client.idle's rates (not imported: importing Kivy here would open a window in the test
# process before the display fixture has set it up).
ACTIVE_FPS, IDLE_FPS, IDLE_AFTER = 30.0, 10.0, 2.0


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


async def loop_rate(probe: Probe, seconds: float) -> float:
    """How many times a second Kivy's loop woke up over the next `seconds`."""
    count, when = probe.ticks()
    await asyncio.sleep(seconds)
    later, then = probe.ticks()
    return (later - count) / (then - when)


async def test_idle_client_slows_its_loop_until_the_next_input(
    live_server: LiveServer, x_display: str, tmp_path: Path
) -> None:
    url = live_server.base_url
    async with Client(url) as admin:
        await admin.register("admin", "admin password")
        await admin.create_channel("general")
    home = tmp_path / "client-home"
    await stored_login(url, home, "admin", "admin password")

    probe = Probe("client", client_env(home), tmp_path / "client.log")
    try:
        _, screen, _ = probe.expect("ready")
        assert screen == "main", "the stored session was not resumed"
        await settled(probe)
        await asyncio.sleep(IDLE_AFTER + 1.0)
        idle = await loop_rate(probe, 2.0)
        # A key press: the loop is back at its full rate at once (not after a delay).
        probe.send("key")
        probe.expect("pressed")
        active = await loop_rate(probe, 1.0)
        # Bounds with a wide margin for a busy machine: the loop may fall behind its cap, and
        # the two counts span a wake-up or two more than the interval.
        assert idle < (IDLE_FPS + ACTIVE_FPS) / 2, f"idle, the loop woke {idle:.1f} times a second"
        assert active > idle + (ACTIVE_FPS - IDLE_FPS) / 2, (
            f"after a key press the loop woke {active:.1f} times a second, idle {idle:.1f}"
        )
    finally:
        probe.close()
