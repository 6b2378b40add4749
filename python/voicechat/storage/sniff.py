"""What an uploaded file is, judged by its bytes, and a name that is safe to hand back.

The client's declared type and extension are never trusted. The type comes from the first bytes
(magic numbers, via puremagic); bytes with no known signature are `text/plain` when they are
clean UTF-8 text and `application/octet-stream` otherwise. The stored name keeps the client's
stem, made safe, and its extension only when that extension fits the sniffed type: a file whose
extension lies (`photo.png` holding a PDF) is re-labelled (`photo.pdf`), never refused.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass

import puremagic

# Enough for every signature puremagic looks for at a fixed offset that matters here
# (tar's at 257, ISO 9660's at 32769).
SNIFF_BYTES = 64 * 1024
OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain"

# Types a browser renders or runs when shown inline: always served as attachments.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "application/xml",
        "text/xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/pdf",
        "application/x-shockwave-flash",
    }
)
# Types served inline (shown in the client); everything else is an attachment.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/x-wav",
        "audio/flac",
        "video/mp4",
        "video/webm",
        "text/plain",
    }
)
AVATAR_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

# Preferred extensions where mimetypes' first guess is odd or missing.
_CANONICAL_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
    OCTET_STREAM: ".bin",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "image/webp": ".webp",
    "application/zip": ".zip",
}
# Zip containers: puremagic guesses an office format from the local header alone; without the
# central directory we only know it is a zip.
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_NAME_CHARS = 180
_MAX_EXTENSION_CHARS = 16
_FORBIDDEN_CHARS = re.compile(r'[<>:"/\\|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sniffed:
    """The detected media type and the extensions that fit it (canonical first)."""

    mime_type: str
    extensions: tuple[str, ...]

    @property
    def extension(self) -> str:
        """The extension a re-labelled file gets."""
        return self.extensions[0]


def sniff(head: bytes, *, complete: bool = False) -> Sniffed:
    """The type of a file from its first bytes (up to :data:`SNIFF_BYTES`).

    Args:
        head: the file's first bytes.
        complete: `head` is the whole file (so it cannot end inside a UTF-8 character).
    """
    head = head[:SNIFF_BYTES]
    if not head:
        return _sniffed(OCTET_STREAM)
    matches = []
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    if matches:
        best = max(matches, key=lambda match: match.confidence)
        tied = [m for m in matches if m.confidence == best.confidence]
        mime_types = {m.mime_type for m in tied if m.mime_type}
        if head.startswith(_ZIP_MAGIC) and len(mime_types) > 1:
            return _sniffed("application/zip")
        if best.mime_type:
            extensions = tuple(dict.fromkeys(m.extension.lower() for m in tied if m.extension))
            return _sniffed(best.mime_type.lower(), extensions)
    if _is_text(head, complete=complete or len(head) < SNIFF_BYTES):
        return _sniffed(TEXT)
    return _sniffed(OCTET_STREAM)


def _sniffed(mime_type: str, found: tuple[str, ...] = ()) -> Sniffed:
    canonical = _CANONICAL_EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type)
    known = mimetypes.guess_all_extensions(mime_type)
    ordered = [canonical] if canonical else []
    ordered += [*found, *known]
    extensions = tuple(dict.fromkeys(e for e in ordered if e)) or (".bin",)
    return Sniffed(mime_type, extensions)


def _is_text(head: bytes, *, complete: bool) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut-off head may end inside a multi-byte character: only that tail may fail.
        if complete or exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return not any(unicodedata.category(char) == "Cc" and char not in "\t\n\r\f" for char in text)


def safe_filename(client_name: str | None, sniffed: Sniffed) -> str:
    """A name for the stored file: no path, no control or format characters, no reserved
    device name, bounded length, and an extension that fits the sniffed type."""
    name = unicodedata.normalize("NFC", client_name or "")
    # Last path component, whichever separator the client's system uses.
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters; Cf: format characters such as U+202E (right-to-left override),
    # which can make "gpj.exe" display as "exe.jpg".
    name = "".join(
        char for char in name if unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co")
    )
    name = _FORBIDDEN_CHARS.sub("_", name)
    name = " ".join(name.split()).strip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = f".{extension.lower()}" if extension else ""
    if not _extension_fits(extension, sniffed):
        extension = sniffed.extension
    stem = stem.strip(" .") or "file"
    if _WINDOWS_RESERVED.match(stem):
        stem = f"_{stem}"
    return stem[: _MAX_NAME_CHARS - len(extension)] + extension


def _extension_fits(extension: str, sniffed: Sniffed) -> bool:
    if not extension or len(extension) > _MAX_EXTENSION_CHARS or not extension[1:].isalnum():
        return False
    if extension in sniffed.extensions:
        return True
    claimed, _ = mimetypes.guess_type(f"file{extension}", strict=False)
    if sniffed.mime_type == TEXT:
        # Source code, CSV, Markdown...: any text type that does not render or run.
        return claimed is None or (claimed.startswith("text/") and claimed not in ACTIVE_TYPES)
    if sniffed.mime_type == OCTET_STREAM:
        # Unknown binary: keep an extension that claims nothing we could have recognised.
        return claimed is None
    return False


def disposition_type(mime_type: str) -> str:
    """`inline` for types safe to show in place, `attachment` for all others."""
    if mime_type in INLINE_TYPES and mime_type not in ACTIVE_TYPES:
        return "inline"
    return "attachment"
