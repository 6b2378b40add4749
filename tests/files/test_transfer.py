"""Upload and download through both backends: the local directory and S3 (moto on loopback).

Every object is checked raw in its backend: ciphertext only, the plaintext nowhere in it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from tests.files.conftest import (
    EACH_BACKEND,
    PNG,
    UPLOAD_LIMIT,
    StorageUnderTest,
    object_key,
    upload,
)
from tests.utils.auth import ApiUser
from voicechat.storage.sealed import MAGIC, sealed_size

pytestmark = EACH_BACKEND


def _assert_sealed(storage: StorageUnderTest, file_id: str, plaintext: bytes) -> None:
    raw = storage.raw(object_key(file_id))
    assert raw is not None, storage.keys()
    assert raw.startswith(MAGIC)
    assert len(raw) == sealed_size(len(plaintext))
    # No 32-byte window of the plaintext survives in the stored object.
    for start in range(0, max(1, len(plaintext) - 32), max(1, len(plaintext) // 64)):
        assert plaintext[start : start + 32] not in raw


async def test_upload_then_download_round_trips_encrypted(
    alice: ApiUser, storage: StorageUnderTest
) -> None:
    content = PNG + b"secret pixels " * 4000
    response = await upload(alice, content, "cat.png", content_type="image/png")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "cat.png"
    assert body["mime_type"] == "image/png"
    assert body["size_bytes"] == len(content)
    assert body["url"] == f"/files/{body['id']}"

    fetched = await alice.get(body["url"])
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == content
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.headers["content-length"] == str(len(content))
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert fetched.headers["content-disposition"].startswith("inline;")
    _assert_sealed(storage, body["id"], content)


async def test_large_file_streams_through_many_chunks_and_parts(
    alice: ApiUser, storage: StorageUnderTest
) -> None:
    # Over one S3 part (8 MiB) and many 64 KiB cipher chunks, not a multiple of either.
    content = secrets.token_bytes(9 * 1024 * 1024 + 12345)
    response = await upload(alice, content, "noise.dat")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mime_type"] == "application/octet-stream"
    fetched = await alice.get(body["url"])
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).digest() == hashlib.sha256(content).digest()
    _assert_sealed(storage, body["id"], content)


async def test_empty_file_round_trips(alice: ApiUser, storage: StorageUnderTest) -> None:
    response = await upload(alice, b"", "empty.txt")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["size_bytes"] == 0
    fetched = await alice.get(body["url"])
    assert fetched.status_code == 200
    assert fetched.content == b""


async def test_declared_length_over_the_limit_is_refused_before_reading(
    alice: ApiUser, storage: StorageUnderTest
) -> None:
    content = b"\0" * (UPLOAD_LIMIT + 128 * 1024)
    response = await upload(alice, content, "big.bin")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert storage.keys() == []


def _multipart(boundary: str, filename: str, size: int) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        yield (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        sent = 0
        piece = b"A" * (256 * 1024)
        while sent < size:
            chunk = piece[: size - sent]
            sent += len(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    return body


async def test_streamed_body_over_the_limit_is_cut_off_and_leaves_nothing(
    client: httpx.AsyncClient,
    alice: ApiUser,
    storage: StorageUnderTest,
    db: Any,
) -> None:
    # Chunked transfer without Content-Length: only counting while streaming can catch it.
    boundary = "voicechat-test-boundary"
    response = await client.post(
        "/upload",
        content=_multipart(boundary, "huge.bin", UPLOAD_LIMIT + 1)(),
        headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413, response.text
    assert storage.keys() == []
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_streamed_body_at_the_limit_is_accepted(
    client: httpx.AsyncClient, alice: ApiUser, storage: StorageUnderTest
) -> None:
    boundary = "voicechat-test-boundary"
    response = await client.post(
        "/upload",
        content=_multipart(boundary, "exact.bin", UPLOAD_LIMIT)(),
        headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == UPLOAD_LIMIT
    assert storage.keys() == [object_key(response.json()["id"])]


async def test_health_probes_the_storage_backend(
    client: httpx.AsyncClient, storage: StorageUnderTest
) -> None:
    response = await client.get("/health")
    assert response.json()["components"]["storage"]["status"] == "ok"


async def test_client_leaving_mid_upload_leaves_nothing(
    app: FastAPI, alice: ApiUser, storage: StorageUnderTest, db: Any
) -> None:
    # Driven at the ASGI level: an HTTP client library cannot vanish halfway on purpose.
    head = b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": head, "more_body": True},
        *[{"type": "http.request", "body": b"B" * 65536, "more_body": True}] * 160,
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/upload",
        "raw_path": b"/upload",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", alice.headers["Authorization"].encode()),
            (b"content-type", b"multipart/form-data; boundary=zz"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert storage.keys() == []
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_byte_ranges_decrypt_only_what_is_asked(
    client: httpx.AsyncClient, alice: ApiUser, storage: StorageUnderTest
) -> None:
    chunk = 64 * 1024
    content = secrets.token_bytes(3 * chunk + 1000)
    file = (await upload(alice, content, "clip.bin")).json()
    size = len(content)
    cases = {
        "bytes=0-9": (0, 10),
        f"bytes={chunk - 5}-{chunk + 4}": (chunk - 5, chunk + 5),  # across a chunk boundary
        f"bytes={chunk}-{2 * chunk - 1}": (chunk, 2 * chunk),  # exactly one whole chunk
        f"bytes={2 * chunk + 7}-": (2 * chunk + 7, size),  # open-ended, to the final chunk
        "bytes=-100": (size - 100, size),  # suffix
        f"bytes=10-{size + 5000}": (10, size),  # end past the file is clipped
        f"bytes={size - 1}-{size - 1}": (size - 1, size),
    }
    for header, (start, end) in cases.items():
        response = await client.get(file["url"], headers={**alice.headers, "Range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.content == content[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)


async def test_unsatisfiable_and_ignored_ranges(
    client: httpx.AsyncClient, alice: ApiUser, storage: StorageUnderTest
) -> None:
    content = b"0123456789" * 10
    file = (await upload(alice, content, "digits.txt")).json()
    outside = await client.get(file["url"], headers={**alice.headers, "Range": "bytes=100-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == "bytes */100"
    for ignored in ("bytes=0-1,5-6", "lines=1-2", "bytes=9-3", "bytes=-"):
        whole = await client.get(file["url"], headers={**alice.headers, "Range": ignored})
        assert whole.status_code == 200, ignored
        assert whole.content == content
    stale = await client.get(
        file["url"], headers={**alice.headers, "Range": "bytes=0-1", "If-Range": '"other"'}
    )
    assert stale.status_code == 200
    assert stale.content == content


async def test_unchanged_file_answers_304(
    client: httpx.AsyncClient, alice: ApiUser, storage: StorageUnderTest
) -> None:
    file = (await upload(alice, b"cache me", "c.txt")).json()
    first = await alice.get(file["url"])
    etag = first.headers["etag"]
    again = await client.get(file["url"], headers={**alice.headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
