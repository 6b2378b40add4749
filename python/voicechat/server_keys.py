"""The server's own secrets: the master keyring and the access-token signing key.

Production takes them from configuration (settings refuse to start without the master key and
the signing key). Development generates each once and keeps it in `<data dir>/secrets/` (0600)
so that tokens and encrypted rows survive a restart.

The master keyring is the current master key, which seals everything new, and, while a
rotation runs (`voicechat admin rotate-master-key`, docs/backup.md), the previous one, which
still opens what it sealed. Every sealed value is stored with the id of the key that sealed it
(crypto.master_key_id) and opened with that key alone.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from voicechat.crypto import DecryptionError, derive_key, master_key_id, open_sealed, seal
from voicechat.settings import Settings

log = logging.getLogger(__name__)

MASTER_KEY_FILE = "master.key"
PREVIOUS_MASTER_KEY_FILE = "master.key.previous"
# A development server re-reads its key files when it meets a key id it does not know (a
# rotation run beside it), at most this often.
_RELOAD_INTERVAL_SECONDS = 2.0


class MasterKeyUnavailable(Exception):
    """A value was sealed under a master key this server is not configured with."""

    def __init__(self, key_id: bytes) -> None:
        super().__init__(f"sealed under master key {key_id.hex()}, which is not configured")
        self.key_id = key_id


def _bound(context: bytes, key_id: bytes) -> bytes:
    # Contexts are fixed-length ids, so appending the key id is unambiguous.
    return context + b"|master-key:" + key_id


class MasterKeys:
    """The master keyring: seals under the current key, opens under the key a value names."""

    def __init__(
        self,
        current: bytes,
        previous: bytes | None = None,
        *,
        reload: Callable[[], tuple[bytes, bytes | None]] | None = None,
    ) -> None:
        """`reload`, if given, re-reads both keys (development's key files)."""
        self._lock = threading.Lock()
        self._reload = reload
        # The first unknown id re-reads at once; later ones at most every interval.
        self._reloaded_at = -_RELOAD_INTERVAL_SECONDS
        self._set(current, previous)

    def _set(self, current: bytes, previous: bytes | None) -> None:
        if len(current) != 32 or (previous is not None and len(previous) != 32):
            raise ValueError("a master key is 32 bytes")
        self._current = current
        self._current_id = master_key_id(current)
        self._previous = None if previous == current else previous
        self._keys = {self._current_id: current}
        if self._previous is not None:
            self._keys[master_key_id(self._previous)] = self._previous

    @property
    def current(self) -> bytes:
        """The key that seals everything new."""
        return self._current

    @property
    def current_id(self) -> bytes:
        """The id of the current key."""
        return self._current_id

    @property
    def previous(self) -> bytes | None:
        """The key being rotated away from, if one is configured."""
        return self._previous

    @property
    def previous_id(self) -> bytes | None:
        """The id of the previous key, if one is configured."""
        return None if self._previous is None else master_key_id(self._previous)

    def knows(self, key_id: bytes) -> bool:
        """Whether a value sealed under `key_id` can be opened here."""
        return self._lookup(key_id) is not None

    def seal(self, purpose: str, plaintext: bytes, *, context: bytes) -> tuple[bytes, bytes]:
        """Seal under the current key's subkey for `purpose`; returns (key id, sealed)."""
        key, key_id = self._current, self._current_id
        return key_id, seal(derive_key(key, purpose), plaintext, context=_bound(context, key_id))

    def open(self, purpose: str, sealed: bytes, *, key_id: bytes | None, context: bytes) -> bytes:
        """Reverse :meth:`seal`; a `key_id` of None is a value sealed before key ids existed
        (no id in its associated data), tried under every configured key.

        Raises:
            MasterKeyUnavailable: the key `key_id` names is not configured.
            DecryptionError: another row's value, tampered bytes, or (no key id) no configured
                key opens it.
        """
        if key_id is None:
            for key in (self._current, self._previous):
                if key is None:
                    continue
                try:
                    return open_sealed(derive_key(key, purpose), sealed, context=context)
                except DecryptionError:
                    continue
            raise DecryptionError("no configured master key opens it")
        key = self._lookup(key_id)
        if key is None:
            raise MasterKeyUnavailable(key_id)
        return open_sealed(derive_key(key, purpose), sealed, context=_bound(context, key_id))

    def _lookup(self, key_id: bytes) -> bytes | None:
        key = self._keys.get(key_id)
        if key is not None or self._reload is None:
            return key
        with self._lock:
            if time.monotonic() - self._reloaded_at >= _RELOAD_INTERVAL_SECONDS:
                self._reloaded_at = time.monotonic()
                try:
                    current, previous = self._reload()
                    if master_key_id(current) != self._current_id:
                        log.warning("the master key changed on disk: now sealing under it")
                    self._set(current, previous)
                except (OSError, ValueError):
                    log.exception("could not re-read the master key files")
        return self._keys.get(key_id)

    def __repr__(self) -> str:
        return "MasterKeys(<redacted>)"


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """Key material of one deployment. Never logged, never sent."""

    master_keys: MasterKeys
    jwt_private_key: Ed25519PrivateKey

    @property
    def master_key(self) -> bytes:
        """The current master key."""
        return self.master_keys.current

    @property
    def jwt_public_key(self) -> Ed25519PublicKey:
        """The key that verifies access tokens."""
        return self.jwt_private_key.public_key()

    def __repr__(self) -> str:
        return "ServerKeys(<redacted>)"


def _read_or_create(path: Path, make: bytes) -> bytes:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another process created it between our check and open: use theirs.
            return path.read_bytes()
        with os.fdopen(fd, "wb") as out:
            out.write(make)
    return path.read_bytes()


def decode_master_key(text: str | bytes) -> bytes:
    """A master key from its base64 form.

    Raises:
        ValueError: not base64 of 32 bytes.
    """
    raw = base64.b64decode(text.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"a master key is base64 of 32 bytes, got {len(raw)}")
    return raw


def _master_key_files(secrets_dir: Path) -> tuple[bytes, bytes | None]:
    current = decode_master_key(
        _read_or_create(secrets_dir / MASTER_KEY_FILE, base64.b64encode(secrets.token_bytes(32)))
    )
    previous_file = secrets_dir / PREVIOUS_MASTER_KEY_FILE
    previous = decode_master_key(previous_file.read_bytes()) if previous_file.exists() else None
    return current, previous


def load_master_keys(settings: Settings) -> MasterKeys:
    """The keyring from settings (`VOICECHAT_MASTER_KEY`, `VOICECHAT_MASTER_KEY_PREVIOUS`), or
    (development) from `master.key` and `master.key.previous` in the data dir."""
    if settings.master_key is not None:
        configured = settings.master_key_previous
        return MasterKeys(
            decode_master_key(settings.master_key.get_secret_value()),
            None if configured is None else decode_master_key(configured.get_secret_value()),
        )
    secrets_dir = settings.data_dir / "secrets"
    current, previous = _master_key_files(secrets_dir)
    return MasterKeys(current, previous, reload=lambda: _master_key_files(secrets_dir))


def load_server_keys(settings: Settings) -> ServerKeys:
    """The keys from settings, or (development) from files in the data dir."""
    master_keys = load_master_keys(settings)
    secrets_dir = settings.data_dir / "secrets"
    if settings.jwt_private_key is not None:
        pem = settings.jwt_private_key.get_secret_value().encode()
    else:
        pem = _read_or_create(
            secrets_dir / "jwt_ed25519.pem",
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT signing key must be Ed25519")
    return ServerKeys(master_keys=master_keys, jwt_private_key=key)
