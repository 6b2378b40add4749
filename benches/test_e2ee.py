"""End-to-end encryption costs through the SDK, each against a reference in the same run.

- Sending one message: `Client.send` to an encrypted private channel of two users (steady
  state: no rotation) against `Client.send` to a plain channel.
- Reading one message: `Client.messages(limit=1)` on each (the encrypted read includes the
  inbox check and the Megolm decryption).
- Rotating a channel key and distributing it over Olm to 50 member devices, with the Olm
  sessions already established and with new ones (one-time key claims included), against one
  plaintext send.

Everything runs in-process (httpx's ASGI transport) against real PostgreSQL and Valkey.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from benches.harness import Harness
from voicechat.api import create_app
from voicechat.sdk import Channel, Client
from voicechat.sdk.crypto import Crypto
from voicechat.settings import Settings

MEMBER_DEVICES = 50


@dataclass
class World:
    harness: Harness
    alice: Client
    bob: Client
    plain: Channel
    secret: Channel
    clients: list[Client]


def _client(h: Harness) -> Client:
    return Client("http://bench", transport=httpx.ASGITransport(app=h.app))


async def _user(h: Harness, name: str, clients: list[Client]) -> Client:
    client = _client(h)
    clients.append(client)
    await client.register(name, f"{name} bench password")
    await client.enable_encryption()
    return client


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    h = Harness(create_app(settings))
    clients: list[Client] = []

    async def build() -> World:
        alice = await _user(h, "alice", clients)
        bob = await _user(h, "bob", clients)
        plain = await alice.create_channel("plain")
        secret = await alice.create_channel("secret", private=True, encrypted=True)
        assert bob.user is not None
        await alice._request("PUT", f"/channels/{secret.id}/members/{bob.user.id}")
        # Warm up both paths: Olm session, first Megolm session, caches.
        await alice.send(plain.id, "warm")
        await alice.send(secret.id, "warm")
        await bob.messages(secret.id, limit=1)
        return World(h, alice, bob, plain, secret, clients)

    yield h.run(build())

    async def close() -> None:
        for client in clients:
            await client.close()

    h.run(close())
    h.close()


@pytest.mark.benchmark(group="e2ee-send")
def test_send_plaintext_reference(benchmark, world: World) -> None:  # type: ignore[no-untyped-def]
    h = world.harness
    benchmark.pedantic(
        lambda: h.run(world.alice.send(world.plain.id, "a plaintext message")),
        rounds=60,
        warmup_rounds=5,
    )


@pytest.mark.benchmark(group="e2ee-send")
def test_send_encrypted(benchmark, world: World) -> None:  # type: ignore[no-untyped-def]
    h = world.harness
    crypto = world.alice.crypto
    assert crypto is not None

    def send() -> None:
        # Stay below the 100-message rotation so that this measures the steady state.
        outbound = crypto._outbound[str(world.secret.id)]
        if outbound.session.message_index > 90:
            h.run(crypto.rotate(world.secret.id))
        h.run(world.alice.send(world.secret.id, "an encrypted message"))

    benchmark.pedantic(send, rounds=60, warmup_rounds=5)


@pytest.mark.benchmark(group="e2ee-read")
def test_read_plaintext_reference(benchmark, world: World) -> None:  # type: ignore[no-untyped-def]
    h = world.harness
    page = benchmark.pedantic(
        lambda: h.run(world.bob.messages(world.plain.id, limit=1)), rounds=60, warmup_rounds=5
    )
    assert page.messages[0].content == "warm"


@pytest.mark.benchmark(group="e2ee-read")
def test_read_encrypted(benchmark, world: World) -> None:  # type: ignore[no-untyped-def]
    h = world.harness
    page = benchmark.pedantic(
        lambda: h.run(world.bob.messages(world.secret.id, limit=1)), rounds=60, warmup_rounds=5
    )
    assert page.messages[0].content == "warm"


@pytest.fixture
def fifty(world: World) -> tuple[World, Channel]:
    """A private encrypted channel whose members have 50 devices besides the sender's."""
    h = world.harness

    async def build() -> Channel:
        channel = await world.alice.create_channel("big", private=True, encrypted=True)
        for i in range(MEMBER_DEVICES):
            member = await _user(h, f"member{i:02d}", world.clients)
            assert member.user is not None
            await world.alice._request("PUT", f"/channels/{channel.id}/members/{member.user.id}")
        await world.alice.send(channel.id, "first key")
        return channel

    return world, h.run(build())


def _rotate(world: World, channel: Channel, *, new_olm_sessions: bool) -> None:
    crypto: Crypto | None = world.alice.crypto
    assert crypto is not None
    if new_olm_sessions:
        # As if meeting every device for the first time: claim keys, start Olm sessions.
        keep = {world.bob.crypto.identity_key} if world.bob.crypto else set()
        crypto._olm = {k: v for k, v in crypto._olm.items() if k in keep}
    world.harness.run(crypto.rotate(channel.id))


@pytest.mark.benchmark(group="e2ee-rotate-50")
def test_rotate_to_50_devices_existing_olm_sessions(benchmark, fifty) -> None:  # type: ignore[no-untyped-def]
    world, channel = fifty
    benchmark.pedantic(
        lambda: _rotate(world, channel, new_olm_sessions=False), rounds=10, warmup_rounds=1
    )
    benchmark.extra_info["devices"] = MEMBER_DEVICES


@pytest.mark.benchmark(group="e2ee-rotate-50")
def test_rotate_to_50_devices_new_olm_sessions(benchmark, fifty) -> None:  # type: ignore[no-untyped-def]
    world, channel = fifty
    # Each round claims one of each device's 25 one-time keys.
    benchmark.pedantic(
        lambda: _rotate(world, channel, new_olm_sessions=True), rounds=8, warmup_rounds=1
    )
    benchmark.extra_info["devices"] = MEMBER_DEVICES


@pytest.mark.benchmark(group="e2ee-rotate-50")
def test_rotate_reference_one_plaintext_send(benchmark, world: World) -> None:  # type: ignore[no-untyped-def]
    h = world.harness
    benchmark.pedantic(
        lambda: h.run(world.alice.send(world.plain.id, "reference")), rounds=30, warmup_rounds=3
    )
