"""The SDK against a server that lies (Albrecht et al. 2022): devices added behind a user's back,
room keys slipped in unencrypted or over Megolm, replayed Olm pre-key messages, messages
attributed to someone else, and one-time keys handed out twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import vodozemac
from fastapi import FastAPI

from tests.utils.devices import TestDevice
from tests.utils.e2ee import E2eeWorld
from voicechat.e2ee.signing import canonical_json
from voicechat.sdk import Client
from voicechat.sdk.crypto import TrustEvent
from voicechat.sdk.crypto.machine import Crypto
from voicechat.settings import Settings

MEGOLM = "m.megolm.v1.aes-sha2"


@pytest.fixture
async def world(
    app: FastAPI, database_url: str, clean_valkey: str, settings: Settings
) -> AsyncIterator[E2eeWorld]:
    async with app.router.lifespan_context(app):
        world = E2eeWorld(app, database_url, Path(settings.data_dir), clean_valkey)
        yield world
        await world.close()
        assert await world.leaks() == []


def _crypto(client: Client) -> Crypto:
    assert client.crypto is not None
    return client.crypto


async def _insert_device(world: E2eeWorld, device: TestDevice, device_keys: dict) -> None:  # type: ignore[type-arg]
    """What a malicious server does: file a device under a user without the user's client."""
    await world.sql(
        "INSERT INTO devices (user_id, device_id, identity_key, signing_key, device_keys) "
        "VALUES ($1, $2, $3, $4, $5::jsonb)",
        device.user_id,
        device.device_id,
        device.curve25519,
        device.ed25519,
        json.dumps(device_keys),
    )
    await world.sql(
        "INSERT INTO one_time_keys (user_id, device_id, key_id, key, signature) "
        "SELECT $1, $2, k.key, k.value->>'key', k.value->>'signature' "
        "FROM jsonb_each($3::jsonb) AS k",
        device.user_id,
        device.device_id,
        json.dumps(device.one_time_keys(2)),
    )


async def _inbox_count(world: E2eeWorld, user_id: str, device_id: str) -> int:
    rows = await world.sql(
        "SELECT count(*) AS n FROM to_device_messages "
        "WHERE recipient_user_id = $1 AND recipient_device_id = $2",
        user_id,
        device_id,
    )
    return int(rows[0]["n"])


async def test_a_forged_device_gets_no_keys_and_is_reported(world: E2eeWorld) -> None:
    events: list[TrustEvent] = []
    alice = await world.user("alice", encryption=False)
    await alice.enable_encryption(on_trust_event=events.append)
    bob = await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    await world.send(alice, dm.id, "before the forgery")
    # The server invents a device for bob, signing its keys with a key that is not the device's.
    forged = TestDevice(world.uid(bob), device_id="FORGED")
    keys = forged.device_keys()
    keys["signature"] = TestDevice(world.uid(bob)).sign(
        {k: v for k, v in keys.items() if k != "signature"}
    )
    await _insert_device(world, forged, keys)
    await world.send(alice, dm.id, "after the forgery")
    assert await _inbox_count(world, world.uid(bob), "FORGED") == 0
    assert ("invalid_signature", world.uid(bob), "FORGED") in {
        (e.kind, e.user_id, e.device_id) for e in events
    }
    assert "FORGED" not in {d.device_id for d in _crypto(alice).devices(world.uid(bob))}
    assert await world.read(bob, dm.id) == ["before the forgery", "after the forgery"]


async def test_a_device_added_by_the_server_is_never_silent(world: E2eeWorld) -> None:
    events: list[TrustEvent] = []
    alice = await world.user("alice", encryption=False)
    await alice.enable_encryption(on_trust_event=events.append)
    bob = await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    await world.send(alice, dm.id, "hello bob")
    # A device with valid self-signed keys cannot be told apart from bob's new phone without
    # cross-signing, so it is not refused, but the application is told and can warn.
    planted = TestDevice(world.uid(bob), device_id="PLANTED")
    await _insert_device(world, planted, planted.device_keys())
    await world.send(alice, dm.id, "hello again")
    [report] = [e for e in events if e.device_id == "PLANTED"]
    assert report.kind == "new_device"
    assert not report.first_of_user  # bob already had a device: a warning, not a first contact
    assert report.fingerprint is not None


