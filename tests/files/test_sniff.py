"""Type sniffing and safe names, without the API."""

from __future__ import annotations

import pytest

from tests.files.conftest import PDF, PNG
from voicechat.storage.sniff import SNIFF_BYTES, disposition_type, safe_filename, sniff


@pytest.mark.parametrize(
    ("head", "mime_type"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (PDF, "application/pdf"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/zip"),
        (b"hello, world\n", "text/plain"),
        ("na\u00efve caf\u00e9\n".encode(), "text/plain"),
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniffs_by_content(head: bytes, mime_type: str) -> None:
    assert sniff(head).mime_type == mime_type


def test_text_cut_inside_a_multibyte_character_is_still_text() -> None:
    head = ("a" + "\u00e9" * SNIFF_BYTES).encode()[:SNIFF_BYTES]
    assert sniff(head).mime_type == "text/plain"
    # A whole file that ends in a broken character is not text.
    assert sniff(b"abc\xc3").mime_type == "application/octet-stream"
    assert sniff(b"\x80\x81").mime_type == "application/octet-stream"


def test_jpeg_gets_a_conventional_extension() -> None:
    jpeg = sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    assert jpeg.extension == ".jpg"
    assert safe_filename("me.jpeg", jpeg) == "me.jpeg"
    assert safe_filename("me.JPG", jpeg) == "me.jpg"
    assert safe_filename("me.gif", jpeg) == "me.jpg"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a\x00b\nc.txt", "abc.txt"),
        ("tab\there.txt", "tabhere.txt"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("trailing.txt. . ", "trailing.txt"),
        ("lpt1", "_lpt1.txt"),
        ("nul.tar.txt", "_nul.tar.txt"),
        (None, "file.txt"),
        ("...", "file.txt"),
        ("report.", "report.txt"),
        ("noext", "noext.txt"),
        ("page.svg", "page.txt"),
        ("main.py", "main.py"),
    ],
)
def test_safe_filename_for_text(name: str | None, expected: str) -> None:
    assert safe_filename(name, sniff(b"plain text")) == expected


def test_unknown_binary_keeps_an_unclaimed_extension_only() -> None:
    blob = sniff(b"\x00\x01\x02\x03")
    assert safe_filename("save.sav-game", blob) == "save.bin"
    assert safe_filename("save.qzx", blob) == "save.qzx"
    assert safe_filename("fake.png", blob) == "fake.bin"


def test_names_stay_within_the_column_limit() -> None:
    name = safe_filename("\u65e5" * 1000 + ".txt", sniff(b"text"))
    assert 1 <= len(name) <= 180
    assert name.endswith(".txt")


@pytest.mark.parametrize(
    ("mime_type", "kind"),
    [
        ("image/png", "inline"),
        ("text/plain", "inline"),
        ("image/svg+xml", "attachment"),
        ("text/html", "attachment"),
        ("application/pdf", "attachment"),
        ("application/octet-stream", "attachment"),
    ],
)
def test_disposition(mime_type: str, kind: str) -> None:
    assert disposition_type(mime_type) == kind
