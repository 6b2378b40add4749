"""Pages and sends rendered as JSON by PostgreSQL are, byte for byte, what pydantic renders.

The hot paths (`GET /channels/{id}/messages`, a plain `POST`) pass PostgreSQL's JSON text
through; the other paths serialise `StoredMessage`s with `MESSAGE_JSON`/`PAGE_JSON` (which
test_messages.py holds equal to the `Message` model). Both must give the same bytes for every
kind of row: plain, edited, encrypted, attached, a deleted author, awkward text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest
from uuid_utils.compat import uuid7

from tests.utils.auth import ApiUser
from voicechat.api.routes.messages import MESSAGE_JSON, PAGE_JSON, message_json
from voicechat.db.pool import Pool, create_pool
from voicechat.db.repositories.messages import MessageRepository

AWKWARD = 'quotes " and \\ backslash, tab\t, newline\n, \x01\x1f\x7f, é, 漢字, 🎉, </script>'


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _history(pool: Pool, admin: ApiUser, alice: ApiUser) -> UUID:
    """A channel holding one message of every kind, inserted as the routes would store them."""
    channel = UUID((await admin.channel(name="kinds"))["id"])
    admin_id, alice_id = UUID(admin.id), UUID(alice.id)
    at = datetime(2026, 12, 3, 6, 30, 1, 123456, tzinfo=UTC)
    exact = datetime(2026, 12, 4, tzinfo=UTC)
    encrypted = {
        "device_id": "DEV",
        "algorithm": "m.megolm.v1.aes-sha2",
        "session_id": "sess",
        "ciphertext": "AwgA",
        "sender_key": "curve",
    }
    async with pool.acquire() as conn:
        rows: list[tuple[object, ...]] = [
            (uuid7(), admin_id, "plain", None, None, None, None, at),
            (uuid7(), admin_id, AWKWARD, None, "n-" + AWKWARD[:20], None, exact, exact),
            (uuid7(), admin_id, None, encrypted, None, None, None, at),
            (uuid7(), alice_id, "by alice, deleted below", None, None, None, None, at),
        ]
        reply = (uuid7(), admin_id, "a reply", None, None, rows[0][0], None, at)
        rows.append(reply)
        await conn.executemany(
            "INSERT INTO messages (id, user_id, content, content_enc, nonce, reply_to, "
            "edited_at, created_at, channel_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [(*row, channel) for row in rows],
        )
        attached = rows[0][0]
        for name, created in [("b.txt", exact), ("a.png", at), ("c", at)]:
            await conn.execute(
                "INSERT INTO files (message_id, channel_id, uploader_id, filename, mime_type, "
                "size_bytes, s3_key, wrapped_key, created_at) "
                "VALUES ($1, $2, $3, $4, 'image/png', 3, $5, '\\x00', $6)",
                attached,
                channel,
                admin_id,
                name + AWKWARD[:8],
                f"k-{uuid7()}",
                created,
            )
        await conn.execute("DELETE FROM users WHERE id = $1", alice_id)
    return channel


async def test_a_page_from_postgres_is_the_page_pydantic_renders(
    pool: Pool, admin: ApiUser, alice: ApiUser
) -> None:
    channel = await _history(pool, admin, alice)
    async with pool.acquire() as conn:
        repo = MessageRepository(conn)
        newest = (await repo.page(channel, before=None, after=None, limit=2))[0][-1].id
        oldest = (await repo.page(channel, before=None, after=None, limit=5))[0][-1].id
        for before, after, limit in [
            (None, None, 50),
            (None, None, 2),
            (None, None, 1),
            (newest, None, 2),
            (None, oldest, 2),
            (None, oldest, 50),
            (newest, oldest, 50),
            (oldest, None, 50),
        ]:
            rows, more = await repo.page(channel, before=before, after=after, limit=limit)
            expected = PAGE_JSON.dump_json(
                {"messages": [message_json(r) for r in rows], "has_more": more}
            )
            rendered = await repo.page_json(
                channel, UUID(admin.id), before=before, after=after, limit=limit
            )
            assert rendered == expected, (before, after, limit)


async def test_a_page_is_rendered_only_for_who_may_read_it(
    pool: Pool, admin: ApiUser, alice: ApiUser
) -> None:
    private = UUID((await admin.channel(name="staff", private=True))["id"])
    async with pool.acquire() as conn:
        repo = MessageRepository(conn)
        page = await repo.page_json(private, UUID(alice.id), before=None, after=None, limit=50)
        missing = await repo.page_json(uuid7(), UUID(admin.id), before=None, after=None, limit=5)
        own = await repo.page_json(private, UUID(admin.id), before=None, after=None, limit=50)
    assert page is None
    assert missing is None
    assert own == b'{"messages":[],"has_more":false}'


async def test_a_plain_send_from_postgres_is_the_message_pydantic_renders(
    pool: Pool, admin: ApiUser, database_url: str
) -> None:
    channel = UUID((await admin.channel(name="sends"))["id"])
    async with pool.acquire() as conn:
        repo = MessageRepository(conn)
        for content, nonce in [("hello", None), (AWKWARD, "n-1"), ("x" * 4000, AWKWARD[:60])]:
            rendered = await repo.create_plain_json(
                channel_id=channel, user_id=UUID(admin.id), content=content, nonce=nonce
            )
            assert rendered is not None
            stored = await repo.get(MESSAGE_JSON.validate_json(rendered)["id"])
            assert rendered.encode() == MESSAGE_JSON.dump_json(message_json(stored))
        # The same nonce again inserts nothing: the full path answers the first message.
        again = await repo.create_plain_json(
            channel_id=channel, user_id=UUID(admin.id), content="again", nonce="n-1"
        )
        assert again is None
    assert await _count(database_url, channel) == 3


async def _count(database_url: str, channel: UUID) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE channel_id = $1", channel
        )
        return count
    finally:
        await conn.close()