async def test_changed_device_keys_are_refused_until_accepted(world: E2eeWorld) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    dm = await alice.dm(world.uid(bob))
    await world.send(alice, dm.id, "known keys")
    bob_device = _crypto(bob).device_id
    # The server swaps bob's device keys for its own (same device id).
    swapped = TestDevice(world.uid(bob), device_id=bob_device)
    await world.sql(
        "UPDATE devices SET identity_key = $3, signing_key = $4, device_keys = $5::jsonb "
        "WHERE user_id = $1 AND device_id = $2",
        world.uid(bob),
        bob_device,
        swapped.curve25519,
        swapped.ed25519,
        json.dumps(swapped.device_keys()),
    )
    await world.send(alice, dm.id, "sent while swapped")
    assert ("keys_changed", bob_device) in {
        (e.kind, e.device_id) for e in _crypto(alice).trust_events
    }
    assert _crypto(alice).devices(world.uid(bob)) == []
    # Once the user compared fingerprints and accepted, the device is used again.
    _crypto(alice).accept_device(world.uid(bob), bob_device)
    await world.send(alice, dm.id, "sent after accepting")
    assert [d.ed25519 for d in _crypto(alice).devices(world.uid(bob))] == [swapped.ed25519]


async def test_room_keys_outside_olm_are_ignored(world: E2eeWorld) -> None:
    admin, bea, eve = await world.user("admin"), await world.user("bea"), await world.user("eve")
    channel = await world.encrypted_channel(admin, "team", bea, eve)
    await world.send(admin, channel.id, "genuine")
    assert await world.read(bea, channel.id) == ["genuine"]
    fake = vodozemac.GroupSession()
    room_key = {
        "algorithm": MEGOLM,
        "channel_id": str(channel.id),
        "session_id": fake.session_id,
        "session_key": fake.session_key.to_base64(),
    }
    # 1. Unencrypted, as a to-device message a member (or the server) sends.
    await eve._request(
        "PUT",
        "/sendToDevice/plain-key",
        json={"type": "m.room_key", "messages": {world.uid(bea): {"*": room_key}}},
    )
    await eve._request(
        "PUT",
        "/sendToDevice/megolm-key",
        json={
            "type": "m.room.encrypted",
            "messages": {world.uid(bea): {"*": {"algorithm": MEGOLM, **room_key}}},
        },
    )
    # 2. Inside a Megolm message of eve's genuine channel session.
    await world.send(eve, channel.id, "eve's ordinary message")
    eve_session = _crypto(eve)._outbound[str(channel.id)].session
    smuggled = eve_session.encrypt(
        canonical_json({"type": "m.room_key", "channel_id": str(channel.id), "content": room_key})
    )
    eve_fields = {
        "algorithm": MEGOLM,
        "ciphertext": smuggled.to_base64(),
        "sender_key": _crypto(eve).identity_key,
        "session_id": eve_session.session_id,
        "device_id": _crypto(eve).device_id,
    }
    await eve.send(channel.id, encrypted=eve_fields)
    # Then a message under the smuggled session, dressed as the admin's.
    forged = fake.encrypt(
        canonical_json(
            {
                "type": "m.room.message",
                "channel_id": str(channel.id),
                "content": {"body": world.said("forged by eve")},
            }
        )
    )
    await eve.send(
        channel.id,
        encrypted={
            "algorithm": MEGOLM,
            "ciphertext": forged.to_base64(),
            "sender_key": _crypto(admin).identity_key,
            "session_id": fake.session_id,
            "device_id": _crypto(admin).device_id,
        },
    )
    page = await bea.messages(channel.id)
    shown = [(m.content, m.decryption_error is not None) for m in reversed(page.messages)]
    assert shown == [
        ("genuine", False),
        ("eve's ordinary message", False),
        (None, True),  # the Megolm-carried key is not a message, and not imported
        (None, True),  # no key for the fake session
    ]
    assert fake.session_id not in _crypto(bea).session_ids()
    reasons = [r.reason for r in _crypto(bea).rejected]
    assert reasons.count("not_olm_encrypted") == 2


async def test_a_message_attributed_to_someone_else_is_not_shown_as_theirs(
    world: E2eeWorld,
) -> None:
    admin, bea, eve = await world.user("admin"), await world.user("bea"), await world.user("eve")
    channel = await world.encrypted_channel(admin, "team", bea, eve)
    genuine = await world.send(admin, channel.id, "the admin's words")
    assert genuine.encrypted is not None
    # Eve re-posts the admin's ciphertext under her own name: the key says it is the admin's.
    await eve.send(channel.id, encrypted=dict(genuine.encrypted))
    page = await bea.messages(channel.id)
    [copy, original] = page.messages
    assert original.content == "the admin's words"
    assert copy.content is None
    assert copy.decryption_error is not None


