"""Voice state in the application model: two users in a channel through the live server's
SFU, with the real audio engine in its device-less mode (real native peers, real pipelines,
no sound card)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

import numpy as np

from tests.client.conftest import SessionFactory, until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import AppSession, AudioSettings, VoiceParticipant
from voicechat.sdk.audio import VoiceEngine


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(48_000 * seconds)) / 48_000
    return (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def _call(session: AppSession) -> dict[UUID, VoiceParticipant]:
    return session.voice.participants if session.voice is not None else {}


def _me(session: AppSession) -> UUID:
    assert session.me is not None
    assert session.me.id is not None
    return session.me.id


async def test_join_mute_speak_deafen_and_leave(sessions: SessionFactory) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    bob = await sessions("bob")
    for session in (alice, bob):
        # A pure tone is what noise suppression removes.
        session.settings.audio = AudioSettings(
            input_device="none", output_device="none", noise_suppression=False
        )
    lounge = await admin.client.create_channel("Lounge", "voice")
    await until(lambda: lounge.id in alice.channels and lounge.id in bob.channels, "the channel")

    # A microphone that is not there: the call is not joined, and the reason is readable.
    alice.settings.audio = AudioSettings(input_device="No Such Microphone", output_device="none")
    assert not await alice.join_voice(lounge.id)
    assert alice.voice is None
    assert alice.error is not None
    assert "No Such Microphone" in alice.error
    assert "Traceback" not in alice.error
    alice.settings.audio = AudioSettings(
        input_device="none", output_device="none", noise_suppression=False
    )

    assert await alice.join_voice(lounge.id)
    assert alice.voice is not None
    assert alice.voice.connected
    assert alice.voice.bitrate == 64000
    assert list(_call(alice)) == [_me(alice)]
    assert await bob.join_voice(lounge.id)
    assert bob.voice is not None
    assert set(_call(bob)) == {_me(alice), _me(bob)}
    await until(lambda: _me(bob) in _call(alice), "bob in alice's call")
    # Someone not in the call sees who is in the channel too.
    await until(
        lambda: set(admin.channels.voice_members(lounge.id)) == {_me(alice), _me(bob)},
        "the admin's view of the channel",
    )

    assert await alice.set_muted(True)
    await until(lambda: _call(bob)[_me(alice)].muted, "alice muted at bob's")
    assert await alice.set_muted(False)
    await until(lambda: not _call(bob)[_me(alice)].muted, "alice unmuted")

    engine = cast(VoiceEngine, bob.voice_engine)
    engine.feed_input(_tone(2.0))
    await until(lambda: _call(alice)[_me(bob)].speaking, "bob speaking")
    await until(lambda: bob.voice_stats().get("packets_sent", 0) > 20, "bob's packets")
    await until(lambda: alice.voice_stats()["quality"] != "unknown", "a quality figure")
    assert alice.voice is not None
    assert alice.voice.quality in ("good", "fair", "poor")

    # Deafening mutes; undeafening restores the mute state from before.
    assert await bob.set_deafened(True)
    assert bob.voice.muted
    assert engine.deafened
    await until(lambda: _call(alice)[_me(bob)].muted, "bob muted by deafening")
    assert await bob.set_deafened(False)
    assert not bob.voice.muted
    assert not engine.muted

    bob.set_user_volume(_me(alice), 1.5)
    assert bob.settings.user_volumes == {str(_me(alice)): 1.5}

    await bob.leave_voice()
    assert bob.voice is None
    assert bob.voice_engine is None
    await until(lambda: _me(bob) not in _call(alice), "bob gone")


async def test_a_new_session_sees_every_member_and_who_is_already_in_a_call(
    sessions: SessionFactory, server: LiveServer
) -> None:
    admin = await sessions("admin")
    alice = await sessions("alice")
    async with Client(server.base_url) as quiet:
        # Registered, never connected: offline, yet a member of the community.
        await quiet.register("quiet", DEFAULT_PASSWORD)
    lounge = await admin.client.create_channel("Lounge", "voice")
    await until(lambda: lounge.id in alice.channels, "the channel at alice's")
    assert await alice.join_voice(lounge.id)
    assert await alice.set_muted(True)

    bob = await sessions("bob")

    presence = {m.user.username: m.presence for m in bob.members.values()}
    assert presence == {"admin": "online", "alice": "online", "bob": "online", "quiet": "offline"}
    assert bob.channels.voice_members(lounge.id) == [_me(alice)]
    assert bob.voice_rooms[lounge.id][_me(alice)].muted
    # And it stays current from the events.
    await alice.leave_voice()
    await until(lambda: bob.channels.voice_members(lounge.id) == [], "alice gone at bob's")
