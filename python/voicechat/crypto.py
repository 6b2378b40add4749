"""Symmetric primitives for data at rest, all keyed by (or wrapped under) the master key.

AES-256-GCM with a random 96-bit nonce per message; the nonce is stored in front of the
ciphertext. Associated data binds a ciphertext to where it belongs (a user id, an object key)
so that a row copied elsewhere fails to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """The ciphertext is corrupt, or was sealed under another key or context."""


def seal(key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt and authenticate `plaintext`; returns nonce ‖ ciphertext ‖ tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_sealed(key: bytes, sealed: bytes, *, context: bytes) -> bytes:
    """Reverse :func:`seal`.

    Raises:
        DecryptionError: wrong key, wrong context, or tampered bytes.
    """
    if len(sealed) < NONCE_BYTES + 16:
        raise DecryptionError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
    except InvalidTag:
        raise DecryptionError("authentication failed") from None


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """A subkey for one purpose, so that no two uses share key material (HKDF-like, HMAC)."""
    return hmac.new(master_key, b"voicechat:" + purpose.encode(), hashlib.sha256).digest()


KEY_ID_BYTES = 8


def master_key_id(master_key: bytes) -> bytes:
    """The public name of a master key, recorded beside what it seals (8 bytes).

    A keyed hash of a fixed label: it names the key without revealing anything of it, and two
    keys collide with probability 2^-64.
    """
    return derive_key(master_key, "master-key-id")[:KEY_ID_BYTES]


def keyed_hash(key: bytes, value: bytes) -> bytes:
    """HMAC-SHA256: stored in place of short secrets (backup codes) so a database dump alone
    cannot brute-force them."""
    return hmac.new(key, value, hashlib.sha256).digest()


def token_hash(token: str) -> str:
    """SHA-256 hex of a high-entropy token (256-bit refresh tokens need no key or salt)."""
    return hashlib.sha256(token.encode()).hexdigest()