async def test_a_replayed_pre_key_message_is_refused(world: E2eeWorld) -> None:
    alice, bob, eve = await world.user("alice"), await world.user("bob"), await world.user("eve")
    # Drain bob's one-time keys so that alice's session starts from his fallback key, which
    # (unlike a one-time key) vodozemac would accept twice.
    for _ in range(30):
        claimed = await eve._request(
            "POST",
            "/keys/claim",
            json={"one_time_keys": {world.uid(bob): [_crypto(bob).device_id]}},
        )
    assert claimed["one_time_keys"][world.uid(bob)][_crypto(bob).device_id]["fallback"]
    dm = await alice.dm(world.uid(bob))
    await world.send(alice, dm.id, "only once")
    captured = await world.sql(
        "SELECT recipient_user_id, recipient_device_id, sender_user_id, sender_device_id, "
        "type, content FROM to_device_messages WHERE recipient_user_id = $1",
        world.uid(bob),
    )
    [message] = captured
    content = json.loads(message["content"])
    [entry] = content["ciphertext"].values()
    assert entry["type"] == 0  # a pre-key message
    assert await world.read(bob, dm.id) == ["only once"]
    sessions_before = len(_crypto(bob)._olm[content["sender_key"]])
    # The server plays it again, twice.
    for _ in range(2):
        await world.sql(
            "INSERT INTO to_device_messages (recipient_user_id, recipient_device_id, "
            "sender_user_id, sender_device_id, type, content) VALUES ($1, $2, $3, $4, $5, $6)",
            *message.values(),
        )
    assert await _crypto(bob).sync() == 2
    assert [r.reason for r in _crypto(bob).rejected] == ["replayed", "replayed"]
    assert len(_crypto(bob)._olm[content["sender_key"]]) == sessions_before
    await world.send(alice, dm.id, "still fine")
    assert await world.read(bob, dm.id) == ["only once", "still fine"]


async def test_concurrent_senders_never_share_a_one_time_key(world: E2eeWorld) -> None:
    bob = await world.user("bob")
    senders = [await world.user(f"sender{i}") for i in range(6)]
    dms = [await s.dm(world.uid(bob)) for s in senders]
    await asyncio.gather(
        *(
            world.send(s, dm.id, f"concurrent hello {i}")
            for i, (s, dm) in enumerate(zip(senders, dms, strict=True))
        )
    )
    # Every sender's pre-key message decrypts: no two started from the same one-time key.
    for i, dm in enumerate(dms):
        assert await world.read(bob, dm.id) == [f"concurrent hello {i}"]
    assert _crypto(bob).rejected == []


async def test_a_re_shared_session_key_does_not_hijack_the_senders_session(
    world: E2eeWorld,
) -> None:
    admin, bea, eve = await world.user("admin"), await world.user("bea"), await world.user("eve")
    channel = await world.encrypted_channel(admin, "team", bea, eve)
    await _crypto(admin).rotate(channel.id)
    outbound = _crypto(admin)._outbound[str(channel.id)].session
    admin_session = outbound.session_id
    session_key = outbound.session_key.to_base64()  # at index 0: the string eve receives
    await world.send(admin, channel.id, "the admin speaks")
    assert _crypto(admin).outbound_session_id(channel.id) == admin_session
    admin_key = await world.sql(
        "DELETE FROM to_device_messages WHERE recipient_user_id = $1 "
        "RETURNING recipient_user_id, recipient_device_id, sender_user_id, sender_device_id, "
        "type, content",
        world.uid(bea),
    )
    # Eve (a member, who received the admin's session key and kept it) shares it with bea as
    # her own, and the server delivers hers before the admin's.
    assert await world.read(eve, channel.id) == ["the admin speaks"]
    await world.send(eve, channel.id, "eve speaks")  # eve now knows bea's device
    eve_key = await world.sql(
        "DELETE FROM to_device_messages WHERE recipient_user_id = $1 "
        "RETURNING recipient_user_id, recipient_device_id, sender_user_id, sender_device_id, "
        "type, content",
        world.uid(bea),
    )
    [bea_device] = _crypto(eve).devices(world.uid(bea))
    await _crypto(eve)._send_to_devices(
        [bea_device],
        {
            "type": "m.room_key",
            "content": {
                "algorithm": MEGOLM,
                "channel_id": str(channel.id),
                "session_id": admin_session,
                "session_key": session_key,
            },
        },
    )
    for row in [*eve_key, *admin_key]:
        await world.sql(
            "INSERT INTO to_device_messages (recipient_user_id, recipient_device_id, "
            "sender_user_id, sender_device_id, type, content) VALUES ($1, $2, $3, $4, $5, $6)",
            *row.values(),
        )
    assert await world.read(bea, channel.id) == ["the admin speaks", "eve speaks"]
