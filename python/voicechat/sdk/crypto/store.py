"""Where a device's secret state lives between runs.

The state (the Olm account, Olm and Megolm sessions, trust-on-first-use records) is one JSON
document. It is never written in the clear:

- `KeyringStore`: a random 256-bit key kept in the OS keyring (`keyring`) encrypts the
  document, which lives in a file. Keyrings are made for small secrets, not for a state that
  grows with every session, hence the split.
- `PassphraseStore`: the key is derived from a passphrase with scrypt (N=2^15, r=8, p=1, a
  random 16-byte salt per write), for machines without a keyring backend (servers, bots).
- `MemoryStore`: nothing leaves the process (tests, throwaway bots).

Files are AES-256-GCM with a fresh 96-bit nonce per write, written atomically (temporary file,
`fsync`, rename) with mode 0600; a tampered or truncated file fails to open rather than loading
a partial state.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

_AAD = b"voicechat-e2ee-store-v1"
_KEYRING_SERVICE = "voicechat-e2ee"
SCRYPT_N = 2**15


class StoreError(Exception):
    """The stored state cannot be read (wrong key or passphrase, or a damaged file)."""


class CryptoStore(Protocol):
    """Loads and saves a device's state document."""

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when nothing was saved yet."""
        ...

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state."""
        ...


class MemoryStore:
    """Keeps the state in this process only."""

    def __init__(self) -> None:
        self._saved: str | None = None

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None."""
        return None if self._saved is None else dict(json.loads(self._saved))

    def save(self, state: dict[str, Any]) -> None:
        """Keep a serialised copy (so a state that cannot be stored fails here too)."""
        self._saved = json.dumps(state)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _seal(key: bytes, state: dict[str, Any], header: dict[str, Any]) -> bytes:
    nonce = secrets.token_bytes(12)
    plaintext = json.dumps(state, separators=(",", ":")).encode()
    aad = _AAD + json.dumps(header, sort_keys=True).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, aad)
    return json.dumps(
        {"header": header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    ).encode()


def _open(key: bytes, blob: dict[str, Any]) -> dict[str, Any]:
    aad = _AAD + json.dumps(blob["header"], sort_keys=True).encode()
    try:
        nonce, ciphertext = _unb64(blob["nonce"]), _unb64(blob["ciphertext"])
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise StoreError("wrong key or passphrase, or the file was altered") from None
    return dict(json.loads(plaintext))


def _read_blob(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        blob = json.loads(raw)
        if not isinstance(blob, dict) or not isinstance(blob.get("header"), dict):
            raise ValueError("not a store file")
    except ValueError:
        raise StoreError(f"{path} is not a voicechat key store") from None
    return blob


class PassphraseStore:
    """A file encrypted with a key derived from a passphrase (scrypt, then AES-256-GCM).

    Args:
        path: the file.
        passphrase: the secret the key is derived from.
        scrypt_n: scrypt's cost parameter (a power of two); stored in the file.
    """

    def __init__(self, path: Path | str, passphrase: str, *, scrypt_n: int = SCRYPT_N) -> None:
        if not passphrase:
            raise ValueError("an empty passphrase protects nothing")
        self.path = Path(path)
        self._passphrase = passphrase.encode()
        self._scrypt_n = scrypt_n
        # Derivation is deliberately slow: derive once per salt, then reuse for every save.
        self._salt = secrets.token_bytes(16)
        self._key = self._derive(self._salt, scrypt_n)

    def _derive(self, salt: bytes, n: int) -> bytes:
        return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(self._passphrase)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None.

        Raises:
            StoreError: wrong passphrase or damaged file.
        """
        blob = _read_blob(self.path)
        if blob is None:
            return None
        header = blob["header"]
        if header.get("kdf") != "scrypt":
            raise StoreError(f"{self.path} is not a passphrase store")
        try:
            salt, n = _unb64(header["salt"]), int(header["n"])
            key = self._derive(salt, n)
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{self.path} has a damaged header") from None
        state = _open(key, blob)
        self._salt, self._scrypt_n, self._key = salt, n, key
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Encrypt and replace the file."""
        header = {"v": 1, "kdf": "scrypt", "n": self._scrypt_n, "r": 8, "p": 1}
        header["salt"] = _b64(self._salt)
        _write_atomically(self.path, _seal(self._key, state, header))


def keyring_available() -> bool:
    """Whether `keyring` has a usable backend here (not its fail or null backend)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return False
    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring | null.Keyring)


class KeyringStore:
    """A file encrypted with a random key kept in the OS keyring.

    Args:
        path: the file.
        account: the keyring entry's name (e.g. the user and server the device belongs to).
    """

    def __init__(self, path: Path | str, account: str) -> None:
        self.path = Path(path)
        self.account = account

    def _key(self, *, create: bool) -> bytes | None:
        import keyring

        stored = keyring.get_password(_KEYRING_SERVICE, self.account)
        if stored is not None:
            return _unb64(stored)
        if not create:
            return None
        key = secrets.token_bytes(32)
        keyring.set_password(_KEYRING_SERVICE, self.account, _b64(key))
        return key

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None.

        Raises:
            StoreError: the keyring lost the key, or the file is damaged.
        """
        blob = _read_blob(self.path)
        if blob is None:
            return None
        key = self._key(create=False)
        if key is None:
            raise StoreError(f"the keyring has no key for {self.account!r}")
        return _open(key, blob)

    def save(self, state: dict[str, Any]) -> None:
        """Encrypt and replace the file."""
        key = self._key(create=True)
        assert key is not None
        _write_atomically(self.path, _seal(key, state, {"v": 1, "kdf": "keyring"}))


def default_store(path: Path | str, account: str, passphrase: str | None = None) -> CryptoStore:
    """The OS keyring when it has a backend, else a passphrase-protected file.

    Raises:
        StoreError: no keyring backend and no passphrase.
    """
    if keyring_available():
        return KeyringStore(path, account)
    if passphrase is None:
        raise StoreError("no OS keyring here: give a passphrase to protect the key store")
    return PassphraseStore(path, passphrase)
