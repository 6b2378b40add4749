"""Canonical JSON and Ed25519 signatures over it, as devices make them.

A signed object is a JSON object whose `signature` field is the unpadded base64 Ed25519
signature of the canonical JSON of the object without that field: keys sorted, no spaces,
UTF-8. The same rule serves device keys and one-time keys; docs/e2ee.md gives the shapes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical_json(value: Any) -> bytes:
    """The bytes a signature covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_key(text: str, length: int = 32) -> bytes | None:
    """An unpadded (or padded) base64 key of `length` bytes, or None."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length else None


def verify_signed(obj: dict[str, Any], ed25519_key: str) -> bool:
    """Whether `obj["signature"]` is `ed25519_key`'s signature over the rest of `obj`."""
    signature = obj.get("signature")
    key = decode_key(ed25519_key)
    if not isinstance(signature, str) or key is None:
        return False
    raw_signature = decode_key(signature, 64)
    if raw_signature is None:
        return False
    unsigned = {k: v for k, v in obj.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(raw_signature, canonical_json(unsigned))
    except (InvalidSignature, ValueError):
        return False
    return True
