"""A session's encryption part on its own: where its keys live, turning the device on, the
trust events it passes on, and the encrypted timelines it reloads once it can decrypt."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import Change
from voicechat.sdk.app.encryption import Encryption
from voicechat.sdk.app.feed import Background, ChangeFeed
from voicechat.sdk.crypto import MemoryStore


async def test_keys_per_account_and_trust_events(server: LiveServer, tmp_path: Path) -> None:
    async with Client(server.base_url) as alice, Client(server.base_url) as bob:
        me = await alice.register("alice", DEFAULT_PASSWORD)
        bob_me = await bob.register("bob", DEFAULT_PASSWORD)
        await bob.enable_encryption(MemoryStore())
        feed = ChangeFeed(alice.base_url)
        changes: list[Change] = []
        feed.subscribe(changes.append)
        encryption = Encryption(
            alice, tmp_path, feed, Background(feed), me=lambda: me, timelines=lambda: []
        )
        host = server.base_url.split("://", 1)[1].replace(":", "_")
        assert encryption.key_store_path() == tmp_path / "keys" / f"{host}-alice.keys"
        assert not encryption.enabled

        assert await encryption.enable(MemoryStore())
        assert encryption.enabled
        assert await encryption.enable(), "already on: nothing to do"

        # Writing to bob finds his device: a trust event, passed on as a change.
        dm = await alice.dm(str(bob_me.id))
        await alice.send(dm.id, "hello bob")
        assert [e.kind for e in encryption.trust_events] == ["new_device"]
        assert [c.kind for c in changes] == ["trust"]
