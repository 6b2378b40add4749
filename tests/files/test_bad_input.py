"""Uploads that lie about themselves or are not uploads at all (local backend)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.files.conftest import PDF, PNG, upload
from tests.utils.auth import ApiUser


async def test_extension_that_lies_is_relabelled_with_the_sniffed_type(alice: ApiUser) -> None:
    response = await upload(alice, PDF, "holiday.png", content_type="image/png")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mime_type"] == "application/pdf"
    assert body["filename"] == "holiday.pdf"
    fetched = await alice.get(body["url"])
    assert fetched.headers["content-type"] == "application/pdf"
    # PDFs can carry scripts: never shown in place.
    assert fetched.headers["content-disposition"].startswith("attachment;")
    assert fetched.content == PDF


async def test_png_sent_as_text_is_an_image(alice: ApiUser) -> None:
    body = (await upload(alice, PNG, "notes.txt", content_type="text/plain")).json()
    assert body["mime_type"] == "image/png"
    assert body["filename"] == "notes.png"


@pytest.mark.parametrize(
    ("content", "mime_type"),
    [
        (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "text/html"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', None),
    ],
)
async def test_active_content_is_never_served_inline(
    alice: ApiUser, content: bytes, mime_type: str | None
) -> None:
    body = (await upload(alice, content, "innocent.jpg", content_type="image/jpeg")).json()
    assert body["mime_type"] != "image/jpeg"
    if mime_type is not None:
        assert body["mime_type"] == mime_type
    assert not body["filename"].endswith(".jpg")
    fetched = await alice.get(body["url"])
    assert fetched.headers["content-disposition"].startswith("attachment;")
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in fetched.headers["content-security-policy"]


async def test_script_hidden_in_text_is_plain_text(alice: ApiUser) -> None:
    body = (await upload(alice, b"alert(document.cookie)\n", "x.html")).json()
    assert body["mime_type"] == "text/plain"
    assert body["filename"] == "x.txt"
    fetched = await alice.get(body["url"])
    assert fetched.headers["content-type"] == "text/plain; charset=utf-8"


async def test_text_keeps_a_harmless_extension(alice: ApiUser) -> None:
    body = (await upload(alice, b"a,b\n1,2\n", "table.csv", content_type="image/png")).json()
    assert body["mime_type"] == "text/plain"
    assert body["filename"] == "table.csv"


@pytest.mark.parametrize(
    ("client_name", "stored"),
    [
        ("../../etc/passwd", "passwd.txt"),
        ("C:\\Users\\me\\evil.txt", "evil.txt"),
        ("photo\u202egpj.exe", "photogpj.txt"),
        ("CON.txt", "_CON.txt"),
        ("  .hidden.txt  ", "hidden.txt"),
        ("", "file.txt"),
        ("x" * 400 + ".txt", "x" * 176 + ".txt"),
    ],
)
async def test_filenames_are_made_safe(alice: ApiUser, client_name: str, stored: str) -> None:
    response = await upload(alice, b"plain words", client_name)
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == stored


async def test_non_ascii_filename_is_kept_and_served_encoded(alice: ApiUser) -> None:
    body = (await upload(alice, b"bonjour", "r\u00e9sum\u00e9 \u65e5\u672c.txt")).json()
    assert body["filename"] == "r\u00e9sum\u00e9 \u65e5\u672c.txt"
    fetched = await alice.get(body["url"])
    disposition = fetched.headers["content-disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.txt" in disposition


async def test_not_multipart_is_415(alice: ApiUser, db: Any) -> None:
    response = await alice.post("/upload", json={"file": "aGVsbG8="})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_form_without_a_file_is_422(alice: ApiUser) -> None:
    response = await alice.post("/upload", data={"channel_id": "x"}, files={})
    assert response.status_code in (415, 422)
    only_field = await alice.post(
        "/upload", files={"note": (None, b"just text")}, data={"other": "1"}
    )
    assert only_field.status_code == 422


async def test_a_field_the_form_does_not_have_is_refused(alice: ApiUser, db: Any) -> None:
    # As JSON bodies refuse unknown fields; the fuzzer's stateful run found it taken (201).
    response = await alice.post(
        "/upload",
        files={"file": ("a.txt", b"one", "text/plain")},
        data={"\x1bcomment\u00fe": "{}"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "unknown field" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_two_files_are_refused(alice: ApiUser, db: Any) -> None:
    response = await alice.post(
        "/upload",
        files=[
            ("file", ("a.txt", b"one", "text/plain")),
            ("file", ("b.txt", b"two", "text/plain")),
        ],
    )
    assert response.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_truncated_multipart_is_400_and_stores_nothing(
    client: httpx.AsyncClient, alice: ApiUser, db: Any
) -> None:
    body = (
        b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        b"no closing boundary"
    )
    response = await client.post(
        "/upload",
        content=body,
        headers={**alice.headers, "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_multipart"
    assert await db.fetchval("SELECT count(*) FROM files") == 0


async def test_malformed_channel_id_is_422(alice: ApiUser) -> None:
    response = await upload(alice, b"x", "a.txt", channel_id="not-an-id")
    assert response.status_code == 422


async def test_unknown_channel_is_404(alice: ApiUser) -> None:
    response = await upload(alice, b"x", "a.txt", channel_id="00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
