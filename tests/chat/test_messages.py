"""Messages: create, list with paging, edit, delete, replies, nonces, constant query count."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest

from tests.utils.auth import ApiUser
from voicechat.api.routes.messages import MESSAGE_JSON, message_json
from voicechat.api.schemas import Message
from voicechat.db.pool import count_queries
from voicechat.db.repositories.messages import Author, StoredAttachment, StoredMessage


@pytest.fixture
async def general(admin: ApiUser) -> str:
    return str((await admin.channel(name="general"))["id"])


async def test_send_and_list(general: str, alice: ApiUser, bob: ApiUser) -> None:
    sent = await alice.send(general, "hello world")
    assert sent["author"] == {
        "id": alice.id,
        "username": "alice",
        "display_name": None,
        "avatar_url": None,
        "status": "offline",
    }
    assert sent["content"] == "hello world"
    assert sent["encrypted"] is None
    assert sent["edited_at"] is None
    page = (await bob.get(f"/channels/{general}/messages")).json()
    assert page == {"messages": [sent], "has_more": False}


async def test_empty_channel(general: str, alice: ApiUser) -> None:
    assert (await alice.get(f"/channels/{general}/messages")).json() == {
        "messages": [],
        "has_more": False,
    }


async def test_paging_edges(general: str, alice: ApiUser) -> None:
    ids = [(await alice.send(general, f"m{i}"))["id"] for i in range(7)]

    async def page(**params: object) -> dict:  # type: ignore[type-arg]
        response = await alice.get(f"/channels/{general}/messages", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    newest = await page(limit=3)
    assert [m["id"] for m in newest["messages"]] == ids[6:3:-1]
    assert newest["has_more"] is True
    older = await page(limit=3, before=ids[4])
    assert [m["id"] for m in older["messages"]] == ids[3:0:-1]
    assert older["has_more"] is True
    oldest = await page(limit=3, before=ids[1])
    assert [m["id"] for m in oldest["messages"]] == [ids[0]]
    assert oldest["has_more"] is False
    # Exactly one page: all seven fit, nothing more.
    exact = await page(limit=7)
    assert len(exact["messages"]) == 7
    assert exact["has_more"] is False
    # `after` alone reads forward from a message (newest first within the page).
    forward = await page(limit=2, after=ids[1])
    assert [m["id"] for m in forward["messages"]] == [ids[3], ids[2]]
    assert forward["has_more"] is True
    # `before` and `after` together bound a window.
    window = await page(before=ids[5], after=ids[1])
    assert [m["id"] for m in window["messages"]] == [ids[4], ids[3], ids[2]]
    assert window["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"before": "nope"}, {"after": "12"}],
)
async def test_bad_paging_parameters(general: str, alice: ApiUser, params: dict) -> None:  # type: ignore[type-arg]
    response = await alice.get(f"/channels/{general}/messages", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_replies(general: str, alice: ApiUser, bob: ApiUser, admin: ApiUser) -> None:
    question = await alice.send(general, "question?")
    answer = await bob.send(general, "answer", reply_to=question["id"])
    assert answer["reply_to"] == question["id"]
    elsewhere = str((await admin.channel(name="random"))["id"])
    other = await alice.send(elsewhere, "over here")
    cross = await bob.post(
        f"/channels/{general}/messages", json={"content": "x", "reply_to": other["id"]}
    )
    assert cross.status_code == 400
    assert cross.json()["error"]["code"] == "invalid_reply"


async def test_a_resend_with_the_same_nonce_does_not_duplicate(
    general: str, alice: ApiUser
) -> None:
    first = await alice.post(
        f"/channels/{general}/messages", json={"content": "once", "nonce": "n-1"}
    )
    again = await alice.post(
        f"/channels/{general}/messages", json={"content": "once", "nonce": "n-1"}
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    concurrent = await asyncio.gather(
        *(
            alice.post(f"/channels/{general}/messages", json={"content": "c", "nonce": "n-2"})
            for _ in range(5)
        )
    )
    assert len({r.json()["id"] for r in concurrent}) == 1
    page = (await alice.get(f"/channels/{general}/messages")).json()
    assert len(page["messages"]) == 2


async def test_edit_by_the_author_only(general: str, alice: ApiUser, bob: ApiUser) -> None:
    message = await alice.send(general, "typo")
    edited = await alice.patch(f"/messages/{message['id']}", json={"content": "fixed"})
    assert edited.status_code == 200
    assert edited.json()["content"] == "fixed"
    assert edited.json()["edited_at"] is not None
    hijack = await bob.patch(f"/messages/{message['id']}", json={"content": "mine now"})
    assert hijack.status_code == 403
    assert hijack.json()["error"]["code"] == "not_author"
    bad = await alice.patch(f"/messages/{message['id']}", json={"content": "x", "nonce": "n"})
    assert bad.status_code == 422


async def test_delete_by_author_or_moderator(
    general: str, alice: ApiUser, bob: ApiUser, admin: ApiUser
) -> None:
    mine = await alice.send(general, "mine")
    theirs = await alice.send(general, "theirs")
    assert (await bob.delete(f"/messages/{mine['id']}")).status_code == 403
    assert (await alice.delete(f"/messages/{mine['id']}")).status_code == 204
    assert (await admin.delete(f"/messages/{theirs['id']}")).status_code == 204
    assert (await alice.get(f"/channels/{general}/messages")).json()["messages"] == []
    gone = await alice.delete(f"/messages/{mine['id']}")
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": "x" * 4001}, "validation_error"),
        ({"content": ""}, "empty_message"),
        ({"content": "   \n"}, "empty_message"),
        ({}, "empty_message"),
        ({"content": "hi", "extra": 1}, "validation_error"),
        ({"content": 5}, "validation_error"),
        ({"content": "hi", "attachments": ["not-a-uuid"]}, "validation_error"),
        (
            {"content": "hi", "attachments": ["00000000-0000-0000-0000-000000000001"]},
            "invalid_attachment",
        ),
        ({"ciphertext": "abc"}, "incomplete_ciphertext"),
    ],
)
async def test_bad_message_bodies(general: str, alice: ApiUser, body: dict, code: str) -> None:  # type: ignore[type-arg]
    response = await alice.post(f"/channels/{general}/messages", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] == code


async def test_unknown_and_malformed_ids(alice: ApiUser, general: str) -> None:
    unknown = "00000000-0000-7000-8000-000000000000"
    assert (await alice.get(f"/channels/{unknown}/messages")).status_code == 404
    assert (
        await alice.post(f"/channels/{unknown}/messages", json={"content": "x"})
    ).status_code == 404
    assert (await alice.patch(f"/messages/{unknown}", json={"content": "x"})).status_code == 404
    assert (await alice.delete(f"/messages/{unknown}")).status_code == 404
    assert (await alice.get("/channels/123/messages")).status_code == 422
    assert (await alice.delete("/messages/abc")).status_code == 422


async def test_deleted_author_shows_a_placeholder(
    general: str, alice: ApiUser, bob: ApiUser, database_url: str
) -> None:
    import asyncpg

    await alice.send(general, "I was here")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM users WHERE id = $1::uuid", alice.id)
    finally:
        await conn.close()
    [message] = (await bob.get(f"/channels/{general}/messages")).json()["messages"]
    assert message["author"] == {
        "id": None,
        "username": "deleted-user",
        "display_name": "Deleted user",
        "avatar_url": None,
        "status": "offline",
    }
    assert message["content"] == "I was here"


async def test_a_page_costs_the_same_queries_whatever_its_size(
    client: httpx.AsyncClient, general: str, alice: ApiUser, bob: ApiUser
) -> None:
    for i in range(100):
        await (alice if i % 2 else bob).send(general, f"message {i}")
    counts = {}
    for limit in (1, 50, 100):
        with count_queries() as queries:
            response = await alice.get(f"/channels/{general}/messages", params={"limit": limit})
            await asyncio.sleep(0)  # let asyncpg's query loggers run
        assert len(response.json()["messages"]) == limit
        counts[limit] = queries[0]
    # The access check and the page in one statement (authors and attachments ride in it); the
    # pool gives the connection back without a reset statement (db/pool.py says why).
    assert counts == {1: 1, 50: 1, 100: 1}


async def test_a_plain_send_costs_two_queries(general: str, alice: ApiUser) -> None:
    with count_queries() as queries:
        sent = await alice.send(general, "counted")
        await asyncio.sleep(0)  # let asyncpg's query loggers run
    # The access check and the insert read back with its author, in one statement.
    assert queries[0] == 1
    page = (await alice.get(f"/channels/{general}/messages")).json()
    assert page["messages"] == [sent]


def _stored(**changes: object) -> StoredMessage:
    plain = StoredMessage(
        id=uuid4(),
        channel_id=uuid4(),
        user_id=uuid4(),
        author=Author(
            id=uuid4(), username="alice", display_name="Alice", avatar_url=None, status="online"
        ),
        content="hello",
        content_enc=None,
        nonce="n-1",
        reply_to=uuid4(),
        attachments=(),
        edited_at=None,
        created_at=datetime(2026, 12, 3, 6, 30, 1, 123456, tzinfo=UTC),
    )
    return replace(plain, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        _stored(),
        _stored(author=None, user_id=None, edited_at=datetime(2026, 12, 4, tzinfo=UTC)),
        _stored(
            content=None,
            content_enc={
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "sender_key": "curve",
                "session_id": "sess",
                "device_id": "DEV",
            },
        ),
        _stored(
            attachments=(
                StoredAttachment(id=uuid4(), filename="a.png", mime_type="image/png", size_bytes=3),
                StoredAttachment(id=uuid4(), filename="b", mime_type="text/plain", size_bytes=0),
            )
        ),
    ],
    ids=["plain", "deleted-author", "encrypted", "attachments"],
)
def test_the_fast_message_json_is_the_schema_s(message: StoredMessage) -> None:
    assert (
        MESSAGE_JSON.dump_json(message_json(message))
        == Message.of(message).model_dump_json().encode()
    )
