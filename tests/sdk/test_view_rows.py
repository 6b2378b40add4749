"""The view-model rows the Kivy screens draw, built by pure functions from plain state."""

from __future__ import annotations

from uuid import UUID, uuid4

from voicechat.sdk.app.state import ChannelTree, Member, VoiceParticipant
from voicechat.sdk.app.view_rows import (
    MemberListRow,
    SidebarChannel,
    SidebarParticipant,
    SidebarSection,
    first_text_channel,
    member_groups,
    member_rows,
    same_layout,
    sidebar_rows,
    typing_text,
    user_label,
)
from voicechat.sdk.models import Channel, User


def _channel(name: str, kind: str = "text", **fields: object) -> Channel:
    return Channel.model_validate({"id": uuid4(), "name": name, "type": kind, **fields})


def _user(name: str, display: str | None = None) -> User:
    return User(id=uuid4(), username=name, display_name=display)


def test_sidebar_rows_follow_the_tree_with_unread_selection_and_participants() -> None:
    tree = ChannelTree()
    talk = _channel("Talk", "category", position=1)
    general = _channel("general", category_id=talk.id)
    lounge = _channel("Lounge", "voice", category_id=talk.id)
    loose = _channel("announcements")
    bob, zoe = _user("bob"), _user("zoe", "Zoe")
    dm = _channel("dm", "dm", members=[bob.model_dump()])
    tree.replace([talk, general, lounge, loose, dm])
    assert zoe.id is not None
    assert bob.id is not None
    tree.voice_rooms[lounge.id] = {
        zoe.id: VoiceParticipant(zoe.id, speaking=True),
        bob.id: VoiceParticipant(bob.id, muted=True),
    }
    people = {u.id: u for u in (bob, zoe)}

    rows = sidebar_rows(
        tree,
        shown_channel=str(general.id),
        voice_channel=None,
        unread={general.id: 4, loose.id: 2, dm.id: 1, lounge.id: 9},
        user=people.get,
        title=lambda channel: "bob",
    )

    assert rows == [
        SidebarChannel(str(loose.id), "text", "announcements", False, 2),
        SidebarSection("TALK"),
        SidebarChannel(str(general.id), "text", "general", True, 0),
        SidebarChannel(str(lounge.id), "voice", "Lounge", False, 0),
        SidebarParticipant(str(bob.id), "bob", False, True),
        SidebarParticipant(str(zoe.id), "Zoe", True, False),
        SidebarSection("DIRECT MESSAGES"),
        SidebarChannel(str(dm.id), "dm", "bob", False, 1),
    ]


def test_a_sidebar_that_differs_only_in_speaking_keeps_its_layout() -> None:
    before = [SidebarSection("TALK"), SidebarParticipant("u1", "bob", False, False)]
    speaking = [SidebarSection("TALK"), SidebarParticipant("u1", "bob", True, True)]
    renamed = [SidebarSection("TALK"), SidebarParticipant("u1", "Bob", False, False)]
    assert same_layout(before, speaking)
    assert not same_layout(before, renamed)
    assert not same_layout(before, before[:1])


def test_first_text_channel_is_in_sidebar_order() -> None:
    tree = ChannelTree()
    assert first_text_channel(tree) is None
    talk = _channel("Talk", "category")
    voice = _channel("Lounge", "voice")
    inside = _channel("general", category_id=talk.id)
    tree.replace([talk, voice, inside])
    assert first_text_channel(tree) == inside


def test_member_rows_and_groups() -> None:
    ann, bob, cid = _user("ann", "Ann"), _user("bob"), _user("cid")
    rows = member_rows([Member(ann, "online"), Member(bob, "dnd"), Member(cid, "offline")])
    assert rows == [
        MemberListRow(str(ann.id), "Ann", "online"),
        MemberListRow(str(bob.id), "bob", "dnd"),
        MemberListRow(str(cid.id), "cid", "offline"),
    ]
    groups = member_groups(rows)
    assert [(g.title, len(g.rows)) for g in groups] == [("ONLINE — 2", 2), ("OFFLINE — 1", 1)]
    assert member_groups(rows[:1])[0].title == "ONLINE — 1"
    assert member_groups([]) == []


def test_typing_text_and_labels() -> None:
    assert typing_text([]) == ""
    assert typing_text(["bob"]) == "bob is typing…"
    assert typing_text(["ann", "bob", "cid"]) == "ann, bob and cid are typing…"
    assert typing_text(["a", "b", "c", "d"]) == "Several people are typing…"
    assert user_label(None) == "someone"
    assert user_label(User(id=UUID(int=1), username="", display_name=None)) == "someone"
    assert user_label(_user("bob", "Bob B")) == "Bob B"
