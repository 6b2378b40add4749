"""What is on disk is ciphertext that only its own row opens (local backend)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tests.files.conftest import StorageUnderTest, object_key, upload
from tests.utils.auth import ApiUser
from voicechat.crypto import DecryptionError
from voicechat.server_keys import MasterKeys
from voicechat.storage import FileStorage, LocalBackend, StoredFile
from voicechat.storage.sealed import chunk_offset


def _path(storage: StorageUnderTest, file_id: str) -> Path:
    url = str(storage.settings["storage_url"])
    return Path(url.removeprefix("file://")) / object_key(file_id)


async def test_objects_are_private_files(alice: ApiUser, storage: StorageUnderTest) -> None:
    file = (await upload(alice, b"private words", "a.txt")).json()
    path = _path(storage, file["id"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o077 == 0
    assert b"private words" not in path.read_bytes()


async def test_wrapped_key_is_not_the_object_key(alice: ApiUser, db: Any) -> None:
    file = (await upload(alice, b"x", "a.txt")).json()
    wrapped = await db.fetchval("SELECT wrapped_key FROM files WHERE id = $1", UUID(file["id"]))
    # nonce ‖ sealed 32-byte key ‖ tag
    assert len(wrapped) == 12 + 32 + 16


async def test_tampered_object_is_not_served(alice: ApiUser, storage: StorageUnderTest) -> None:
    file = (await upload(alice, b"original content", "a.txt")).json()
    path = _path(storage, file["id"])
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    response = await alice.get(file["url"])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "file_unreadable"
    assert b"original" not in response.content


async def test_swapped_wrapped_keys_do_not_open(
    alice: ApiUser, storage: StorageUnderTest, db: Any
) -> None:
    one = (await upload(alice, b"first file", "1.txt")).json()
    two = (await upload(alice, b"second file", "2.txt")).json()
    await db.execute(
        """UPDATE files SET wrapped_key = (SELECT wrapped_key FROM files WHERE id = $2)
           WHERE id = $1""",
        UUID(one["id"]),
        UUID(two["id"]),
    )
    response = await alice.get(one["url"])
    assert response.status_code == 503


async def test_missing_object_is_404(alice: ApiUser, storage: StorageUnderTest) -> None:
    file = (await upload(alice, b"soon gone", "a.txt")).json()
    _path(storage, file["id"]).unlink()
    response = await alice.get(file["url"])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "file_content_missing"


async def test_corruption_after_the_first_chunk_stops_the_stream(tmp_path: Path) -> None:
    # Over HTTP the headers are sent by then: the server cuts the body short (see the route).
    storage = FileStorage(LocalBackend(tmp_path), MasterKeys(secrets.token_bytes(32)))
    file_id = uuid4()
    content = b"y" * (300 * 1024)
    sealed_upload = await storage.begin(file_id)
    await sealed_upload.write(content)
    await sealed_upload.commit()
    path = tmp_path / sealed_upload.key
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    record = StoredFile(
        id=file_id,
        message_id=None,
        channel_id=None,
        uploader_id=None,
        filename="big.txt",
        mime_type="text/plain",
        size_bytes=len(content),
        s3_key=sealed_upload.key,
        wrapped_key=sealed_upload.wrapped_key,
        created_at=datetime.now(UTC),
        master_key_id=sealed_upload.master_key_id,
    )
    received: list[bytes] = []

    async def read_all() -> None:
        async for piece in storage.read(record):
            received.append(piece)

    with pytest.raises(DecryptionError):
        await read_all()
    assert received
    assert len(b"".join(received)) < len(content)


async def test_a_range_over_a_tampered_chunk_is_refused(
    client: httpx.AsyncClient, alice: ApiUser, storage: StorageUnderTest
) -> None:
    chunk = 64 * 1024
    content = b"z" * (3 * chunk)
    file = (await upload(alice, content, "z.txt")).json()
    path = _path(storage, file["id"])
    raw = bytearray(path.read_bytes())
    raw[chunk_offset(1, chunk) + 10] ^= 1
    path.write_bytes(bytes(raw))

    def ranged(header: str) -> dict[str, str]:
        return {**alice.headers, "Range": header}

    intact = await client.get(file["url"], headers=ranged("bytes=0-99"))
    assert intact.status_code == 206
    assert intact.content == content[:100]
    tampered = await client.get(file["url"], headers=ranged(f"bytes={chunk + 5}-{chunk + 9}"))
    assert tampered.status_code == 503
