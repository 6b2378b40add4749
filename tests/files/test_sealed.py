"""The chunked AES-256-GCM object format: round trips, and every way of tampering fails."""

from __future__ import annotations

import secrets
import struct
from uuid import uuid4

import pytest

from voicechat.crypto import DecryptionError
from voicechat.server_keys import MasterKeys, MasterKeyUnavailable
from voicechat.storage.sealed import (
    HEADER_BYTES,
    TAG_BYTES,
    StreamOpener,
    StreamSealer,
    new_object_key,
    sealed_size,
    unwrap_object_key,
    wrap_object_key,
)

CHUNK = 16


def _seal(key: bytes, plaintext: bytes, pieces: int = 3) -> bytes:
    sealer = StreamSealer(key, chunk_size=CHUNK)
    step = max(1, len(plaintext) // pieces)
    out = b"".join(sealer.update(plaintext[i : i + step]) for i in range(0, len(plaintext), step))
    return out + sealer.finish()


def _open(key: bytes, sealed: bytes, step: int = 7) -> bytes:
    opener = StreamOpener(key)
    out = b"".join(opener.update(sealed[i : i + step]) for i in range(0, len(sealed), step))
    return out + opener.finish()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 3])
@pytest.mark.parametrize("step", [1, 5, 1000])
def test_round_trip_whatever_the_pieces(size: int, step: int) -> None:
    key = new_object_key()
    plaintext = secrets.token_bytes(size)
    sealed = _seal(key, plaintext)
    assert len(sealed) == sealed_size(size, CHUNK)
    assert _open(key, sealed, step) == plaintext


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    header, body = sealed[:HEADER_BYTES], sealed[HEADER_BYTES:]
    size = CHUNK + TAG_BYTES
    return header, [body[i : i + size] for i in range(0, len(body), size)]


def test_truncation_at_a_chunk_boundary_fails() -> None:
    key = new_object_key()
    header, chunks = _chunks(_seal(key, secrets.token_bytes(4 * CHUNK)))
    with pytest.raises(DecryptionError):
        _open(key, header + b"".join(chunks[:-1]))


def test_reordered_chunks_fail() -> None:
    key = new_object_key()
    header, chunks = _chunks(_seal(key, secrets.token_bytes(4 * CHUNK)))
    chunks[0], chunks[1] = chunks[1], chunks[0]
    with pytest.raises(DecryptionError):
        _open(key, header + b"".join(chunks))


def test_appended_bytes_fail() -> None:
    key = new_object_key()
    sealed = _seal(key, b"complete")
    with pytest.raises(DecryptionError):
        _open(key, sealed + b"x" * (CHUNK + TAG_BYTES))


def test_flipped_bit_fails() -> None:
    key = new_object_key()
    sealed = bytearray(_seal(key, secrets.token_bytes(3 * CHUNK)))
    sealed[HEADER_BYTES + 5] ^= 1
    with pytest.raises(DecryptionError):
        _open(key, bytes(sealed))


def test_changed_header_fails() -> None:
    key = new_object_key()
    sealed = _seal(key, secrets.token_bytes(CHUNK))
    other_prefix = sealed[:8] + secrets.token_bytes(7) + sealed[HEADER_BYTES:]
    with pytest.raises(DecryptionError):
        _open(key, other_prefix)
    bad_magic = b"XXXX" + sealed[4:]
    with pytest.raises(DecryptionError):
        _open(key, bad_magic)
    other_size = sealed[:4] + struct.pack(">I", CHUNK * 2) + sealed[8:]
    with pytest.raises(DecryptionError):
        _open(key, other_size)


def test_wrong_key_fails() -> None:
    sealed = _seal(new_object_key(), b"secret")
    with pytest.raises(DecryptionError):
        _open(new_object_key(), sealed)


def test_too_short_fails() -> None:
    with pytest.raises(DecryptionError):
        _open(new_object_key(), b"VCS1")


def test_wrapped_key_is_bound_to_its_file_and_master_key() -> None:
    master = MasterKeys(secrets.token_bytes(32))
    file_id = uuid4()
    key = new_object_key()
    key_id, wrapped = wrap_object_key(master, file_id, key)
    assert key_id == master.current_id
    assert key not in wrapped
    assert unwrap_object_key(master, file_id, wrapped, key_id=key_id) == key
    with pytest.raises(DecryptionError):
        unwrap_object_key(master, uuid4(), wrapped, key_id=key_id)
    with pytest.raises(MasterKeyUnavailable):
        unwrap_object_key(MasterKeys(secrets.token_bytes(32)), file_id, wrapped, key_id=key_id)
    # The key id is authenticated: a row claiming to be wrapped before ids existed fails.
    with pytest.raises(DecryptionError):
        unwrap_object_key(master, file_id, wrapped, key_id=None)


def test_a_previous_master_key_still_unwraps_what_it_wrapped() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    file_id, key = uuid4(), new_object_key()
    key_id, wrapped = wrap_object_key(MasterKeys(old), file_id, key)
    rotating = MasterKeys(new, old)
    assert unwrap_object_key(rotating, file_id, wrapped, key_id=key_id) == key
    assert wrap_object_key(rotating, file_id, key)[0] == rotating.current_id != key_id
    with pytest.raises(MasterKeyUnavailable):
        unwrap_object_key(MasterKeys(new), file_id, wrapped, key_id=key_id)


def test_each_object_gets_its_own_nonce_prefix() -> None:
    key = new_object_key()
    assert _seal(key, b"same")[:HEADER_BYTES] != _seal(key, b"same")[:HEADER_BYTES]
