"""Who is who (`Roster`) against a live server, and how parts report (`ChangeFeed`,
`Background`)."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from tests.client.conftest import until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import Change
from voicechat.sdk.app.feed import Background, ChangeFeed
from voicechat.sdk.app.roster import Roster


async def test_the_roster_learns_people_once_and_follows_presence(server: LiveServer) -> None:
    async with Client(server.base_url) as admin, Client(server.base_url) as bob:
        me = await admin.register("admin", DEFAULT_PASSWORD)
        bob_me = await bob.register("bob", DEFAULT_PASSWORD)
        assert bob_me.id is not None
        feed = ChangeFeed(admin.base_url)
        changes: list[Change] = []
        feed.subscribe(changes.append)
        learned: list[object] = []
        roster = Roster(admin, feed, Background(feed))
        roster.on_learned = learned.append
        roster.set_me(me)
        assert roster.my_id == me.id
        assert [m.name for m in roster.sorted()] == ["admin"]

        roster.learn(bob_me.id)
        roster.learn(bob_me.id)  # already on its way: one look-up
        await until(lambda: learned == [bob_me.id], "bob's profile")
        assert roster.user(bob_me.id) is not None

        await roster.presence_changed(bob_me.id, "idle")
        assert roster.members[bob_me.id].presence == "idle"
        stranger = uuid4()
        await roster.presence_changed(stranger, "online")
        assert roster.members[stranger].name == str(stranger)[:8], "unknown: named by its id"
        assert await roster.set_presence("dnd")
        assert roster.me is not None
        assert roster.me.status == "dnd"
        assert any(c.kind == "me" for c in changes)


async def test_the_feed_reports_sentences_and_failed_background_work() -> None:
    feed = ChangeFeed("http://127.0.0.1:9")
    changes: list[Change] = []
    unsubscribe = feed.subscribe(changes.append)
    feed.subscribe(lambda change: 1 / 0)  # a failing listener does not stop the others
    assert feed.report("Something went wrong.") == "Something went wrong."
    assert feed.error == "Something went wrong."
    feed.clear_error()
    assert feed.error is None
    assert [c.payload for c in changes] == ["Something went wrong.", None]

    async def fails() -> None:
        raise ConnectionRefusedError

    background = Background(feed)
    background.spawn(fails())
    await until(lambda: feed.error is not None, "the failure reported")
    assert feed.error is not None
    assert "127.0.0.1:9" in feed.error
    background.spawn(asyncio.sleep(60))
    await background.cancel_all()
    unsubscribe()
    feed.notify(Change("me"))
    assert changes[-1].kind == "error"
