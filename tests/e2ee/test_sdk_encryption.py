"""End-to-end encryption through the SDK, with several clients against the real app: DMs,
encrypted channels, members leaving and joining, second devices, offline devices, rotation,
persistence; and after each test, no plaintext anywhere the server keeps data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.utils.e2ee import E2eeWorld
from voicechat.sdk import ApiError, Client, NotFoundError
from voicechat.sdk.crypto import MemoryStore, PassphraseStore, TrustEvent
from voicechat.sdk.crypto import machine as crypto_machine
from voicechat.settings import Settings


@pytest.fixture
async def world(
    app: FastAPI, database_url: str, clean_valkey: str, settings: Settings
) -> AsyncIterator[E2eeWorld]:
    async with app.router.lifespan_context(app):
        world = E2eeWorld(app, database_url, Path(settings.data_dir), clean_valkey)
        yield world
        await world.close()
        # Whatever the test did, the server kept no plaintext of it.
        assert await world.leaks() == []


def _crypto(client: Client) -> crypto_machine.Crypto:
    assert client.crypto is not None
    return client.crypto


async def test_two_users_exchange_dms(world: E2eeWorld) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    assert dm.encrypted
    sent = await world.send(alice, dm.id, "hi bob, this is secret")
    assert sent.content == "hi bob, this is secret"
    assert sent.encrypted is not None
    await world.send(bob, dm.id, "hi alice, mine too")
    expected = ["hi bob, this is secret", "hi alice, mine too"]
    assert await world.read(bob, dm.id) == expected
    assert await world.read(alice, dm.id) == expected
    edited = await alice.edit(sent.id, world.said("hi bob, this is secret (edited)"))
    assert edited.content == "hi bob, this is secret (edited)"
    assert edited.edited_at is not None
    assert (await world.read(bob, dm.id))[0] == "hi bob, this is secret (edited)"
    stored = await world.raw_messages(bob, dm.id)
    assert all(m.content is None and m.encrypted for m in stored)
    # Each saw the other's device once, and never reports itself.
    for me, other in [(alice, bob), (bob, alice)]:
        events = [(e.kind, e.device_id, e.first_of_user) for e in _crypto(me).trust_events]
        assert events == [("new_device", _crypto(other).device_id, True)]
    assert await world.leaks() == []


async def test_three_users_in_an_encrypted_channel(world: E2eeWorld) -> None:
    admin, bea, cyd = await world.user("admin"), await world.user("bea"), await world.user("cyd")
    channel = await world.encrypted_channel(admin, "secret-plans", bea, cyd)
    for client, text in [(admin, "from admin"), (bea, "from bea"), (cyd, "from cyd")]:
        await world.send(client, channel.id, text)
    for client in (admin, bea, cyd):
        assert await world.read(client, channel.id) == ["from admin", "from bea", "from cyd"]


async def test_a_removed_member_cannot_read_what_follows(world: E2eeWorld) -> None:
    admin, bea, cyd = await world.user("admin"), await world.user("bea"), await world.user("cyd")
    channel = await world.encrypted_channel(admin, "team", bea, cyd)
    await world.send(admin, channel.id, "before cyd leaves")
    await world.send(bea, channel.id, "bea before")
    assert await world.read(cyd, channel.id) == ["before cyd leaves", "bea before"]
    old_sessions = _crypto(cyd).session_ids()
    await world.remove_member(admin, channel.id, cyd)
    await world.send(admin, channel.id, "after cyd left")
    await world.send(bea, channel.id, "bea after")
    with pytest.raises(NotFoundError):
        await cyd.messages(channel.id)
    # Even handed the ciphertexts (by the server, say), cyd's device has no key for them.
    await _crypto(cyd).sync()
    latest = (await world.raw_messages(admin, channel.id))[:2]
    for message in latest:
        assert message.encrypted is not None
        assert message.encrypted["session_id"] not in old_sessions
        shown = _crypto(cyd).decrypt(message)
        assert shown.content is None
        assert shown.decryption_error is not None
    assert _crypto(cyd).session_ids() == old_sessions
    assert await world.read(bea, channel.id) == [
        "before cyd leaves",
        "bea before",
        "after cyd left",
        "bea after",
    ]


async def test_a_member_who_joins_reads_what_follows(world: E2eeWorld) -> None:
    admin, bea, dan = await world.user("admin"), await world.user("bea"), await world.user("dan")
    channel = await world.encrypted_channel(admin, "team", bea)
    await world.send(admin, channel.id, "before dan joined")
    await world.add_member(admin, channel.id, dan)
    await world.send(admin, channel.id, "welcome dan")
    await world.send(bea, channel.id, "hello dan")
    page = await dan.messages(channel.id)
    shown = [(m.content, m.decryption_error is not None) for m in reversed(page.messages)]
    # History from before joining is shown as undecryptable, never as empty text.
    assert shown == [(None, True), ("welcome dan", False), ("hello dan", False)]


async def test_a_second_device_receives_keys(world: E2eeWorld) -> None:
    events: list[TrustEvent] = []
    alice, bob = await world.user("alice"), await world.user("bob", encryption=False)
    bob_crypto = await bob.enable_encryption(MemoryStore(), on_trust_event=events.append)
    dm = await alice.dm(world.uid(bob))
    await world.send(bob, dm.id, "before the new phone")
    alice_phone = await world.device("alice")
    assert _crypto(alice_phone).device_id != _crypto(alice).device_id
    await world.send(bob, dm.id, "to both of alice's devices")
    await world.send(alice, dm.id, "from the laptop")
    assert (await world.read(alice_phone, dm.id))[1:] == [
        "to both of alice's devices",
        "from the laptop",
    ]
    assert (await world.read(alice, dm.id))[-2:] == [
        "to both of alice's devices",
        "from the laptop",
    ]
    reported = {(e.kind, e.device_id, e.first_of_user) for e in events}
    assert ("new_device", _crypto(alice_phone).device_id, False) in reported
    # alice's laptop is warned that her account gained a device.
    assert ("new_device", _crypto(alice_phone).device_id, False) in {
        (e.kind, e.device_id, e.first_of_user) for e in _crypto(alice).trust_events
    }
    phone = [
        d
        for d in bob_crypto.devices(world.uid(alice))
        if d.device_id == _crypto(alice_phone).device_id
    ]
    assert phone[0].fingerprint == _crypto(alice_phone).fingerprint


async def test_an_offline_device_gets_rotated_keys_from_its_inbox(world: E2eeWorld) -> None:
    admin, bea, cyd = await world.user("admin"), await world.user("bea"), await world.user("cyd")
    channel = await world.encrypted_channel(admin, "team", bea)
    await world.send(admin, channel.id, "first words")
    # bea's device now stays offline (reads nothing) through two rotations.
    await world.add_member(admin, channel.id, cyd)
    await world.send(admin, channel.id, "second words")
    await world.remove_member(admin, channel.id, cyd)
    await world.send(admin, channel.id, "third words")
    sessions = {
        m.encrypted["session_id"]
        for m in await world.raw_messages(admin, channel.id)
        if m.encrypted
    }
    assert len(sessions) == 3
    assert await world.read(bea, channel.id) == ["first words", "second words", "third words"]
    assert await _crypto(bea).sync() == 0  # all acknowledged


async def test_sessions_rotate_after_100_messages_and_7_days(
    world: E2eeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    monkeypatch.setattr(crypto_machine, "ROTATE_AFTER_MESSAGES", 3)
    for i in range(4):
        await world.send(alice, dm.id, f"count {i}")
    crypto = _crypto(alice)
    after_count = crypto.outbound_session_id(dm.id)
    sessions = [
        m.encrypted["session_id"] for m in await world.raw_messages(alice, dm.id) if m.encrypted
    ]
    assert sessions[0] == after_count
    assert len(set(sessions)) == 2
    crypto._outbound[str(dm.id)].created_at -= 7 * 24 * 3600
    await world.send(alice, dm.id, "a week later")
    assert crypto.outbound_session_id(dm.id) != after_count
    assert await world.read(bob, dm.id) == [
        "count 0",
        "count 1",
        "count 2",
        "count 3",
        "a week later",
    ]


async def test_a_restarted_device_keeps_its_keys(world: E2eeWorld, tmp_path: Path) -> None:
    path = tmp_path / "alice.keys"
    alice = await world.user("alice", store=PassphraseStore(path, "correct horse", scrypt_n=2**10))
    bob = await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    await world.send(bob, dm.id, "read me after a restart")
    assert await world.read(alice, dm.id) == ["read me after a restart"]
    device_id = _crypto(alice).device_id
    await alice.close()
    again = await world.device("alice", store=PassphraseStore(path, "correct horse"))
    assert _crypto(again).device_id == device_id
    await world.send(bob, dm.id, "and after it")
    assert await world.read(again, dm.id) == ["read me after a restart", "and after it"]
    assert not any(text.encode() in path.read_bytes() for text in world.plaintexts)


async def test_a_public_encrypted_channel_reaches_everyone_who_can_see_it(
    world: E2eeWorld,
) -> None:
    admin, bea, cyd = await world.user("admin"), await world.user("bea"), await world.user("cyd")
    lobby = await admin.create_channel("lobby", encrypted=True)
    recipients = await bea._request("GET", f"/channels/{lobby.id}/recipients")
    assert set(recipients["user_ids"]) == {world.uid(c) for c in (admin, bea, cyd)}
    await world.send(admin, lobby.id, "to the whole server")
    await world.send(cyd, lobby.id, "cyd answers")
    assert await world.read(bea, lobby.id) == ["to the whole server", "cyd answers"]
    plain = await admin.create_channel("plain")
    with pytest.raises(ApiError) as refused:
        await bea._request("GET", f"/channels/{plain.id}/recipients")
    assert refused.value.code == "not_encrypted"


async def test_plain_channels_are_untouched(world: E2eeWorld) -> None:
    admin, bea = await world.user("admin"), await world.user("bea")
    general = await admin.create_channel("general")
    await admin.send(general.id, "plain hello")
    page = await bea.messages(general.id)
    assert [(m.content, m.encrypted) for m in page.messages] == [("plain hello", None)]
    assert _crypto(bea).rejected == []
