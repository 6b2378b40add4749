"""The server's own secrets: the master key and the access-token signing key.

Production takes both from configuration (settings refuse to start without them).
Development generates each once and keeps it in `<data dir>/secrets/` (0600) so that tokens
and encrypted rows survive a restart.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from voicechat.settings import Settings


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """Key material of one deployment. Never logged, never sent."""

    master_key: bytes
    jwt_private_key: Ed25519PrivateKey

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


def load_server_keys(settings: Settings) -> ServerKeys:
    """The keys from settings, or (development) from files in the data dir."""
    secrets_dir = settings.data_dir / "secrets"
    if settings.master_key is not None:
        master_b64 = settings.master_key.get_secret_value().encode()
    else:
        master_b64 = _read_or_create(
            secrets_dir / "master.key", base64.b64encode(secrets.token_bytes(32))
        )
    master = base64.b64decode(master_b64.strip())
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
    return ServerKeys(master_key=master, jwt_private_key=key)
