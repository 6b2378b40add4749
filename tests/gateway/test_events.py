"""Events reach exactly the sockets whose user may see them; typing and presence."""

from __future__ import annotations

import asyncio
import json
import socket
from uuid import UUID

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.gateway.conftest import (
    Account,
    GatewayClient,
    Served,
    make_account,
    open_gateway,
)
from voicechat.events import Event
from voicechat.gateway import CloseCode, RpcErrorCode


async def _channel(served: Served, owner: Account, name: str, **extra: object) -> str:
    response = await served.http.post(
        "/channels", json={"name": name, "type": "text", **extra}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _send(
    served: Served, author: Account, channel_id: str, content: str
) -> dict[str, object]:
    response = await served.http.post(
        f"/channels/{channel_id}/messages", json={"content": content}, headers=author.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def _trio(served: Served) -> tuple[Account, Account, Account]:
    # The first account is the administrator.
    admin = await make_account(served.http, "admin")
    member = await make_account(served.http, "member")
    outsider = await make_account(served.http, "outsider")
    return admin, member, outsider


async def test_message_events_reach_members_and_never_outsiders(
    served: Served, gateways: list[GatewayClient]
) -> None:
    admin, member, outsider = await _trio(served)
    public = await _channel(served, admin, "general")
    private = await _channel(served, admin, "staff", private=True)
    response = await served.http.put(
        f"/channels/{private}/members/{member.id}", headers=admin.headers
    )
    assert response.status_code == 204, response.text

    a, m, o = [await open_gateway(served.ws_url, u.token) for u in (admin, member, outsider)]
    gateways.extend([a, m, o])

    # A public message reaches everyone.
    sent = await _send(served, member, public, "hello all")
    for client in (a, m, o):
        event = await client.event("message.new", id=sent["id"])
        assert event["content"] == "hello all"
        assert event["channel_id"] == public

    # A private one reaches its members only, and so do its edit and delete.
    secret = await _send(served, member, private, "staff only")
    for client in (a, m):
        assert (await client.event("message.new", id=secret["id"]))["content"] == "staff only"
    response = await served.http.patch(
        f"/messages/{secret['id']}", json={"content": "edited"}, headers=member.headers
    )
    assert response.status_code == 200, response.text
    for client in (a, m):
        assert (await client.event("message.edit", id=secret["id"]))["content"] == "edited"
    response = await served.http.delete(f"/messages/{secret['id']}", headers=member.headers)
    assert response.status_code == 204, response.text
    for client in (a, m):
        await client.event("message.delete")
    # A later public message proves the outsider's socket is live and in order.
    marker = await _send(served, admin, public, "marker")
    await o.event("message.new", id=marker["id"])
    leaked = [e for e in o.events if json.dumps(e).find(private) >= 0]
    assert leaked == []
    await o.no_event("message.edit", wait=0.2)
    await o.no_event("message.delete", wait=0.2)


async def test_channel_events_follow_membership(
    served: Served, gateways: list[GatewayClient]
) -> None:
    admin, member, outsider = await _trio(served)
    a, m, o = [await open_gateway(served.ws_url, u.token) for u in (admin, member, outsider)]
    gateways.extend([a, m, o])

    private = await _channel(served, admin, "staff", private=True)
    created = await a.event("channel.update", action="create")
    assert created["channel"]["id"] == private
    await m.no_event("channel.update", wait=0.3)

    # Added: the member now hears about the channel and its messages.
    response = await served.http.put(
        f"/channels/{private}/members/{member.id}", headers=admin.headers
    )
    assert response.status_code == 204
    assert (await m.event("channel.update", action="update"))["channel"]["id"] == private
    sent = await _send(served, admin, private, "welcome")
    await m.event("message.new", id=sent["id"])

    # Removed: told once, then hears nothing more from it.
    response = await served.http.delete(
        f"/channels/{private}/members/{member.id}", headers=admin.headers
    )
    assert response.status_code == 204
    assert (await m.event("channel.update", action="delete"))["channel"]["id"] == private
    after = await _send(served, admin, private, "after you left")
    await a.event("message.new", id=after["id"])
    await m.no_event("message.new", wait=0.5, id=after["id"])

    # The outsider never heard of it at all.
    public = await _channel(served, admin, "general")
    await o.event("channel.update", action="create")
    assert all(private not in json.dumps(e) for e in o.events)
    # Deleting a public channel reaches everyone who saw it.
    response = await served.http.delete(f"/channels/{public}", headers=admin.headers)
    assert response.status_code == 204
    for client in (a, m, o):
        assert (await client.event("channel.update", action="delete"))["channel"]["id"] == public


async def test_user_addressed_events_reach_only_those_users(
    served: Served, gateways: list[GatewayClient]
) -> None:
    admin, member, outsider = await _trio(served)
    a, m, o = [await open_gateway(served.ws_url, u.token) for u in (admin, member, outsider)]
    gateways.extend([a, m, o])
    await served.resources.events.publish(
        Event("to_device", {"n": 1}, user_ids=(UUID(member.id), UUID(outsider.id)))
    )
    assert (await m.event("to_device"))["n"] == 1
    assert (await o.event("to_device"))["n"] == 1
    await a.no_event("to_device", wait=0.3)


async def test_typing_starts_stops_and_expires(
    served: Served, gateways: list[GatewayClient]
) -> None:
    served.resources.gateway.config.typing_ttl = 1.0
    admin, member, outsider = await _trio(served)
    public = await _channel(served, admin, "general")
    private = await _channel(served, admin, "staff", private=True)
    a, m, o = [await open_gateway(served.ws_url, u.token) for u in (admin, member, outsider)]
    gateways.extend([a, m, o])

    # Explicit stop.
    assert "result" in await m.request("typing.start", {"channel_id": public})
    for client in (a, o):
        await client.event("typing.start", channel_id=public, user_id=member.id)
    assert "result" in await m.request("typing.stop", {"channel_id": public})
    for client in (a, o):
        await client.event("typing.stop", channel_id=public, user_id=member.id)

    # Expiry: no stop request, the server says it stopped after the TTL.
    started = asyncio.get_running_loop().time()
    await m.request("typing.start", {"channel_id": public})
    await a.event("typing.start", channel_id=public, user_id=member.id)
    await a.event("typing.stop", channel_id=public, user_id=member.id, within=5)
    assert asyncio.get_running_loop().time() - started >= 0.9

    # Typing in a private channel: members only, and outsiders may not type there.
    await a.request("typing.start", {"channel_id": private})
    answer = await o.request("typing.start", {"channel_id": private})
    assert answer["error"]["code"] == RpcErrorCode.NOT_FOUND
    await o.no_event("typing.start", wait=0.5, channel_id=private)


async def test_presence_follows_sockets_and_choices(
    served: Served, gateways: list[GatewayClient], settings: object
) -> None:
    admin, member, _ = await _trio(served)
    a = await open_gateway(served.ws_url, admin.token)
    gateways.append(a)

    first = await open_gateway(served.ws_url, member.token)
    await a.event("presence.update", user_id=member.id, status="online")
    second = await open_gateway(served.ws_url, member.token)
    await first.ws.close()
    # Still one socket open: no offline.
    await a.no_event("presence.update", wait=0.5, user_id=member.id)

    assert (await second.request("presence.set", {"status": "dnd"}))["result"] == {"status": "dnd"}
    await a.event("presence.update", user_id=member.id, status="dnd")
    assert await _db_status(served, member.id) == "dnd"

    await second.ws.close()
    await a.event("presence.update", user_id=member.id, status="offline")
    assert await _db_status(served, member.id) == "offline"

    # The chosen status survives a reconnect.
    third = await open_gateway(served.ws_url, member.token)
    gateways.append(third)
    await a.event("presence.update", user_id=member.id, status="dnd")


async def _db_status(served: Served, user_id: str) -> str:
    async with served.resources.db.acquire() as conn:
        value = await conn.fetchval("SELECT status FROM users WHERE id = $1", UUID(user_id))
    return str(value)


class StalledClient:
    """A WebSocket client on a raw socket that, after authenticating, stops reading."""

    def __init__(self, ws_url: str) -> None:
        self.protocol = ClientProtocol(parse_uri(ws_url))
        host, port = ws_url.split("/")[2].split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window, so the server's buffers fill quickly.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.address = (host, int(port))
        self.texts: list[str] = []

    async def open(self, token: str) -> None:
        """Connect, upgrade, authenticate."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, self.address)
        self.protocol.send_request(self.protocol.connect())
        await self._flush()
        while self.protocol.state is not State.OPEN:
            assert await self.read_some(), "the server refused the upgrade"
        self.protocol.send_text(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}}
            ).encode()
        )
        await self._flush()
        while not any('"id":1' in text for text in self.texts):
            await self.read_some()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    async def read_some(self) -> bool:
        """Read what is there; False at the end of the stream."""
        data = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        if not data:
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.texts.append(event.data.decode())
        await self._flush()
        return bool(data)

    def close(self) -> None:
        """Drop the connection."""
        self.sock.close()


async def test_a_slow_consumer_is_closed_without_stalling_others(
    served: Served, gateways: list[GatewayClient]
) -> None:
    served.resources.gateway.config.send_queue_size = 16
    admin, member, _ = await _trio(served)
    fast = await open_gateway(served.ws_url, admin.token)
    gateways.append(fast)
    slow = StalledClient(served.ws_url)
    try:
        await slow.open(member.token)
        await fast.event("presence.update", user_id=member.id, status="online")

        gateway = served.resources.gateway
        slow_socket = next(iter(gateway.users[UUID(member.id)].sockets))
        audience = (UUID(admin.id), UUID(member.id))
        payload = "x" * 16_000
        published = 0
        seen: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while slow_socket.closing is None and loop.time() < deadline:
            for _ in range(20):
                await served.resources.events.publish(
                    Event("to_device", {"seq": published, "pad": payload}, user_ids=audience)
                )
                published += 1
            # The fast client gets every event, in order, while the slow one is stuck.
            await fast.event("to_device", seq=published - 1)
            seen.extend(e["params"]["seq"] for e in fast.events if e["method"] == "to_device")
            seen.append(published - 1)
            fast.events.clear()
        assert slow_socket.closing is not None, f"still open after {published} events"
        assert slow_socket.closing.code == CloseCode.SLOW_CONSUMER
        assert seen == list(range(published))

        # The slow client, once it reads again, finds fewer events, then the close code.
        async with asyncio.timeout(30):
            while await slow.read_some() and slow.protocol.close_rcvd is None:
                pass
        received = sum('"to_device"' in text for text in slow.texts)
        assert received < published
        assert slow.protocol.close_rcvd is not None
        assert slow.protocol.close_rcvd.code == CloseCode.SLOW_CONSUMER
    finally:
        slow.close()


async def test_a_role_change_changes_who_receives_events(
    served: Served, gateways: list[GatewayClient]
) -> None:
    admin, member, _ = await _trio(served)
    public = await _channel(served, admin, "general")
    a, m = [await open_gateway(served.ws_url, u.token) for u in (admin, member)]
    gateways.extend([a, m])
    before = await _send(served, admin, public, "everyone sees this")
    await m.event("message.new", id=before["id"])

    # The default role loses view_channel: the member no longer sees public channels.
    roles = (await served.http.get("/roles", headers=admin.headers)).json()
    default = next(role for role in roles if role["is_default"])
    kept = [p for p in default["permissions"] if p != "view_channel"]
    response = await served.http.patch(
        f"/roles/{default['id']}", json={"permissions": kept}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    after = await _send(served, admin, public, "admins only now")
    await a.event("message.new", id=after["id"])
    await m.no_event("message.new", wait=0.5, id=after["id"])
