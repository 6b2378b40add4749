"""Fixtures for the client application model: a live `voicechat serve`, a client home of the
test's own (settings and a file token store), and sessions logged in to the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from tests.utils.net import free_port
from voicechat.sdk.app import AppSession, AudioSettings, ClientSettings, TokenStore

ServerEnv = Callable[..., dict[str, str]]
SessionFactory = Callable[..., Awaitable[AppSession]]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The client home: settings and tokens go here, tokens into the file (no keyring)."""
    path = tmp_path / "client-home"
    monkeypatch.setenv("VOICECHAT_CLIENT_HOME", str(path))
    monkeypatch.setenv("VOICECHAT_CLIENT_TOKEN_STORE", "file")
    return path


@pytest.fixture
def server_env(database_url: str, clean_valkey: str, tmp_path: Path) -> ServerEnv:
    """The environment of a live server on this test's database and Valkey, on a fixed port
    (so a restarted server is the same server to the client)."""
    port = str(free_port())

    def make(**extra: str) -> dict[str, str]:
        return {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "server-data"),
            "VOICECHAT_PORT": port,
            **extra,
        }

    return make


@pytest.fixture
async def server(
    live_server_factory: Callable[..., LiveServer], server_env: ServerEnv
) -> LiveServer:
    """A live server (started off the event loop: it takes a few seconds)."""
    return await asyncio.to_thread(live_server_factory, server_env())


def headless_settings(home: Path, server_url: str) -> ClientSettings:
    """Settings whose voice runs without sound devices (the engine's device-less mode)."""
    settings = ClientSettings.load(home)
    settings.server_url = server_url
    settings.audio = AudioSettings(input_device="none", output_device="none")
    return settings


@pytest.fixture
async def sessions(home: Path, server: LiveServer) -> AsyncIterator[SessionFactory]:
    """`await sessions("alice")`: a registered, started session (the first is the admin).

    Each user gets a client home of their own, as on separate machines.
    """
    opened: list[AppSession] = []

    async def make(username: str) -> AppSession:
        user_home = home / username
        session = await AppSession.register(
            server.base_url,
            username,
            DEFAULT_PASSWORD,
            settings=headless_settings(user_home, server.base_url),
            tokens=TokenStore(user_home),
        )
        opened.append(session)
        return session

    yield make
    for session in opened:
        await session.close()


async def until(condition: Callable[[], object], what: str, within: float = 30.0) -> None:
    """Wait until `condition()` is true (checked as the loop runs), or fail after `within`
    seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if condition():
            return
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)
