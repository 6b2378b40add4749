"""Gateway events applied by name (`EventApplier.handlers`), to the parts of a session made by
`compose` for a real client: what each event changes, and that unknown ones change nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from tests.client.conftest import headless_settings
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import Change, DeviceEngineFactory, TokenStore
from voicechat.sdk.app.session import compose
from voicechat.sdk.app.signin import SignIn
from voicechat.sdk.gateway import GatewayEvent


def _message(channel_id: str, author: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(extra.pop("id", uuid4())),
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "created_at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def test_each_event_changes_its_part(server: LiveServer, home: Path) -> None:
    async with Client(server.base_url) as client:
        me = await client.register("admin", DEFAULT_PASSWORD)
        settings = headless_settings(home, server.base_url)
        sign_in = SignIn.of(settings, TokenStore(home))
        sign_in.keep_tokens(client)
        parts = compose(client, settings, sign_in, DeviceEngineFactory())
        changes: list[Change] = []
        parts.feed.subscribe(changes.append)
        apply = parts.events.apply

        assert set(parts.events.handlers) >= {
            "message.new",
            "message.edit",
            "message.delete",
            "channel.update",
            "typing.start",
            "typing.stop",
            "presence.update",
            "voice.user_joined",
            "voice.user_left",
            "voice.speaking",
            "voice.state",
            "gateway.reconnected",
            "gateway.auth_failed",
        }
        channel = {"id": str(uuid4()), "name": "general", "type": "text"}
        await apply(GatewayEvent("channel.update", {"action": "create", "channel": channel}))
        assert [c.name for c in parts.channels.all()] == ["general"]

        bob = {"id": str(uuid4()), "username": "bob", "status": "online"}
        timeline = parts.conversations.timeline(channel["id"])
        timeline.loaded = True
        first = _message(channel["id"], bob, "hello")
        await apply(GatewayEvent("message.new", first))
        assert [m.content for m in timeline.messages] == ["hello"]
        assert timeline.unread == 1, "not the channel on screen"
        assert parts.roster.user(timeline.messages[0].author.id or uuid4()) is not None
        edited = {**first, "content": "hello!", "edited_at": datetime.now(UTC).isoformat()}
        await apply(GatewayEvent("message.edit", edited))
        assert [m.content for m in timeline.messages] == ["hello!"]

        typing = {"channel_id": channel["id"], "user_id": bob["id"], "expires_in": 8}
        await apply(GatewayEvent("typing.start", typing))
        assert [u.username for u in timeline.typing_users] == ["bob"]
        await apply(GatewayEvent("typing.stop", typing))
        assert timeline.typing_users == []
        mine = {"channel_id": channel["id"], "user_id": str(me.id)}
        await apply(GatewayEvent("typing.start", mine))
        assert timeline.typing_users == [], "one's own typing is not shown"

        await apply(GatewayEvent("presence.update", {"user_id": bob["id"], "status": "dnd"}))
        assert [m.presence for m in parts.roster.members.values() if m.name == "bob"] == ["dnd"]

        room = {"channel_id": channel["id"], "user_id": bob["id"]}
        await apply(GatewayEvent("voice.user_joined", {**room, "muted": True}))
        await apply(GatewayEvent("voice.speaking", {**room, "speaking": True}))
        [participant] = parts.channels.voice_rooms[UUID(channel["id"])].values()
        assert (participant.muted, participant.speaking) == (True, True)
        await apply(GatewayEvent("voice.state", {**room, "muted": False}))
        await apply(GatewayEvent("voice.user_left", room))
        assert parts.channels.voice_members(UUID(channel["id"])) == []

        await apply(
            GatewayEvent("message.delete", {"channel_id": channel["id"], "id": first["id"]})
        )
        assert timeline.messages == []

        before = len(changes)
        await apply(GatewayEvent("something.new", {"x": 1}))
        assert len(changes) == before, "an event this client does not know changes nothing"

        await apply(GatewayEvent("channel.update", {"action": "delete", "channel": channel}))
        assert len(parts.channels) == 0
        assert parts.conversations.existing(UUID(channel["id"])) is None

        await apply(GatewayEvent("gateway.auth_failed", {}))
        assert parts.link.state == "offline"
        assert parts.feed.error == "Your session has ended. Sign in again."
        assert changes[-1].kind == "session_ended"
        assert sign_in.tokens.load(server.base_url) is None
        await parts.background.cancel_all()
