"""Other users' devices as this device knows them: self-signed keys, trust on first use.

The server hands out device keys but cannot be trusted to hand out the right ones (Albrecht et
al. 2022). A device is used only when its keys carry its own valid Ed25519 signature over the
same user and device id the server filed them under. The first keys seen for a device are
remembered; later, different keys for it are refused until the application accepts them.
Every device seen for the first time is reported, so that nobody is added to a conversation
silently; whether the user compares fingerprints is up to the application.
"""

from __future__ import annotations

import base64
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import vodozemac

from voicechat.e2ee.signing import canonical_json

OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"

TrustKind = Literal["new_device", "keys_changed", "invalid_signature", "device_removed"]


def fingerprint(ed25519_key: str) -> str:
    """An Ed25519 key as users compare it: its base64 in groups of four."""
    text = ed25519_key.rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def verify_signature(obj: dict[str, Any], ed25519_key: str) -> bool:
    """Whether `obj["signature"]` is `ed25519_key`'s signature over the rest (docs/e2ee.md)."""
    signature = obj.get("signature")
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in obj.items() if k != "signature"}
    try:
        key = vodozemac.Ed25519PublicKey.from_base64(ed25519_key)
        parsed = vodozemac.Ed25519Signature.from_base64(signature)
        key.verify_signature(canonical_json(unsigned), parsed)
    except (ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Device:
    """A device whose keys verified: who it belongs to and its identity keys."""

    user_id: str
    device_id: str
    curve25519: str
    ed25519: str

    @property
    def fingerprint(self) -> str:
        """The signing key, grouped for comparison by people."""
        return fingerprint(self.ed25519)


@dataclass(frozen=True, slots=True)
class TrustEvent:
    """Something the application should show the user about someone's devices.

    `new_device`: a device seen for the first time (`first_of_user` when it is the user's
    first known device; otherwise a known user added a device: worth a warning).
    `keys_changed`: a known device now presents other keys; it is not used until
    :meth:`DeviceBook.accept` is called. `invalid_signature`: keys not signed by the device
    itself (a forged device); never used. `device_removed`: a known device is gone.
    """

    kind: TrustKind
    user_id: str
    device_id: str
    fingerprint: str | None
    first_of_user: bool = False
    at: float = field(default_factory=time.time)


def _parse(user_id: str, device_id: str, raw: Any) -> Device | None:
    """The device if its keys are well formed and signed by themselves, else None."""
    if not isinstance(raw, dict):
        return None
    keys = raw.get("keys")
    if (
        raw.get("user_id") != user_id
        or raw.get("device_id") != device_id
        or not isinstance(keys, dict)
        or not isinstance(keys.get("curve25519"), str)
        or not isinstance(keys.get("ed25519"), str)
    ):
        return None
    if not verify_signature(raw, keys["ed25519"]):
        return None
    try:
        vodozemac.Curve25519PublicKey.from_base64(keys["curve25519"])
    except ValueError:
        return None
    return Device(user_id, device_id, keys["curve25519"], keys["ed25519"])


class DeviceBook:
    """Known devices of other users (and this user's other devices), with TOFU records."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        # user id → device id → first keys seen ("pinned"); survives restarts.
        self._pinned: dict[str, dict[str, dict[str, str]]] = state.get("pinned", {})
        # Devices whose changed keys are waiting for acceptance.
        self._blocked: dict[str, dict[str, dict[str, str]]] = state.get("blocked", {})
        self.current: dict[str, dict[str, Device]] = {}
        self.events: list[TrustEvent] = []

    def to_state(self) -> dict[str, Any]:
        """What to persist."""
        return {"pinned": self._pinned, "blocked": self._blocked}

    def update(self, user_id: str, devices: dict[str, Any]) -> list[TrustEvent]:
        """Take a `/keys/query` answer for one user; returns what is new to report."""
        found: list[TrustEvent] = []
        usable: dict[str, Device] = {}
        pinned = self._pinned.setdefault(user_id, {})
        first_of_user = not pinned
        for device_id, raw in devices.items():
            device = _parse(user_id, device_id, raw)
            if device is None:
                found.append(TrustEvent("invalid_signature", user_id, device_id, None))
                continue
            keys = {"curve25519": device.curve25519, "ed25519": device.ed25519}
            known = pinned.get(device_id)
            if known is None:
                pinned[device_id] = keys
                found.append(
                    TrustEvent("new_device", user_id, device_id, device.fingerprint, first_of_user)
                )
            elif known != keys:
                blocked = self._blocked.setdefault(user_id, {})
                if blocked.get(device_id) != keys:
                    blocked[device_id] = keys
                    found.append(TrustEvent("keys_changed", user_id, device_id, device.fingerprint))
                continue
            usable[device_id] = device
        for gone in set(self.current.get(user_id, {})) - set(devices):
            found.append(TrustEvent("device_removed", user_id, gone, None))
        self.current[user_id] = usable
        # A repeated forgery is reported once per run, not on every query.
        seen = {(e.kind, e.user_id, e.device_id) for e in self.events}
        fresh = [e for e in found if (e.kind, e.user_id, e.device_id) not in seen]
        self.events.extend(fresh)
        return fresh

    def know(self, device: Device) -> None:
        """Pin a device without reporting it (this device itself)."""
        self._pinned.setdefault(device.user_id, {}).setdefault(
            device.device_id, {"curve25519": device.curve25519, "ed25519": device.ed25519}
        )

    def accept(self, user_id: str, device_id: str) -> None:
        """Trust a device's changed keys (after the user compared fingerprints)."""
        keys = self._blocked.get(user_id, {}).pop(device_id, None)
        if keys is not None:
            self._pinned.setdefault(user_id, {})[device_id] = keys

    def by_curve_key(self, curve25519: str) -> Device | None:
        """The usable device with this identity key."""
        for devices in self.current.values():
            for device in devices.values():
                if device.curve25519 == curve25519:
                    return device
        return None

    def devices(self, user_id: str) -> list[Device]:
        """A user's usable devices (as of the last query)."""
        return sorted(self.current.get(user_id, {}).values(), key=lambda d: d.device_id)


def event_dict(event: TrustEvent) -> dict[str, Any]:
    """A trust event as plain data (for logs and bots)."""
    return asdict(event)


def b64(data: bytes) -> str:
    """Standard base64 with padding (the wire form of Olm message bodies)."""
    return base64.b64encode(data).decode()
