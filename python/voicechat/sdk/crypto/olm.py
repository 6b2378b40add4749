"""This device's Olm side: its identity keys and signatures, its one-time keys on the server,
and the Olm sessions with other devices that carry room keys (to-device messages).

:class:`~voicechat.sdk.crypto.machine.Crypto` owns one :class:`OlmDevice`; docs/e2ee.md gives
the wire shapes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import vodozemac

from voicechat.e2ee.signing import canonical_json
from voicechat.sdk.crypto.trust import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device, verify_signature

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)

ENCRYPTED_TYPE = "m.room.encrypted"
# vodozemac keeps at most 50 one-time keys; keeping half on the server leaves room for the
# keys of sessions not yet started (as Matrix clients do).
ONE_TIME_KEY_TARGET = 25
MAX_DEVICES_PER_REQUEST = 400
MAX_USERS_PER_REQUEST = 100
MAX_REMEMBERED_PRE_KEYS = 10_000


@dataclass(slots=True)
class Rejection:
    """A to-device message or key this device refused, and why (for tests and logs)."""

    reason: str
    sender_user_id: str | None
    type: str
    at: float = field(default_factory=time.time)


class Replayed(Exception):
    """An Olm pre-key message this device has already seen."""


def b64(data: bytes) -> str:
    """Padded base64, as the wire carries ciphertext bodies."""
    return base64.b64encode(data).decode()


class OlmDevice:
    """This device's account and its Olm sessions with other devices.

    Args:
        client: the logged-in client (key uploads, claims, to-device sends).
        save: persists the device's state (after keys are published or ratchets move).
        reject: records a refused key.
    """

    def __init__(
        self,
        client: Client,
        *,
        save: Callable[[], None],
        reject: Callable[[Rejection], None],
    ) -> None:
        self._client = client
        self._save = save
        self._reject = reject
        self.account = vodozemac.Account()
        self.user_id = ""
        self.device_id = ""
        # By the other device's curve25519 key, the most recently working session first.
        self.sessions: dict[str, list[vodozemac.Session]] = {}
        self.seen_pre_keys: dict[str, None] = {}

    def create(self, user_id: str, device_id: str | None) -> None:
        """A new device for this user (no stored state)."""
        self.user_id = user_id
        self.device_id = device_id or secrets.token_hex(5).upper()
        self.account = vodozemac.Account()

    async def publish(self) -> None:
        """Upload the device keys and a fallback key, then top up the one-time keys."""
        # vodozemac 0.10's stubs omit the fallback-key API the extension has.
        self.account.generate_fallback_key()  # type: ignore[attr-defined]
        body: dict[str, Any] = {"device_keys": self.device_keys()}
        fallback: dict[str, vodozemac.Curve25519PublicKey] = self.account.fallback_key  # type: ignore[attr-defined]
        if fallback:
            key_id, key = next(iter(fallback.items()))
            body["fallback_key"] = {
                "key_id": key_id,
                "key": key.to_base64(),
                "signature": self.signed_key(key_id, key.to_base64(), fallback=True),
            }
        counts = await self._client._request("POST", "/keys/upload", json=body)
        self.account.mark_keys_as_published()
        self._save()
        await self.top_up(counts)

    @property
    def identity_key(self) -> str:
        """This device's curve25519 identity key."""
        return str(self.account.curve25519_key.to_base64())

    @property
    def signing_key(self) -> str:
        """This device's ed25519 signing key."""
        return str(self.account.ed25519_key.to_base64())

    def sign(self, obj: dict[str, Any]) -> str:
        return str(self.account.sign(canonical_json(obj)).to_base64())

    def device_keys(self) -> dict[str, Any]:
        unsigned = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {"curve25519": self.identity_key, "ed25519": self.signing_key},
        }
        return {**unsigned, "signature": self.sign(unsigned)}

    def signed_key(self, key_id: str, key: str, *, fallback: bool) -> str:
        return self.sign(
            {
                "device_id": self.device_id,
                "fallback": fallback,
                "key": key,
                "key_id": key_id,
                "user_id": self.user_id,
            }
        )

    async def top_up(self, counts: dict[str, Any] | None = None) -> None:
        if counts is None:
            counts = await self._client._request(
                "POST", "/keys/upload", json={"device_id": self.device_id}
            )
        stored = int(counts["one_time_key_counts"].get("signed_curve25519", 0))
        if stored >= ONE_TIME_KEY_TARGET:
            return
        self.account.generate_one_time_keys(ONE_TIME_KEY_TARGET - stored)
        keys = {
            key_id: {
                "key": key.to_base64(),
                "signature": self.signed_key(key_id, key.to_base64(), fallback=False),
            }
            for key_id, key in self.account.one_time_keys.items()
        }
        # Published only once the server has them; unpublished keys are sent again next time.
        await self._client._request(
            "POST", "/keys/upload", json={"device_id": self.device_id, "one_time_keys": keys}
        )
        self.account.mark_keys_as_published()
        self._save()

    async def ensure_sessions(self, devices: list[Device]) -> None:
        """Start Olm sessions with devices that have none, from claimed one-time keys."""
        missing = [d for d in devices if d.curve25519 not in self.sessions]
        if not missing:
            return
        wanted: dict[str, list[str]] = {}
        for device in missing:
            wanted.setdefault(device.user_id, []).append(device.device_id)
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        users = sorted(wanted)
        for start in range(0, len(users), 100):
            part = {u: wanted[u] for u in users[start : start + 100]}
            answer = await self._client._request(
                "POST", "/keys/claim", json={"one_time_keys": part}
            )
            for user_id, per_device in answer["one_time_keys"].items():
                claimed.setdefault(user_id, {}).update(per_device)
        for device in missing:
            key = claimed.get(device.user_id, {}).get(device.device_id)
            if key is None:
                log.warning("no one-time key for %s/%s", device.user_id, device.device_id)
                continue
            signed = {
                "device_id": device.device_id,
                "fallback": bool(key.get("fallback")),
                "key": key.get("key"),
                "key_id": key.get("key_id"),
                "user_id": device.user_id,
                "signature": key.get("signature"),
            }
            if not isinstance(key.get("key"), str) or not verify_signature(signed, device.ed25519):
                self._reject(Rejection("bad_one_time_key", device.user_id, "claim"))
                continue
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(device.curve25519),
                vodozemac.Curve25519PublicKey.from_base64(key["key"]),
            )
            self.sessions[device.curve25519] = [session]

    def encrypt(self, device: Device, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions[device.curve25519][0]
        plaintext = {
            **payload,
            "sender": self.user_id,
            "sender_device": self.device_id,
            "keys": {"ed25519": self.signing_key},
            "recipient": device.user_id,
            "recipient_keys": {"ed25519": device.ed25519},
        }
        message_type, body = session.encrypt(canonical_json(plaintext)).to_parts()
        return {
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.identity_key,
            "ciphertext": {device.curve25519: {"type": message_type, "body": b64(body)}},
        }

    def decrypt(self, sender_key: str, message_type: int, body: bytes) -> bytes:
        """Decrypt an Olm message from `sender_key`.

        Raises:
            Replayed: a pre-key message seen before.
            ValueError: no session decrypts it.
        """
        message = vodozemac.AnyOlmMessage.from_parts(message_type, body)
        sessions = self.sessions.get(sender_key, [])
        pre_key = message.to_pre_key() if message_type == 0 else None
        for session in sessions:
            if pre_key is not None and not session.session_matches(pre_key):
                continue
            try:
                plaintext = session.decrypt(message)
            except ValueError:
                continue
            sessions.remove(session)
            sessions.insert(0, session)
            return plaintext
        if pre_key is None:
            raise ValueError("no Olm session decrypts this message")
        # vodozemac forgets a one-time key once used, but a fallback key stays valid: remember
        # each pre-key message so a replay through the fallback key is refused too.
        digest = hashlib.sha256(body).hexdigest()
        if digest in self.seen_pre_keys:
            raise Replayed
        session, plaintext = self.account.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
        )
        self.seen_pre_keys[digest] = None
        while len(self.seen_pre_keys) > MAX_REMEMBERED_PRE_KEYS:
            del self.seen_pre_keys[next(iter(self.seen_pre_keys))]
        self.sessions.setdefault(sender_key, []).insert(0, session)
        return plaintext

    async def send(self, devices: list[Device], payload: dict[str, Any]) -> None:
        await self.ensure_sessions(devices)
        ready = [d for d in devices if d.curve25519 in self.sessions]
        # The server takes at most 100 users and 500 devices per transaction.
        batches: list[dict[str, dict[str, Any]]] = [{}]
        count = 0
        for device in ready:
            batch = batches[-1]
            if count >= MAX_DEVICES_PER_REQUEST or (
                device.user_id not in batch and len(batch) >= MAX_USERS_PER_REQUEST
            ):
                batch, count = {}, 0
                batches.append(batch)
            batch.setdefault(device.user_id, {})[device.device_id] = self.encrypt(device, payload)
            count += 1
        # Olm ratchets advanced: persist before the server sees the ciphertexts.
        self._save()
        for batch in batches:
            if batch:
                await self._client._request(
                    "PUT",
                    f"/sendToDevice/{secrets.token_hex(12)}",
                    json={"type": ENCRYPTED_TYPE, "messages": batch},
                )
