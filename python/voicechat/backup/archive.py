"""The encrypted container of a backup: a tar stream sealed with AES-256-GCM in chunks.

Layout of a backup object::

    header     = b"VCBACKUP" ‖ version (u8 = 1) ‖ kdf (u8: 0 raw key, 1 Argon2id)
                 ‖ memory_kib (u32 BE) ‖ iterations (u32) ‖ lanes (u32) ‖ kdf_salt (16 bytes)
                 ‖ archive_salt (32 bytes)                                          73 bytes
    key_check  = HMAC-SHA256(check_key, header)                                      32 bytes
    body       = the STREAM object of voicechat.storage.sealed (b"VCS1" ‖ chunk size ‖ nonce
                 prefix, then AES-256-GCM chunks whose nonces carry a counter and a final flag)

The backup key (`VOICECHAT_BACKUP_KEY`) is either base64 of 32 random bytes, used as the root
key, or a passphrase stretched by Argon2id (RFC 9106's second recommended setting: 64 MiB,
3 passes, 4 lanes) with the salt stored in the header. From the root key HKDF-SHA256, salted
with the archive's own random salt and bound to the whole header, derives the stream key and
the check key: a fresh key per archive, so nonce prefixes never meet twice under one key, and
any change to the header (a KDF parameter, a salt) yields other keys. The key check tells a
wrong key (or an altered header) apart from damage further on, before anything is decrypted.

The body's chunk counter and final flag make a reordered, repeated, cut or altered chunk fail
to open; the plaintext is a tar stream (stdlib `tarfile`) whose first member is
`header.json` and whose last is `manifest.json` with the SHA-256 of every part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from voicechat.crypto import DecryptionError
from voicechat.storage.sealed import StreamOpener, StreamSealer

MAGIC = b"VCBACKUP"
FORMAT_VERSION = 1
KDF_RAW = 0
KDF_ARGON2ID = 1
_HEADER = struct.Struct(">8sBBIII16s32s")
HEADER_BYTES = _HEADER.size
CHECK_BYTES = 32
PREAMBLE_BYTES = HEADER_BYTES + CHECK_BYTES
#: Plaintext per sealed chunk: 1 MiB keeps the tag overhead at 16 bytes per MiB.
CHUNK_BYTES = 1024 * 1024
#: RFC 9106, section 4, second recommended option (for memory-constrained machines).
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_ITERATIONS = 3
ARGON2_LANES = 4
#: The least a passphrase must have; a raw key is 32 random bytes.
MIN_PASSPHRASE_CHARS = 12


class BackupRefused(Exception):
    """A backup cannot be used (or made); the message is one line for a person."""


@dataclass(frozen=True, slots=True)
class BackupKey:
    """`VOICECHAT_BACKUP_KEY`: a raw 32-byte key or a passphrase. Never logged."""

    secret: bytes
    is_raw: bool

    @classmethod
    def parse(cls, text: str) -> BackupKey:
        """Base64 of exactly 32 bytes is a raw key; anything else is a passphrase.

        Raises:
            ValueError: a passphrase shorter than MIN_PASSPHRASE_CHARS.
        """
        value = text.strip()
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return cls(raw, is_raw=True)
        if len(value) < MIN_PASSPHRASE_CHARS:
            raise ValueError(
                f"must be base64 of 32 random bytes, or a passphrase of at least "
                f"{MIN_PASSPHRASE_CHARS} characters"
            )
        return cls(value.encode(), is_raw=False)

    def __repr__(self) -> str:
        return "BackupKey(<redacted>)"


def _root_key(
    key: BackupKey, kdf: int, memory_kib: int, iterations: int, lanes: int, salt: bytes
) -> bytes:
    if kdf == KDF_RAW:
        if not key.is_raw:
            raise BackupRefused(
                "wrong backup key: this backup was made with a raw key, "
                "VOICECHAT_BACKUP_KEY holds a passphrase"
            )
        return key.secret
    if key.is_raw:
        raise BackupRefused(
            "wrong backup key: this backup was made with a passphrase, "
            "VOICECHAT_BACKUP_KEY holds a raw key"
        )
    if not (8 <= memory_kib <= 4 * 1024 * 1024 and 1 <= iterations <= 100 and 1 <= lanes <= 64):
        raise BackupRefused("not a usable backup: its header is damaged (key derivation)")
    return Argon2id(
        salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory_kib
    ).derive(key.secret)


def _archive_keys(root: bytes, header: bytes) -> tuple[bytes, bytes]:
    archive_salt = header[-32:]
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=archive_salt, info=b"voicechat-backup:" + header
    ).derive(root)
    return okm[:32], okm[32:]


def new_preamble(key: BackupKey) -> tuple[bytes, bytes]:
    """A fresh header and key check for a new archive, and the archive's stream key."""
    kdf_salt = secrets.token_bytes(16)
    if key.is_raw:
        params = (KDF_RAW, 0, 0, 0, bytes(16))
    else:
        params = (KDF_ARGON2ID, ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, kdf_salt)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, *params, secrets.token_bytes(32))
    root = _root_key(key, *params)
    stream_key, check_key = _archive_keys(root, header)
    check = hmac.new(check_key, header, hashlib.sha256).digest()
    return header + check, stream_key


