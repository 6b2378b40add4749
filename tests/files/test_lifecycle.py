"""Stored objects leave with what they belong to: a deleted message, a deleted channel, an
upload never used. Checked raw in both backends: the bytes are gone, not just the row.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import FastAPI

from tests.files.conftest import (
    EACH_BACKEND,
    PNG,
    StorageUnderTest,
    make_channel,
    object_key,
    upload,
)
from tests.utils.auth import ApiUser
from voicechat.api.resources import Resources

pytestmark = EACH_BACKEND


def _resources(app: FastAPI) -> Resources:
    resources: Resources = app.state.resources
    return resources


async def _send_with(user: ApiUser, channel_id: str, file_id: str) -> str:
    response = await user.post(
        f"/channels/{channel_id}/messages", json={"content": "see", "attachments": [file_id]}
    )
    assert response.status_code == 201, response.text
    message_id: str = response.json()["id"]
    return message_id


async def _age(db: Any, file_id: str, hours: float) -> None:
    await db.execute(
        "UPDATE files SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
        UUID(file_id),
        hours * 3600,
    )


async def test_deleting_a_message_deletes_its_attachments(
    admin: ApiUser, alice: ApiUser, storage: StorageUnderTest, db: Any
) -> None:
    channel = await make_channel(db)
    first = (await upload(alice, b"first " * 100, "a.txt", channel_id=channel)).json()["id"]
    second = (await upload(alice, PNG + b"px" * 50, "b.png", channel_id=channel)).json()["id"]
    kept = (await upload(alice, b"other " * 100, "c.txt", channel_id=channel)).json()["id"]
    response = await alice.post(
        f"/channels/{channel}/messages", json={"content": "two", "attachments": [first, second]}
    )
    assert response.status_code == 201, response.text
    message = response.json()["id"]
    other = await _send_with(alice, channel, kept)
    assert storage.raw(object_key(first)) is not None

    response = await alice.delete(f"/messages/{message}")

    assert response.status_code == 204, response.text
    for file_id in (first, second):
        assert (await alice.get(f"/files/{file_id}")).status_code == 404
        assert storage.raw(object_key(file_id)) is None
    # Another message's attachment is untouched.
    assert (await alice.get(f"/files/{kept}")).content == b"other " * 100
    assert storage.keys() == [object_key(kept)]
    assert (await admin.delete(f"/messages/{other}")).status_code == 204
    assert storage.keys() == []


async def test_deleting_a_channel_deletes_its_files_attached_or_not(
    admin: ApiUser, alice: ApiUser, storage: StorageUnderTest, db: Any
) -> None:
    channel = await make_channel(db)
    elsewhere = await make_channel(db)
    sent = (await upload(alice, b"sent " * 100, "a.txt", channel_id=channel)).json()["id"]
    draft = (await upload(alice, b"draft " * 100, "b.txt", channel_id=channel)).json()["id"]
    other = (await upload(alice, b"other " * 100, "c.txt", channel_id=elsewhere)).json()["id"]
    await _send_with(alice, channel, sent)

    response = await admin.delete(f"/channels/{channel}")

    assert response.status_code == 204, response.text
    assert storage.raw(object_key(sent)) is None
    assert storage.raw(object_key(draft)) is None
    assert storage.keys() == [object_key(other)]
    assert await db.fetchval("SELECT count(*) FROM files") == 1


async def test_sweep_removes_abandoned_uploads_and_keeps_everything_in_use(
    app: FastAPI, alice: ApiUser, bob: ApiUser, storage: StorageUnderTest, db: Any
) -> None:
    channel = await make_channel(db)
    attached = (await upload(alice, b"kept " * 100, "a.txt", channel_id=channel)).json()["id"]
    await _send_with(alice, channel, attached)
    stale_draft = (await upload(alice, b"old " * 100, "b.txt", channel_id=channel)).json()["id"]
    fresh_draft = (await upload(alice, b"new " * 100, "c.txt", channel_id=channel)).json()["id"]
    avatar = (await upload(bob, PNG, "me.png", content_type="image/png")).json()["id"]
    assert (await bob.patch("/users/@me", json={"avatar": avatar})).status_code == 200
    replaced = (await upload(alice, PNG, "old.png", content_type="image/png")).json()["id"]
    for file_id in (attached, stale_draft, avatar, replaced):
        await _age(db, file_id, hours=25)

    removed = await _resources(app).sweeper.sweep()

    assert removed == 2
    assert storage.raw(object_key(stale_draft)) is None
    assert storage.raw(object_key(replaced)) is None
    assert sorted(storage.keys()) == sorted(object_key(f) for f in (attached, fresh_draft, avatar))
    assert (await alice.get(f"/files/{attached}")).content == b"kept " * 100
    assert (await alice.get(f"/files/{avatar}")).status_code == 200
    assert await _resources(app).sweeper.sweep() == 0
