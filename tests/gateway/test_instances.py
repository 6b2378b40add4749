"""Several `voicechat serve` processes sharing PostgreSQL and Valkey."""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import LiveServer
from tests.gateway.conftest import GatewayClient, make_account, open_gateway

pytestmark = pytest.mark.slow

# Instance heartbeat TTL (10 s) + one maintenance period of the survivor (~3.3 s), and slack.
KILLED_INSTANCE_OFFLINE_WITHIN = 20.0


def _two_instances(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    valkey_url: str,
    tmp_path: Path,
) -> tuple[LiveServer, LiveServer]:
    # Instances behind one proxy share their secrets, as they would in production.
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    shared = {
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": valkey_url,
        "VOICECHAT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "VOICECHAT_JWT_PRIVATE_KEY": pem.decode(),
    }
    return (
        live_server_factory({**shared, "VOICECHAT_DATA_DIR": str(tmp_path / "a")}),
        live_server_factory({**shared, "VOICECHAT_DATA_DIR": str(tmp_path / "b")}),
    )


def _ws_url(server: LiveServer) -> str:
    return server.base_url.replace("http://", "ws://") + "/ws"


async def test_an_event_crosses_instances(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    a, b = _two_instances(live_server_factory, database_url, clean_valkey, tmp_path)
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=10) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as http_b,
    ):
        admin = await make_account(http_a, "admin")
        reader = await make_account(http_b, "reader")
        on_a = await open_gateway(_ws_url(a), admin.token)
        on_b = await open_gateway(_ws_url(b), reader.token)
        try:
            response = await http_a.post(
                "/channels", json={"name": "general", "type": "text"}, headers=admin.headers
            )
            assert response.status_code == 201, response.text
            channel_id = response.json()["id"]
            await on_b.event("channel.update", action="create")
            # Sent through instance A, seen by a client of instance B (and of A).
            response = await http_a.post(
                f"/channels/{channel_id}/messages",
                json={"content": "across"},
                headers=admin.headers,
            )
            assert response.status_code == 201, response.text
            message_id = response.json()["id"]
            assert (await on_b.event("message.new", id=message_id))["content"] == "across"
            await on_a.event("message.new", id=message_id)
            # And typing from B reaches A.
            await on_b.request("typing.start", {"channel_id": channel_id})
            await on_a.event("typing.start", channel_id=channel_id, user_id=reader.id)
        finally:
            await on_a.ws.close()
            await on_b.ws.close()


async def test_presence_goes_offline_when_an_instance_is_killed(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    a, b = _two_instances(live_server_factory, database_url, clean_valkey, tmp_path)
    async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as http_a:
        doomed = await make_account(http_a, "doomed")
        watcher = await make_account(http_a, "watcher")
    watching = await open_gateway(_ws_url(b), watcher.token)
    victim: GatewayClient = await open_gateway(_ws_url(a), doomed.token)
    try:
        await watching.event("presence.update", user_id=doomed.id, status="online")
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        started = asyncio.get_running_loop().time()
        await watching.event(
            "presence.update",
            within=KILLED_INSTANCE_OFFLINE_WITHIN,
            user_id=doomed.id,
            status="offline",
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert elapsed < KILLED_INSTANCE_OFFLINE_WITHIN
        conn = await asyncpg.connect(database_url)
        try:
            status = await conn.fetchval("SELECT status FROM users WHERE id = $1", UUID(doomed.id))
        finally:
            await conn.close()
        assert status == "offline"
    finally:
        await watching.ws.close()
        victim.ws.transport.abort()
