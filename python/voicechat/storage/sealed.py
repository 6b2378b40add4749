"""Streaming encryption of stored objects: AES-256-GCM in fixed-size chunks (STREAM).

A whole-object AES-GCM seal would need the whole object in memory, so an object is cut into
chunks of `chunk_size` plaintext bytes, each sealed on its own under the object's key. The
layout of a stored object is::

    header   = b"VCS1" ‖ chunk_size (u32 BE) ‖ nonce_prefix (7 random bytes)      15 bytes
    chunk[i] = AES-256-GCM(key, nonce_i, plaintext_i, aad=header)                    len + 16
    nonce_i  = nonce_prefix ‖ i (u32 BE) ‖ last (1 byte: 1 on the final chunk, else 0)

as in Rogaway et al.'s STREAM (and age, Tink's streaming AEAD): the counter in the nonce pins
each chunk to its position, so chunks cannot be reordered, dropped or repeated, and the final
flag makes a truncated object fail to open instead of looking complete. Every chunk but the last
holds exactly `chunk_size` bytes; the last holds 1..chunk_size (0 only for an empty object), so
an object always ends with a chunk sealed as final.

Each object has its own random 256-bit key, stored only wrapped: sealed (crypto.seal) under a
subkey of the current master key, with the object's id and the master key's id as associated
data, so a wrapped key copied to another row, or a row whose key id was edited, does not open.
The row records that key id (`files.master_key_id`): a master-key rotation re-wraps the object
keys, never the objects (server_keys.MasterKeys, `voicechat admin rotate-master-key`).
"""

from __future__ import annotations

import secrets
import struct
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from voicechat.crypto import KEY_BYTES, DecryptionError
from voicechat.server_keys import MasterKeys

MAGIC = b"VCS1"
CHUNK_SIZE = 64 * 1024
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + 4 + NONCE_PREFIX_BYTES
MAX_CHUNKS = 2**32
_KEY_WRAP_PURPOSE = "file-object-keys"


def new_object_key() -> bytes:
    """A fresh random AES-256 key for one object."""
    return secrets.token_bytes(KEY_BYTES)


def wrap_object_key(keys: MasterKeys, file_id: UUID, object_key: bytes) -> tuple[bytes, bytes]:
    """The object key sealed under the current master key's file subkey, bound to `file_id`;
    returns (master key id, wrapped key)."""
    return keys.seal(_KEY_WRAP_PURPOSE, object_key, context=_wrap_context(file_id))


def unwrap_object_key(
    keys: MasterKeys, file_id: UUID, wrapped: bytes, *, key_id: bytes | None
) -> bytes:
    """Reverse :func:`wrap_object_key`, under the master key `key_id` names (None: wrapped
    before key ids were recorded).

    Raises:
        MasterKeyUnavailable: that master key is not configured.
        DecryptionError: another file's wrapped key, or tampered bytes.
    """
    return keys.open(_KEY_WRAP_PURPOSE, wrapped, key_id=key_id, context=_wrap_context(file_id))


def _wrap_context(file_id: UUID) -> bytes:
    return b"file:" + file_id.bytes


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def chunk_offset(index: int, chunk_size: int) -> int:
    """Where sealed chunk `index` starts in the stored object."""
    return HEADER_BYTES + index * (chunk_size + TAG_BYTES)


