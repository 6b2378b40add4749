"""Several SDK clients with end-to-end encryption against one in-process server, and a scan of
everything the server stored for plaintext."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import FastAPI
from redis import Redis

from voicechat.sdk import Channel, Client, Message
from voicechat.sdk.crypto import CryptoStore

TEXT_TYPES = ("text", "character varying", "jsonb", "json", "bytea", "ARRAY", "USER-DEFINED")


def _valkey_value(valkey: Redis, key: bytes) -> object:
    kind = valkey.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    readers = {
        "string": lambda: valkey.get(key),
        "hash": lambda: valkey.hgetall(key),
        "list": lambda: valkey.lrange(key, 0, -1),
        "set": lambda: valkey.smembers(key),
        "zset": lambda: valkey.zrange(key, 0, -1),
        "stream": lambda: valkey.xrange(key),
    }
    reader = readers.get(str(kind))
    return (key, reader()) if reader is not None else key


class E2eeWorld:
    """Users, devices and channels for one test; remembers every plaintext said."""

    def __init__(
        self,
        app: FastAPI | None,
        database_url: str,
        data_dir: Path,
        valkey_url: str | None = None,
        logs: list[Path] | None = None,
    ) -> None:
        self.app = app
        self.database_url = database_url
        self.data_dir = data_dir
        self.valkey_url = valkey_url
        self.logs = logs or []
        self.clients: list[Client] = []
        self.plaintexts: set[str] = set()
        self.passwords: dict[str, str] = {}

    def client(self) -> Client:
        """A fresh, logged-out client of the in-process app."""
        assert self.app is not None
        client = Client("http://testserver", transport=httpx.ASGITransport(app=self.app))
        self.clients.append(client)
        return client

    async def user(
        self, name: str, *, store: CryptoStore | None = None, encryption: bool = True
    ) -> Client:
        """A new user (the first is the server's administrator) with one device."""
        client = self.client()
        self.passwords[name] = f"{name} long password"
        await client.register(name, self.passwords[name])
        if encryption:
            await client.enable_encryption(store)
        return client

    async def device(self, name: str, *, store: CryptoStore | None = None) -> Client:
        """Another device (login session) of an existing user."""
        client = self.client()
        await client.login(name, self.passwords[name])
        await client.enable_encryption(store)
        return client

    def said(self, text: str) -> str:
        """Note a plaintext that must never reach the server."""
        self.plaintexts.add(text)
        return text

    async def send(self, client: Client, channel_id: UUID, text: str) -> Message:
        """Send a plaintext to remember through `client`."""
        return await client.send(channel_id, self.said(text))

    async def encrypted_channel(self, admin: Client, name: str, *members: Client) -> Channel:
        """A private encrypted channel with `admin` and `members`."""
        channel = await admin.create_channel(name, private=True, encrypted=True)
        for member in members:
            await self.add_member(admin, channel.id, member)
        return channel

    @staticmethod
    def uid(client: Client) -> str:
        assert client.user is not None
        return str(client.user.id)

    async def add_member(self, admin: Client, channel_id: UUID, member: Client) -> None:
        await admin._request("PUT", f"/channels/{channel_id}/members/{self.uid(member)}")

    async def remove_member(self, admin: Client, channel_id: UUID, member: Client) -> None:
        await admin._request("DELETE", f"/channels/{channel_id}/members/{self.uid(member)}")

    @staticmethod
    async def raw_messages(client: Client, channel_id: UUID) -> list[Message]:
        """A channel's messages as the server stores them (newest first, not decrypted)."""
        answer = await client._request(
            "GET", f"/channels/{channel_id}/messages", params={"limit": 100}
        )
        return [Message.model_validate(m) for m in answer["messages"]]

    @staticmethod
    async def read(client: Client, channel_id: UUID) -> list[str | None]:
        """What a user sees in a channel, oldest first (None: undecryptable)."""
        return [m.content async for m in client.history(channel_id)][::-1]

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def leaks(self) -> list[str]:
        """Where any remembered plaintext occurs: every text, JSON and bytea column of every
        table, every file under the data directory, every Valkey value, the server logs."""
        found: list[str] = []
        columns = await self.sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = ANY($1::text[])",
            list(TEXT_TYPES),
        )
        assert columns, "the scan found no columns"
        conn = await asyncpg.connect(self.database_url)
        try:
            for column in columns:
                table, name = column["table_name"], column["column_name"]
                as_text = (
                    f"encode(\"{name}\", 'escape')"
                    if column["data_type"] == "bytea"
                    else f'"{name}"::text'
                )
                values = await conn.fetch(
                    f'SELECT {as_text} AS v FROM "{table}" WHERE "{name}" IS NOT NULL'
                )
                for value in values:
                    found.extend(
                        f"{table}.{name}: {text!r}"
                        for text in self.plaintexts
                        if text in value["v"]
                    )
        finally:
            await conn.close()
        files = (
            [p for p in self.data_dir.rglob("*") if p.is_file()] if self.data_dir.exists() else []
        )
        for path in [*files, *(p for p in self.logs if p.exists())]:
            data = path.read_bytes()
            found.extend(f"{path}: {text!r}" for text in self.plaintexts if text.encode() in data)
        if self.valkey_url is not None:
            with Redis.from_url(self.valkey_url) as valkey:
                for key in valkey.scan_iter():
                    data = repr(_valkey_value(valkey, key)).encode()
                    found.extend(
                        f"valkey {key!r}: {text!r}"
                        for text in self.plaintexts
                        if text.encode() in data or repr(text.encode())[2:-1].encode() in data
                    )
        return found

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
