"""Avatars: an uploaded image set through `PATCH /users/@me`, visible to everyone signed in."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from tests.files.conftest import PDF, PNG, make_channel, upload
from tests.utils.auth import ApiUser


async def test_set_show_and_clear_an_avatar(alice: ApiUser, bob: ApiUser) -> None:
    image = PNG + b"\x00" * 64
    file = (await upload(alice, image, "me.png", content_type="image/png")).json()
    assert (await bob.get(file["url"])).status_code == 404

    response = await alice.patch("/users/@me", json={"avatar": file["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["avatar_url"] == file["url"]
    profile = (await bob.get(f"/users/{alice.id}")).json()
    assert profile["avatar_url"] == file["url"]
    fetched = await bob.get(profile["avatar_url"])
    assert fetched.status_code == 200
    assert fetched.content == image
    assert fetched.headers["content-type"] == "image/png"

    cleared = await alice.patch("/users/@me", json={"avatar": None})
    assert cleared.status_code == 200
    assert cleared.json()["avatar_url"] is None
    assert (await bob.get(file["url"])).status_code == 404
    assert (await alice.get(file["url"])).status_code == 200


async def test_other_profile_fields_leave_the_avatar_alone(alice: ApiUser) -> None:
    file = (await upload(alice, PNG, "me.png")).json()
    await alice.patch("/users/@me", json={"avatar": file["id"]})
    response = await alice.patch("/users/@me", json={"display_name": "Alice"})
    assert response.json()["avatar_url"] == file["url"]


async def test_avatar_must_be_an_image(alice: ApiUser) -> None:
    file = (await upload(alice, PDF, "me.png", content_type="image/png")).json()
    response = await alice.patch("/users/@me", json={"avatar": file["id"]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_avatar"


async def test_avatar_must_be_ones_own_upload(alice: ApiUser, bob: ApiUser) -> None:
    file = (await upload(bob, PNG, "bob.png")).json()
    response = await alice.patch("/users/@me", json={"avatar": file["id"]})
    assert response.status_code == 422
    unknown = await alice.patch("/users/@me", json={"avatar": str(uuid4())})
    assert unknown.status_code == 422


async def test_channel_file_cannot_become_an_avatar(alice: ApiUser, db: Any) -> None:
    channel = await make_channel(db, private=True, members=(alice,))
    file = (await upload(alice, PNG, "x.png", channel_id=channel)).json()
    response = await alice.patch("/users/@me", json={"avatar": file["id"]})
    assert response.status_code == 422


async def test_malformed_avatar_id_is_422(alice: ApiUser) -> None:
    response = await alice.patch("/users/@me", json={"avatar": "nope"})
    assert response.status_code == 422
