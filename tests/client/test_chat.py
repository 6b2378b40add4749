"""The application model against a live server: channels, timelines, paging, typing,
presence, attachments, edits and deletes, as a person using the client would see them."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from tests.client.conftest import SessionFactory, until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import AppSession, Change
from voicechat.sdk.crypto import MemoryStore


def _texts(session: AppSession, channel_id: UUID) -> list[str | None]:
    return [e.content for e in session.timeline(channel_id).entries]


async def test_channels_tree_and_messages_both_ways(
    sessions: SessionFactory, server: LiveServer
) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    changes: list[Change] = []
    alice.subscribe(changes.append)

    talk = await admin.client.create_channel("Talk", "category", position=1)
    general = await admin.client.create_channel("general", category_id=talk.id)
    lounge = await admin.client.create_channel("Lounge", "voice", category_id=talk.id)
    loose = await admin.client.create_channel("announcements")
    # Alice was already online: the tree fills from channel.update events.
    await until(lambda: len(alice.channels) == 4, "the channels to reach alice")
    groups = alice.channels.categories
    assert [(g.category.name if g.category else None) for g in groups] == [None, "Talk"]
    assert [c.name for c in groups[0].channels] == [loose.name]
    assert [c.name for c in groups[1].channels] == ["general", "Lounge"]
    assert any(c.kind == "channels" for c in changes)

    timeline = await alice.select_channel(general.id)
    assert timeline.entries == []
    assert not timeline.has_more
    await admin.select_channel(general.id)

    sent = await alice.send(general.id, "hello from alice")
    assert not sent.pending
    assert sent.error is None
    assert _texts(alice, general.id) == ["hello from alice"]
    await until(lambda: _texts(admin, general.id) == ["hello from alice"], "admin to see it")

    # A second, plain SDK client (a bot, another device) writes: it shows up once.
    async with Client(server.base_url) as bob:
        await bob.register("bob", DEFAULT_PASSWORD)
        await bob.send(general.id, "hi, bob here")
    await until(lambda: len(_texts(alice, general.id)) == 2, "bob's message")
    entries = alice.timeline(general.id).entries
    assert [(e.author.username, e.content) for e in entries] == [
        ("alice", "hello from alice"),
        ("bob", "hi, bob here"),
    ]
    assert any(c.kind == "timeline" and c.channel_id == general.id for c in changes), (
        "the GUI was told to redraw the timeline"
    )

    # Messages in a channel not shown count as unread until it is shown.
    await admin.send(loose.id, "news")
    await admin.send(loose.id, "more news")
    await until(lambda: alice.timeline(loose.id).unread == 2, "the unread count")
    assert alice.timeline(general.id).unread == 0
    shown = await alice.select_channel(loose.id)
    assert shown.unread == 0
    assert [e.content for e in shown.entries] == ["news", "more news"]

    # A channel renamed and one deleted elsewhere change the tree here.
    await admin.client.create_channel("off-topic", category_id=talk.id)
    await until(lambda: len(alice.channels) == 5, "the new channel")
    async with Client(server.base_url) as admin_device:
        await admin_device.login("admin", DEFAULT_PASSWORD)
        await admin_device._request("DELETE", f"/channels/{lounge.id}")
    await until(lambda: alice.channels.get(lounge.id) is None, "the deleted channel to go")


async def test_paging_back_through_history(sessions: SessionFactory) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    channel = await admin.client.create_channel("history")
    for n in range(120):
        await admin.client.send(channel.id, f"message {n:03}")

    timeline = await alice.select_channel(channel.id)
    assert [e.content for e in timeline.entries] == [f"message {n:03}" for n in range(70, 120)]
    assert timeline.has_more
    pages = 0
    while timeline.has_more:
        added = await alice.load_older(channel.id)
        assert added > 0
        pages += 1
    assert pages == 2
    contents = [e.content for e in timeline.entries]
    assert contents == [f"message {n:03}" for n in range(120)]
    assert len({e.id for e in timeline.entries}) == 120
    assert await alice.load_older(channel.id) == 0


async def test_typing_shows_and_expires_and_presence_follows(sessions: SessionFactory) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    bob = await sessions("bob")
    channel = await admin.client.create_channel("typing")
    timeline = await alice.select_channel(channel.id)

    await bob.typing(channel.id)
    await until(lambda: [u.username for u in timeline.typing_users] == ["bob"], "bob typing")
    # Nobody refreshes it: it goes away by itself (8 s after the signal).
    await until(lambda: timeline.typing_users == [], "bob's typing to expire", within=30)

    # Client-side expiry alone, without the server's typing.stop.
    assert bob.me is not None
    assert bob.me.id is not None
    timeline.typing_started(bob.me.id, 0.05)
    assert [u.username for u in timeline.typing_users] == ["bob"]
    await until(lambda: timeline.typing_users == [], "the local expiry")

    # Sending a message ends the author's indicator at once.
    await bob.typing(channel.id)
    await until(lambda: len(timeline.typing_users) == 1, "bob typing again")
    await bob.send(channel.id, "done typing")
    await until(lambda: timeline.typing_users == [], "the indicator to end with the message")

    bob_id = bob.me.id
    await until(lambda: bob_id in alice.members, "bob among alice's members")
    await bob.set_presence("dnd")
    await until(lambda: alice.members[bob_id].presence == "dnd", "bob's dnd")
    await bob.close()
    await until(lambda: alice.members[bob_id].presence == "offline", "bob offline")
    names = [m.name for m in alice.member_list()]
    assert names.index("alice") < names.index("bob"), "online members come first"


async def test_attachments_edits_deletes_and_refusals(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    channel = await admin.client.create_channel("files")
    await alice.select_channel(channel.id)
    await admin.select_channel(channel.id)

    upload = tmp_path / "notes.txt"
    upload.write_text("meeting at noon\n")
    entry = await alice.send(channel.id, "the notes", attachments=[upload])
    assert not entry.pending
    [attachment] = entry.attachments
    assert attachment.filename == "notes.txt"

    downloads = tmp_path / "downloads"
    first = await admin.download(attachment, downloads)
    second = await admin.download(attachment, downloads)
    assert first is not None
    assert second is not None
    assert first.read_text() == second.read_text() == "meeting at noon\n"
    assert [first.name, second.name] == ["notes.txt", "notes (1).txt"]

    assert await alice.edit(entry.id, "the notes (final)")
    await until(
        lambda: _texts(admin, channel.id) == ["the notes (final)"], "the edit at the admin's"
    )
    edited = admin.timeline(channel.id).get(entry.id)
    assert edited is not None
    assert edited.edited_at is not None

    # Someone else's message: the server refuses, the client says why in a sentence.
    assert not await admin.edit(entry.id, "hijacked")
    assert admin.error == "You can only edit your own messages."
    assert not await alice.delete((await admin.send(channel.id, "admin's own")).id), (
        "a member cannot delete the admin's message"
    )
    assert alice.error == "You are not allowed to do that here."

    # A file that is gone by the time it would be uploaded: refused here, with a sentence.
    missing = await alice.send(channel.id, "see attached", attachments=[tmp_path / "gone.txt"])
    assert missing.error == "Cannot open gone.txt: it does not exist."
    assert not missing.pending
    alice.discard(missing)
    assert alice.outbox_size == 0

    assert await alice.delete(entry.id)
    await until(lambda: _texts(admin, channel.id) == ["admin's own"], "the delete")


async def test_direct_messages_are_end_to_end_encrypted(sessions: SessionFactory) -> None:
    await sessions("admin")
    alice = await sessions("alice")
    bob = await sessions("bob")
    for session in (alice, bob):
        assert await session.enable_encryption(MemoryStore())
        assert session.encryption_enabled
    assert bob.me is not None
    assert bob.me.id is not None
    dm = await alice.open_dm(bob.me.id)
    assert dm is not None
    assert alice.channel_title(dm) == "bob"
    await until(lambda: dm.id in bob.channels, "the DM in bob's sidebar")
    assert [bob.channel_title(c) for c in bob.channels.dms] == ["alice"]
    await bob.select_channel(dm.id)
    await alice.select_channel(dm.id)

    sent = await alice.send(dm.id, "only bob can read this")
    assert sent.error is None
    await until(lambda: _texts(bob, dm.id) == ["only bob can read this"], "bob to read it")
    assert _texts(alice, dm.id) == ["only bob can read this"]
    [message] = bob.timeline(dm.id).messages
    assert message.encrypted is not None, "it travelled as ciphertext"
