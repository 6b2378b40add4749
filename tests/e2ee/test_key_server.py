"""The key server: uploads with signatures checked, queries, one-time claims exactly once,
to-device messages kept until acknowledged, and bad input in the error shape."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.utils.auth import ApiUser
from tests.utils.devices import TestDevice


async def _register(user: ApiUser, device: TestDevice, keys: int = 5) -> dict:  # type: ignore[type-arg]
    response = await user.post(
        "/keys/upload",
        json={
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(keys),
            "fallback_key": device.fallback_key(),
        },
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_upload_query_and_counts(alice: ApiUser, bob: ApiUser) -> None:
    device = TestDevice(alice.id)
    counts = await _register(alice, device, keys=5)
    assert counts == {
        "device_id": device.device_id,
        "one_time_key_counts": {"signed_curve25519": 5},
        "fallback_key": True,
    }
    topped = await alice.post("/keys/upload", json={"one_time_keys": device.one_time_keys(3)})
    assert topped.json()["one_time_key_counts"]["signed_curve25519"] == 8
    queried = await bob.post("/keys/query", json={"user_ids": [alice.id, bob.id]})
    assert queried.status_code == 200
    devices = queried.json()["devices"]
    assert devices[bob.id] == {}
    assert devices[alice.id][device.device_id] == device.device_keys() | {
        "signature": devices[alice.id][device.device_id]["signature"]
    }
    listed = (await alice.get("/keys/devices")).json()
    assert [(d["device_id"], d["current"]) for d in listed] == [(device.device_id, True)]


async def test_claims_hand_out_each_key_once_then_the_fallback(
    alice: ApiUser, bob: ApiUser
) -> None:
    device = TestDevice(alice.id)
    await _register(alice, device, keys=3)
    body = {"one_time_keys": {alice.id: [device.device_id]}}
    claimed = [
        (await bob.post("/keys/claim", json=body)).json()["one_time_keys"][alice.id][
            device.device_id
        ]
        for _ in range(4)
    ]
    assert [c["fallback"] for c in claimed] == [False, False, False, True]
    assert len({c["key_id"] for c in claimed[:3]}) == 3
    counts = await alice.post("/keys/upload", json={})
    assert counts.json()["one_time_key_counts"]["signed_curve25519"] == 0


async def test_concurrent_claims_never_share_a_key(
    client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    device = TestDevice(alice.id)
    await _register(alice, device, keys=20)
    body = {"one_time_keys": {alice.id: [device.device_id]}}
    answers = await asyncio.gather(*(bob.post("/keys/claim", json=body) for _ in range(30)))
    keys = [a.json()["one_time_keys"][alice.id][device.device_id] for a in answers]
    one_time = [k["key_id"] for k in keys if not k["fallback"]]
    assert len(one_time) == 20
    assert len(set(one_time)) == 20
    assert sum(k["fallback"] for k in keys) == 10


async def test_bad_signatures_are_refused(alice: ApiUser) -> None:
    device = TestDevice(alice.id)
    forged = device.device_keys()
    forged["keys"]["curve25519"] = TestDevice(alice.id).curve25519
    response = await alice.post("/keys/upload", json={"device_keys": forged})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    await _register(alice, device)
    otks = device.one_time_keys(1)
    key_id = next(iter(otks))
    otks[key_id]["signature"] = TestDevice(alice.id).sign({"x": 1})
    response = await alice.post("/keys/upload", json={"one_time_keys": otks})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"


async def test_someone_elses_device_keys_are_refused(alice: ApiUser, bob: ApiUser) -> None:
    device = TestDevice(bob.id)
    response = await alice.post("/keys/upload", json={"device_keys": device.device_keys()})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_device_keys"


async def test_a_device_id_keeps_its_keys(alice: ApiUser) -> None:
    device = TestDevice(alice.id)
    await _register(alice, device)
    impostor = TestDevice(alice.id, device_id=device.device_id)
    response = await alice.post("/keys/upload", json={"device_keys": impostor.device_keys()})
    assert response.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"device_keys": {"user_id": "x"}},
        {"one_time_keys": {"bad id!": {"key": "a", "signature": "b"}}},
        {"one_time_keys": {"k": {"key": "not base64 ###", "signature": "b"}}},
        {"surprise": 1},
    ],
)
async def test_malformed_uploads(alice: ApiUser, body: dict) -> None:  # type: ignore[type-arg]
    response = await alice.post("/keys/upload", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_claims_for_unknown_devices(alice: ApiUser, bob: ApiUser) -> None:
    response = await bob.post("/keys/claim", json={"one_time_keys": {alice.id: ["NOPE"]}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_device"


async def test_to_device_messages_wait_for_acknowledgement(alice: ApiUser, bob: ApiUser) -> None:
    alice_device, bob_device = TestDevice(alice.id), TestDevice(bob.id)
    await _register(alice, alice_device)
    await _register(bob, bob_device)
    body = {
        "type": "m.room_key_request",
        "messages": {bob.id: {bob_device.device_id: {"ciphertext": "opaque"}}},
    }
    first = await alice.put("/sendToDevice/txn-1", json=body)
    assert first.json() == {"queued": 1}
    again = await alice.put("/sendToDevice/txn-1", json=body)
    assert again.json() == {"queued": 0}
    inbox = (await bob.get("/sendToDevice/inbox")).json()
    assert inbox["device_id"] == bob_device.device_id
    [message] = inbox["messages"]
    assert message["content"] == {"ciphertext": "opaque"}
    assert message["sender_device_id"] == alice_device.device_id
    assert message["sender_user_id"] == alice.id
    # Still there until acknowledged.
    assert len((await bob.get("/sendToDevice/inbox")).json()["messages"]) == 1
    ack = await bob.post("/sendToDevice/inbox/ack", json={"up_to": message["id"]})
    assert ack.status_code == 204
    assert (await bob.get("/sendToDevice/inbox")).json()["messages"] == []


async def test_to_device_bad_input(alice: ApiUser, bob: ApiUser) -> None:
    device = TestDevice(alice.id)
    no_device = await alice.put(
        "/sendToDevice/t1", json={"type": "x", "messages": {bob.id: {"*": {}}}}
    )
    assert no_device.status_code == 400
    assert no_device.json()["error"]["code"] == "no_device"
    await _register(alice, device)
    unknown = await alice.put(
        "/sendToDevice/t2", json={"type": "x", "messages": {bob.id: {"NOPE": {"a": 1}}}}
    )
    assert unknown.status_code == 404
    bob_device = TestDevice(bob.id)
    await _register(bob, bob_device)
    huge = await alice.put(
        "/sendToDevice/t3",
        json={"type": "x", "messages": {bob.id: {bob_device.device_id: {"a": "x" * 70_000}}}},
    )
    assert huge.status_code == 413
    bad_txn = await alice.put("/sendToDevice/has space", json={"type": "x", "messages": {}})
    assert bad_txn.status_code == 422
