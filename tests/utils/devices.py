"""A test device: a vodozemac account that signs its keys the way docs/e2ee.md says."""

from __future__ import annotations

import secrets
from typing import Any

import vodozemac

from voicechat.e2ee.signing import canonical_json


class TestDevice:
    """One client install's identity and keys."""

    __test__ = False  # not a pytest class

    def __init__(self, user_id: str, device_id: str | None = None) -> None:
        self.user_id = user_id
        self.device_id = device_id or secrets.token_hex(5).upper()
        self.account = vodozemac.Account()

    @property
    def curve25519(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    @property
    def ed25519(self) -> str:
        return str(self.account.ed25519_key.to_base64())

    def sign(self, obj: dict[str, Any]) -> str:
        return str(self.account.sign(canonical_json(obj)).to_base64())

    def device_keys(self) -> dict[str, Any]:
        unsigned = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {"curve25519": self.curve25519, "ed25519": self.ed25519},
        }
        return {**unsigned, "signature": self.sign(unsigned)}

    def one_time_keys(self, count: int, *, fallback: bool = False) -> dict[str, dict[str, str]]:
        self.account.generate_one_time_keys(count)
        signed = {}
        for key_id, key in self.account.one_time_keys.items():
            payload = {
                "device_id": self.device_id,
                "fallback": fallback,
                "key": key.to_base64(),
                "key_id": key_id,
                "user_id": self.user_id,
            }
            signed[key_id] = {"key": key.to_base64(), "signature": self.sign(payload)}
        self.account.mark_keys_as_published()
        return signed

    def fallback_key(self) -> dict[str, str]:
        self.account.generate_fallback_key()
        key_id, key = next(iter(self.account.fallback_key.items()))
        payload = {
            "device_id": self.device_id,
            "fallback": True,
            "key": key.to_base64(),
            "key_id": key_id,
            "user_id": self.user_id,
        }
        self.account.mark_keys_as_published()
        return {"key_id": key_id, "key": key.to_base64(), "signature": self.sign(payload)}
