"""A timeline on its own, linked by `TimelineLinks` to a real client's pages and to plain
callables for the rest: paging, the outbox's entries after the loaded ones, unread counts."""

from __future__ import annotations

from uuid import UUID

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import Change, TimelineEntry
from voicechat.sdk.app.timeline import Timeline, TimelineLinks
from voicechat.sdk.models import Message, User


async def test_a_timeline_needs_only_its_links(server: LiveServer) -> None:
    async with Client(server.base_url) as admin:
        me = await admin.register("admin", DEFAULT_PASSWORD)
        channel = await admin.create_channel("history")
        for n in range(5):
            await admin.send(channel.id, f"message {n}")

        changes: list[Change] = []
        delivered: list[Message] = []
        authors: list[Message] = []
        shown: list[UUID | None] = [None]
        pending: list[TimelineEntry] = []
        links = TimelineLinks(
            pages=admin,
            notify=changes.append,
            my_id=lambda: me.id,
            shown_channel=lambda: shown[0],
            user=lambda user_id: User(id=user_id, username="known"),
            pending=lambda channel_id: pending if channel_id == channel.id else [],
            delivered=delivered.extend,
            authors_seen=authors.extend,
        )
        timeline = Timeline(links, channel.id, page_size=2)
        await timeline.load_latest()
        assert [m.content for m in timeline.messages] == ["message 3", "message 4"]
        assert timeline.has_more
        assert len(delivered) == 2, "the outbox is told what the server has"
        assert len(authors) == 2
        while timeline.has_more:
            await timeline.load_older()
        assert [e.content for e in timeline.entries] == [f"message {n}" for n in range(5)]
        assert changes[-1] == Change("timeline", channel.id)

        # The outbox's entries come after the loaded messages.
        stand_in = timeline.messages[0].model_copy(update={"content": "waiting"})
        pending.append(TimelineEntry(stand_in, pending=True))
        assert timeline.entries[-1].pending

        # Someone else's new message counts as unread while another channel is shown.
        other = timeline.messages[-1].model_copy(
            update={
                "id": UUID(int=timeline.messages[-1].id.int + 1),
                "author": User(id=None, username="bob"),
            }
        )
        timeline.add(other)
        assert timeline.unread == 1
        shown[0] = channel.id
        timeline.add(other)
        assert timeline.unread == 1, "the same message once"

        # Typing names come from the `user` link.
        assert me.id is not None
        timeline.typing_started(me.id, 5)
        assert [u.username for u in timeline.typing_users] == ["known"]
        timeline.close()
