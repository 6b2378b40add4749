"""The voice controller on its own: who is in which room, the controls outside a call, a call
that cannot start (a missing microphone) and one that does, on a live server's SFU."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from tests.client.conftest import headless_settings
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import AudioSettings, Change, DeviceEngineFactory, VoiceParticipant
from voicechat.sdk.app.feed import Background, ChangeFeed
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.voice_controller import VoiceController, VoiceRooms
from voicechat.sdk.models import VoiceState as CallMember


async def test_rooms_controls_and_a_call(server: LiveServer, home: Path) -> None:
    async with Client(server.base_url) as client:
        me = await client.register("admin", DEFAULT_PASSWORD)
        assert me.id is not None
        lounge = await client.create_channel("Lounge", "voice")
        settings = headless_settings(home, server.base_url)
        feed = ChangeFeed(client.base_url)
        changes: list[Change] = []
        feed.subscribe(changes.append)
        rooms: VoiceRooms = {}
        roster = Roster(client, feed, Background(feed))
        calls = VoiceController(
            client, settings, DeviceEngineFactory(), feed, rooms, roster, online=lambda: True
        )

        # Rooms from a listing keep the speaking flags already known (unless muted now).
        bob, cid = uuid4(), uuid4()
        rooms[lounge.id] = {bob: VoiceParticipant(bob, speaking=True)}
        calls.load_rooms(
            [
                CallMember(channel_id=lounge.id, user_id=bob),
                CallMember(channel_id=lounge.id, user_id=cid, muted=True),
            ]
        )
        assert rooms[lounge.id][bob].speaking
        assert rooms[lounge.id][cid].muted
        calls.participant_changed(
            "voice.user_left", {"channel_id": str(lounge.id), "user_id": str(cid)}
        )
        assert list(rooms[lounge.id]) == [bob]
        calls.load_rooms([])

        # Outside a call the controls do nothing, and say so.
        assert not await calls.set_muted(True)
        assert not await calls.set_deafened(True)
        assert calls.stats() == {}
        calls.set_user_volume(bob, 3.0)
        assert settings.user_volumes == {str(bob): 2.0}, "kept, and capped"

        # A microphone that is not there: no call, a readable reason, nothing left dialled.
        settings.audio = AudioSettings(input_device="No Such Microphone", output_device="none")
        assert not await calls.join(lounge.id)
        assert calls.voice is None
        assert calls.engine is None
        assert feed.error is not None
        assert "No Such Microphone" in feed.error

        settings.audio = AudioSettings(input_device="none", output_device="none")
        assert await calls.join(lounge.id)
        assert calls.voice is not None
        assert calls.voice.connected
        assert list(rooms[lounge.id]) == [me.id]
        assert calls.in_channel(lounge.id)
        assert await calls.set_deafened(True)
        assert calls.voice.muted
        assert await calls.set_deafened(False)
        assert not calls.voice.muted
        calls.connection_lost()
        assert not calls.voice.connected, "shown as connecting until the call is dialled again"
        await calls.leave()
        assert calls.voice is None
        assert rooms[lounge.id] == {}
        assert any(c.kind == "voice" and c.channel_id == lounge.id for c in changes)
