"""Who may upload into a channel and who may fetch a file (local backend)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx

from tests.files.conftest import PNG, attach, make_channel, upload
from tests.utils.auth import ApiUser, api_user


async def test_private_channel_file_is_hidden_from_non_members(
    client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser, db: Any
) -> None:
    carol = await api_user(client, "carol")
    channel = await make_channel(db, private=True, members=(alice, carol))
    response = await upload(alice, b"members only", "plan.txt", channel_id=channel)
    assert response.status_code == 201, response.text
    file = response.json()
    await attach(db, file["id"], alice)

    assert (await carol.get(file["url"])).content == b"members only"
    refused = await bob.get(file["url"])
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "file_not_found"
    assert b"members only" not in refused.content


async def test_non_member_cannot_upload_into_a_private_channel(
    alice: ApiUser, bob: ApiUser, db: Any
) -> None:
    channel = await make_channel(db, private=True, members=(alice,))
    response = await upload(bob, b"let me in", "x.txt", channel_id=channel)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "channel_not_found"
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_channel_id_may_come_as_query_parameter(alice: ApiUser, db: Any) -> None:
    channel = await make_channel(db)
    response = await alice.post(
        f"/upload?channel_id={channel}", files={"file": ("a.txt", b"hello", "text/plain")}
    )
    assert response.status_code == 201, response.text
    stored = await db.fetchval("SELECT channel_id::text FROM files")
    assert stored == channel


async def test_channel_id_after_the_file_is_still_checked(
    client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser, db: Any
) -> None:
    channel = await make_channel(db, private=True, members=(alice,))
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="late.txt"\r\n\r\n'
        "sneaky\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="channel_id"\r\n\r\n'
        f"{channel}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    refused = await client.post("/upload", content=body, headers={**bob.headers, **headers})
    assert refused.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM files") == 0
    accepted = await client.post("/upload", content=body, headers={**alice.headers, **headers})
    assert accepted.status_code == 201, accepted.text
    assert await db.fetchval("SELECT channel_id::text FROM files") == channel


async def test_conflicting_channel_ids_are_refused(alice: ApiUser, db: Any) -> None:
    one = await make_channel(db)
    other = await make_channel(db)
    response = await alice.post(
        f"/upload?channel_id={one}",
        files={"file": ("a.txt", b"x", "text/plain")},
        data={"channel_id": other},
    )
    assert response.status_code == 422


async def test_missing_upload_permission_is_403(alice: ApiUser, db: Any) -> None:
    channel = await make_channel(db)
    await db.execute(
        """UPDATE roles SET permissions = '["view_channel", "send_messages"]'
           WHERE is_default"""
    )
    response = await upload(alice, b"x", "a.txt", channel_id=channel)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_permission"


async def test_unsent_channel_file_is_the_uploaders_only(
    alice: ApiUser, bob: ApiUser, db: Any
) -> None:
    channel = await make_channel(db)
    file = (await upload(alice, b"draft", "draft.txt", channel_id=channel)).json()
    assert (await alice.get(file["url"])).status_code == 200
    assert (await bob.get(file["url"])).status_code == 404
    await attach(db, file["id"], alice)
    assert (await bob.get(file["url"])).content == b"draft"


async def test_member_removed_from_channel_loses_its_files(
    alice: ApiUser, bob: ApiUser, db: Any
) -> None:
    channel = await make_channel(db, private=True, members=(alice, bob))
    file = (await upload(bob, b"mine", "mine.txt", channel_id=channel)).json()
    await attach(db, file["id"], bob)
    assert (await bob.get(file["url"])).status_code == 200
    await db.execute("DELETE FROM channel_members WHERE user_id = $1::uuid", bob.id)
    assert (await bob.get(file["url"])).status_code == 404


async def test_file_without_channel_is_private_to_its_uploader(
    alice: ApiUser, bob: ApiUser
) -> None:
    file = (await upload(alice, PNG, "me.png")).json()
    assert (await alice.get(file["url"])).status_code == 200
    assert (await bob.get(file["url"])).status_code == 404


async def test_download_needs_a_token(client: httpx.AsyncClient, alice: ApiUser) -> None:
    file = (await upload(alice, b"x", "a.txt")).json()
    response = await client.get(file["url"])
    assert response.status_code == 401


async def test_unknown_and_malformed_ids(alice: ApiUser) -> None:
    missing = await alice.get(f"/files/{uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "file_not_found"
    malformed = await alice.get("/files/not-a-uuid")
    assert malformed.status_code == 422
    assert "error" in malformed.json()


async def test_upload_needs_a_token(client: httpx.AsyncClient, db: Any) -> None:
    response = await client.post("/upload", files={"file": ("a.txt", b"x", "text/plain")})
    assert response.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM files") == 0
