"""`Client.search_messages` against a live server, and the highlight's segments."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from voicechat.sdk import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.search import highlight_segments


async def test_search_messages_pages_and_filters(live_server: LiveServer) -> None:
    async with Client(live_server.base_url) as owner, Client(live_server.base_url) as member:
        await owner.register("owner", "owner password")
        await member.register("member", "member password")
        general = await owner.create_channel("general")
        sent = [await member.send(general.id, f"the voice check number {i}") for i in range(3)]
        await owner.send(general.id, "voice by the owner")

        first = await member.search_messages("voic", author_id=member.user.id, limit=2)
        assert [r.message.id for r in first.results] == [sent[2].id, sent[1].id]
        assert first.has_more
        assert first.results[0].channel_id == general.id
        assert first.results[0].message.author.username == "member"
        assert first.results[0].segments() == [
            ("the ", False),
            ("voice", True),
            (" check number 2", False),
        ]
        rest = await member.search_messages(
            "voic", author_id=member.user.id, limit=2, cursor=first.next_cursor
        )
        assert [r.message.id for r in rest.results] == [sent[0].id]
        assert not rest.has_more
        assert rest.next_cursor is None
        older = await member.search_messages("voice", channel_id=general.id, before=sent[1].id)
        assert [r.message.id for r in older.results] == [sent[0].id]

        vault = await owner.create_channel("vault", encrypted=True)
        with pytest.raises(ApiError) as refused:
            await owner.search_messages("voice", channel_id=vault.id)
        assert refused.value.code == "channel_not_searchable"


def test_highlight_segments_unescape_every_piece() -> None:
    assert highlight_segments("a &lt;b&gt; <mark>x &amp; y</mark>!<mark>z</mark>") == [
        ("a <b> ", False),
        ("x & y", True),
        ("!", False),
        ("z", True),
    ]
    assert highlight_segments("") == []
