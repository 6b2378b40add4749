"""The outbox on its own: queued on disk while the server is unreachable, delivered exactly
once by nonce, refusals kept with a sentence until discarded."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from tests.utils.net import free_port
from voicechat.sdk import Client
from voicechat.sdk.app.feed import Background, ChangeFeed
from voicechat.sdk.app.outbox import Outbox
from voicechat.sdk.app.state import Change
from voicechat.sdk.app.timeline import Timeline
from voicechat.sdk.models import Me


def _outbox(client: Client, path: Path, me: Me | None, changes: list[Change]) -> Outbox:
    feed = ChangeFeed(client.base_url)
    feed.subscribe(changes.append)
    timelines: dict[UUID, Timeline] = {}
    return Outbox(
        client,
        feed,
        Background(feed),
        path=lambda: path,
        me=lambda: me,
        timeline=timelines.get,
        online=lambda: False,
    )


async def test_waiting_on_disk_then_delivered_once(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "outbox.json"
    async with Client(server.base_url) as admin:
        me = await admin.register("admin", DEFAULT_PASSWORD)
        channel = await admin.create_channel("general")

        # A server that is not there: the message waits, on disk.
        async with Client(f"http://127.0.0.1:{free_port()}") as nowhere:
            changes: list[Change] = []
            offline = _outbox(nowhere, path, me, changes)
            entry = await offline.send(channel.id, "written offline")
            assert entry.pending
            assert len(offline) == 1
            assert [e.content for e in offline.pending_entries(channel.id)] == ["written offline"]
            assert any(c.kind == "timeline" for c in changes)
            offline.close()
        [stored] = json.loads(path.read_text())
        assert stored["content"] == "written offline"

        # The next session takes it in and delivers it; the file goes.
        online = _outbox(admin, path, me, [])
        online.load()
        online.load()  # twice: still one message
        assert len(online) == 1
        await online.flush()
        assert len(online) == 0
        assert not path.exists()
        contents = [m.content async for m in admin.history(channel.id)]
        assert contents == ["written offline"]

        # The server already has it (seen in a page): dropped without a second send.
        again = _outbox(admin, path, me, [])
        waiting = await _queue_without_sending(again, channel.id)
        sent = await admin.send(channel.id, "sent elsewhere", nonce=waiting)
        again.forget_delivered([sent])
        assert len(again) == 0


async def _queue_without_sending(outbox: Outbox, channel_id: UUID) -> str:
    """Queue a message the way `send` does, but through an unreachable path (its nonce)."""
    entry = await outbox.send(channel_id, "sent elsewhere", attachments=[Path("/nonexistent")])
    assert entry.error == "Cannot open nonexistent: it does not exist."
    assert entry.nonce is not None
    return entry.nonce


async def test_a_refused_message_stays_until_discarded(server: LiveServer, tmp_path: Path) -> None:
    async with Client(server.base_url) as admin:
        me = await admin.register("admin", DEFAULT_PASSWORD)
        channel = await admin.create_channel("general")
        changes: list[Change] = []
        outbox = _outbox(admin, tmp_path / "outbox.json", me, changes)
        entry = await outbox.send(channel.id, "x" * 5000)
        assert entry.error is not None
        assert not entry.pending
        assert outbox.pending_entries(channel.id)[0].error == entry.error
        assert any(c.kind == "error" for c in changes)
        await outbox.retry(entry)
        assert len(outbox) == 1, "refused again, still there"
        outbox.discard(entry)
        assert len(outbox) == 0
