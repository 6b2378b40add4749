"""Where a device's keys rest: an encrypted file under a passphrase or an OS-keyring key."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from voicechat.sdk.crypto import (
    KeyringStore,
    PassphraseStore,
    StoreError,
    default_store,
    keyring_available,
)

STATE = {"account": "secret pickle", "n": 1}


class _MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


def _use_keyring(backend: KeyringBackend) -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def os_keyring() -> Iterator[_MemoryKeyring]:
    backend = _MemoryKeyring()
    for _ in _use_keyring(backend):
        yield backend


@pytest.fixture
def no_keyring() -> Iterator[None]:
    yield from _use_keyring(fail.Keyring())


def test_a_passphrase_store_round_trips_and_hides_the_state(tmp_path: Path) -> None:
    path = tmp_path / "device.keys"
    store = PassphraseStore(path, "correct horse", scrypt_n=2**10)
    assert store.load() is None
    store.save(STATE)
    assert b"secret pickle" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PassphraseStore(path, "correct horse", scrypt_n=2**10).load() == STATE


def test_a_wrong_passphrase_or_a_tampered_file_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "device.keys"
    PassphraseStore(path, "correct horse", scrypt_n=2**10).save(STATE)
    with pytest.raises(StoreError):
        PassphraseStore(path, "wrong horse", scrypt_n=2**10).load()
    blob = json.loads(path.read_text())
    ciphertext = bytearray(base64.b64decode(blob["ciphertext"]))
    ciphertext[5] ^= 1
    blob["ciphertext"] = base64.b64encode(ciphertext).decode()
    path.write_text(json.dumps(blob))
    with pytest.raises(StoreError):
        PassphraseStore(path, "correct horse", scrypt_n=2**10).load()
    path.write_text("not a store")
    with pytest.raises(StoreError):
        PassphraseStore(path, "correct horse", scrypt_n=2**10).load()


def test_the_keyring_holds_the_key_and_the_file_the_state(
    tmp_path: Path, os_keyring: _MemoryKeyring
) -> None:
    assert keyring_available()
    path = tmp_path / "device.keys"
    store = default_store(path, "alice@chat.example")
    assert isinstance(store, KeyringStore)
    store.save(STATE)
    assert b"secret pickle" not in path.read_bytes()
    assert list(os_keyring.entries) == [("voicechat-e2ee", "alice@chat.example")]
    assert KeyringStore(path, "alice@chat.example").load() == STATE
    os_keyring.entries.clear()
    with pytest.raises(StoreError):
        KeyringStore(path, "alice@chat.example").load()


@pytest.mark.usefixtures("no_keyring")
def test_without_a_keyring_a_passphrase_is_required(tmp_path: Path) -> None:
    assert not keyring_available()
    with pytest.raises(StoreError):
        default_store(tmp_path / "k", "alice")
    assert isinstance(default_store(tmp_path / "k", "alice", "a passphrase"), PassphraseStore)
