"""Two SDK clients with encryption against a real `voicechat serve` process over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.utils.e2ee import E2eeWorld
from voicechat.sdk import Client

pytestmark = pytest.mark.slow


async def test_dms_through_a_live_server(
    live_server: LiveServer, database_url: str, clean_valkey: str, tmp_path: Path
) -> None:
    world = E2eeWorld(
        None, database_url, tmp_path / "live-data", clean_valkey, [live_server.log_path]
    )
    async with Client(live_server.base_url) as alice, Client(live_server.base_url) as bob:
        await alice.register("alice", "alice long password")
        await bob.register("bob", "bob long password")
        await alice.enable_encryption()
        await bob.enable_encryption()
        assert bob.user is not None
        dm = await alice.dm(bob.user.id)
        await alice.send(dm.id, world.said("over real sockets"))
        await bob.send(dm.id, world.said("and back"))
        expected = ["and back", "over real sockets"]
        assert [m.content async for m in alice.history(dm.id)] == expected
        assert [m.content async for m in bob.history(dm.id)] == expected
        # A bot reading gateway events decrypts their params the same way.
        event = (await bob._request("GET", f"/channels/{dm.id}/messages"))["messages"][0]
        assert bob.crypto is not None
        assert (await bob.crypto.decrypt_event(event)).content == "and back"
    assert await world.leaks() == []