def open_preamble(key: BackupKey, preamble: bytes) -> bytes:
    """The stream key of an archive whose first PREAMBLE_BYTES are `preamble`.

    Raises:
        BackupRefused: not a voicechat backup, a newer format, or the wrong key.
    """
    if len(preamble) < PREAMBLE_BYTES:
        raise BackupRefused(
            "not a usable backup: the archive is truncated (shorter than its header)"
        )
    header, check = preamble[:HEADER_BYTES], preamble[HEADER_BYTES:PREAMBLE_BYTES]
    magic, version, kdf, memory_kib, iterations, lanes, salt, _ = _HEADER.unpack(header)
    if magic != MAGIC:
        raise BackupRefused("not a voicechat backup (no VCBACKUP header)")
    if version != FORMAT_VERSION:
        raise BackupRefused(
            f"backup format {version} is not known to this voicechat (it reads format "
            f"{FORMAT_VERSION}); restore it with the voicechat version that made it"
        )
    if kdf not in (KDF_RAW, KDF_ARGON2ID):
        raise BackupRefused("not a usable backup: its header is damaged (unknown key derivation)")
    root = _root_key(key, kdf, memory_kib, iterations, lanes, salt)
    stream_key, check_key = _archive_keys(root, header)
    expected = hmac.new(check_key, header, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, check):
        raise BackupRefused(
            "wrong backup key (VOICECHAT_BACKUP_KEY), or the archive's header was altered"
        )
    return stream_key


class SealingWriter(io.RawIOBase):
    """A write-only file that seals what it is given into `sink` (for `tarfile` mode "w|")."""

    def __init__(self, key: BackupKey, sink: Callable[[bytes], None]) -> None:
        super().__init__()
        preamble, stream_key = new_preamble(key)
        self._sink = sink
        self._sealer = StreamSealer(stream_key, chunk_size=CHUNK_BYTES)
        self.bytes_out = 0
        self._emit(preamble)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        sealed = self._sealer.update(bytes(data))
        if sealed:
            self._emit(sealed)
        return len(data)

    def finish(self) -> None:
        """Seal the final chunk (call once, after the tar stream is closed)."""
        self._emit(self._sealer.finish())

    def _emit(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self._sink(data)


class OpeningReader(io.RawIOBase):
    """A read-only file of the plaintext of an archive read from `pieces` (for mode "r|").

    Every byte it returns has been authenticated; :meth:`drain` reads to the end and insists
    on the final chunk, so a cut archive is refused even when tar stopped reading early.
    """

    def __init__(self, key: BackupKey, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        self._pending = bytearray()
        self.bytes_in = 0
        preamble = bytearray()
        while len(preamble) < PREAMBLE_BYTES:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self.bytes_in += len(piece)
            preamble += piece
        self._opener = StreamOpener(open_preamble(key, bytes(preamble)))
        self._feed(bytes(preamble[PREAMBLE_BYTES:]))
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._ended:
            piece = next(self._pieces, None)
            if piece is None:
                self._ended = True
                self._pending += self._open(self._opener.finish)
            else:
                self.bytes_in += len(piece)
                self._feed(piece)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size

    def drain(self) -> int:
        """Read (and authenticate) the rest; returns how many plaintext bytes were left."""
        left = 0
        while chunk := self.read(CHUNK_BYTES):
            left += len(chunk)
        return left

    def _feed(self, piece: bytes) -> None:
        self._pending += self._open(lambda: self._opener.update(piece))

    @staticmethod
    def _open(step: Callable[[], bytes]) -> bytes:
        try:
            return step()
        except DecryptionError as exc:
            reason = str(exc)
            if "truncated" in reason or "shorter" in reason:
                raise BackupRefused(
                    "the archive is truncated (its final chunk is missing)"
                ) from None
            raise BackupRefused(
                f"the archive is damaged, cut short or altered ({reason})"
            ) from None