def sealed_size(plaintext_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """The stored size of an object of `plaintext_size` bytes."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_BYTES + plaintext_size + chunks * TAG_BYTES


class StreamSealer:
    """Encrypts an object piece by piece; holds at most one chunk plus the latest input."""

    def __init__(self, key: bytes, *, chunk_size: int = CHUNK_SIZE) -> None:
        if not 1 <= chunk_size < 2**32:
            raise ValueError("chunk_size must fit in 32 bits")
        self._aead = AESGCM(key)
        self._chunk_size = chunk_size
        self._prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        self._header = MAGIC + struct.pack(">I", chunk_size) + self._prefix
        self._counter = 0
        self._pending = bytearray()
        self._header_sent = False
        self._finished = False

    def update(self, data: bytes) -> bytes:
        """Take more plaintext; returns the ciphertext that is ready (possibly empty)."""
        if self._finished:
            raise RuntimeError("the stream is already finished")
        self._pending += data
        out = bytearray(self._take_header())
        # Strictly more than a chunk: the chunk we seal is then known not to be the last one.
        while len(self._pending) > self._chunk_size:
            out += self._seal(bytes(self._pending[: self._chunk_size]), last=False)
            del self._pending[: self._chunk_size]
        return bytes(out)

    def finish(self) -> bytes:
        """Seal what is left as the final chunk; returns the last ciphertext."""
        if self._finished:
            raise RuntimeError("the stream is already finished")
        out = self._take_header() + self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        self._finished = True
        return out

    def _take_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return self._header

    def _seal(self, chunk: bytes, *, last: bool) -> bytes:
        if self._counter >= MAX_CHUNKS:
            raise ValueError("object too large for the chunk counter")
        nonce = _nonce(self._prefix, self._counter, last)
        self._counter += 1
        return self._aead.encrypt(nonce, chunk, self._header)


class StreamOpener:
    """Decrypts an object sealed by :class:`StreamSealer`, piece by piece.

    Plaintext is released chunk by chunk as each authenticates; a stream that is cut short,
    reordered or altered raises :class:`DecryptionError` no later than :meth:`finish`.
    """

    def __init__(self, key: bytes, *, header: bytes | None = None, first_chunk: int = 0) -> None:
        """Open from the start, or (given the object's `header`) from chunk `first_chunk` on:
        then feed the ciphertext from :func:`chunk_offset` of that chunk."""
        self._aead = AESGCM(key)
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._prefix = b""
        self._sealed_chunk = 0
        self._counter = 0
        self._finished = False
        if header is not None:
            self._buffer += header
            self._read_header()
            self._counter = first_chunk

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes per chunk, once the header has been read."""
        return self._sealed_chunk - TAG_BYTES

    def update(self, data: bytes) -> bytes:
        """Take more ciphertext; returns the plaintext authenticated so far (possibly empty)."""
        if self._finished:
            raise DecryptionError("data after the final chunk")
        self._buffer += data
        if self._header is None and not self._read_header():
            return b""
        out = bytearray()
        # Keep back a full chunk until more follows: only then is it known not to be last.
        while len(self._buffer) > self._sealed_chunk:
            out += self._open(bytes(self._buffer[: self._sealed_chunk]), last=False)
            del self._buffer[: self._sealed_chunk]
        return bytes(out)

    def finish(self) -> bytes:
        """Open the final chunk; returns its plaintext.

        Raises:
            DecryptionError: the object is truncated or its last chunk is not the final one.
        """
        if self._finished:
            raise RuntimeError("the stream is already finished")
        if self._header is None and not self._read_header():
            raise DecryptionError("object shorter than its header")
        if len(self._buffer) < TAG_BYTES:
            raise DecryptionError("object truncated")
        out = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._finished = True
        return out

    def finish_range(self) -> bytes:
        """Open the held-back chunk of a range that stops before the object's final chunk.

        Raises:
            DecryptionError: the chunk is incomplete or does not authenticate.
        """
        if self._header is None or len(self._buffer) != self._sealed_chunk:
            raise DecryptionError("object truncated")
        out = self._open(bytes(self._buffer), last=False)
        self._buffer.clear()
        self._finished = True
        return out

    def _read_header(self) -> bool:
        if len(self._buffer) < HEADER_BYTES:
            return False
        header = bytes(self._buffer[:HEADER_BYTES])
        if header[: len(MAGIC)] != MAGIC:
            raise DecryptionError("not a sealed object (bad magic)")
        (chunk_size,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        if chunk_size == 0:
            raise DecryptionError("bad chunk size")
        self._header = header
        self._prefix = header[len(MAGIC) + 4 :]
        self._sealed_chunk = chunk_size + TAG_BYTES
        del self._buffer[:HEADER_BYTES]
        return True

    def _open(self, sealed_chunk: bytes, *, last: bool) -> bytes:
        assert self._header is not None
        nonce = _nonce(self._prefix, self._counter, last)
        self._counter += 1
        try:
            return self._aead.decrypt(nonce, sealed_chunk, self._header)
        except InvalidTag:
            raise DecryptionError(f"chunk {self._counter - 1} failed authentication") from None
