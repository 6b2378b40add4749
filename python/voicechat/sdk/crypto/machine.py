"""A device's end-to-end encryption: Olm between devices, Megolm per encrypted channel.

docs/e2ee.md gives the wire shapes, the trust model and the rotation rules. In short:

- Each client install is a device with a vodozemac account; its identity keys and signed
  one-time keys go to `/keys/upload`, topped up from the counts the server answers with.
- A message to an encrypted channel or DM is Megolm-encrypted with this device's outbound
  session for that channel. The session key goes to every device of every recipient over Olm
  (to-device `m.room.encrypted`), and a new session starts when the set of recipient devices
  changes (a member or device joins or leaves), after 100 messages, or after 7 days.
- Room keys are accepted only from inside an Olm message, from a device whose self-signed keys
  this device verified, whose user may read the channel, and only for sessions whose Megolm
  messages then come from that same device and user. Nothing the server says is believed
  unless a device's signature or an Olm/Megolm authentication tag backs it.
- The REST inbox is the source of truth for to-device messages; gateway `to_device` events may
  only prompt an earlier :meth:`Crypto.sync`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
import vodozemac

from voicechat.e2ee.signing import canonical_json
from voicechat.sdk.crypto.store import CryptoStore, MemoryStore
from voicechat.sdk.crypto.trust import (
    MEGOLM_ALGORITHM,
    OLM_ALGORITHM,
    Device,
    DeviceBook,
    TrustEvent,
    fingerprint,
    verify_signature,
)
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Channel, Message

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)

ROOM_KEY_TYPE = "m.room_key"
ENCRYPTED_TYPE = "m.room.encrypted"
MESSAGE_TYPE = "m.room.message"
ROTATE_AFTER_MESSAGES = 100
ROTATE_AFTER_SECONDS = 7 * 24 * 3600
# vodozemac keeps at most 50 one-time keys; keeping half on the server leaves room for the
# keys of sessions not yet started (as Matrix clients do).
ONE_TIME_KEY_TARGET = 25
MAX_DEVICES_PER_REQUEST = 400
MAX_USERS_PER_REQUEST = 100
MAX_REMEMBERED_PRE_KEYS = 10_000
STATE_VERSION = 1
# The store encrypts the whole state; vodozemac's own pickle encryption adds nothing on top,
# so its key is a constant rather than a second secret to keep.
_PICKLE_KEY = bytes(32)


class CryptoError(Exception):
    """End-to-end encryption cannot proceed (e.g. the stored state is for another user)."""


@dataclass(slots=True)
class OutboundSession:
    """This device's current Megolm session for one channel."""

    session: vodozemac.GroupSession
    created_at: float
    shared_with: frozenset[tuple[str, str, str]]  # (user id, device id, curve25519)

    def expired(self, now: float) -> bool:
        return (
            self.session.message_index >= ROTATE_AFTER_MESSAGES
            or now - self.created_at >= ROTATE_AFTER_SECONDS
        )


@dataclass(slots=True)
class InboundSession:
    """A Megolm session someone shared with this device, bound to the device that sent it."""

    session: vodozemac.InboundGroupSession
    channel_id: str
    sender_user: str
    sender_device: str
    sender_key: str  # the sending device's curve25519 identity key
    signing_key: str  # and its ed25519 key


@dataclass(slots=True)
class Rejection:
    """A to-device message or key this device refused, and why (for tests and logs)."""

    reason: str
    sender_user_id: str | None
    type: str
    at: float = field(default_factory=time.time)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Crypto:
    """The end-to-end encryption of one device. Create with :meth:`Client.enable_encryption`.

    Args:
        client: the logged-in client this device belongs to.
        store: where the device's secrets persist (default: this process only).
        on_trust_event: called with every :class:`TrustEvent` (new devices, changed keys,
            forged devices) as it is found; they are also kept in :attr:`trust_events`.
    """

    def __init__(
        self,
        client: Client,
        store: CryptoStore | None = None,
        *,
        on_trust_event: Callable[[TrustEvent], None] | None = None,
    ) -> None:
        self._client = client
        self._store = store or MemoryStore()
        self._on_trust_event = on_trust_event
        self.account = vodozemac.Account()
        self.user_id = ""
        self.device_id = ""
        self._olm: dict[str, list[vodozemac.Session]] = {}
        self._outbound: dict[str, OutboundSession] = {}
        # Keyed by (sender curve25519, session id): a member who re-shares someone else's
        # session key gets a binding of their own, never the original sender's.
        self._inbound: dict[tuple[str, str], InboundSession] = {}
        self._seen_pre_keys: dict[str, None] = {}
        self._megolm_indices: dict[str, str] = {}
        self._book = DeviceBook()
        self._channels: dict[str, Channel] = {}
        self._extra_recipients: dict[str, set[str]] = {}
        # Channel recipients looked up while handling one batch of the inbox.
        self._sync_members: dict[str, set[str]] = {}
        self._message_channels: dict[str, str] = {}
        # Room keys decrypted but not yet checked because the server was unreachable.
        self._pending_room_keys: list[tuple[Device, dict[str, Any], dict[str, Any]]] = []
        self.rejected: list[Rejection] = []
        # One send or inbox read at a time: both advance ratchets and may start sessions.
        self._lock = asyncio.Lock()

    # -- identity ---------------------------------------------------------------------------

    @property
    def identity_key(self) -> str:
        """This device's curve25519 identity key."""
        return str(self.account.curve25519_key.to_base64())

    @property
    def signing_key(self) -> str:
        """This device's ed25519 signing key."""
        return str(self.account.ed25519_key.to_base64())

    @property
    def fingerprint(self) -> str:
        """This device's signing key grouped for comparison by people."""
        return fingerprint(self.signing_key)

    @property
    def trust_events(self) -> list[TrustEvent]:
        """Every trust event found so far (oldest first)."""
        return list(self._book.events)

    def devices(self, user_id: UUID | str) -> list[Device]:
        """A user's devices whose keys verified (as of the last key query)."""
        return self._book.devices(str(user_id))

    def accept_device(self, user_id: UUID | str, device_id: str) -> None:
        """Trust a device whose keys changed, after the user compared its fingerprint."""
        self._book.accept(str(user_id), device_id)
        self._save()

    def add_recipients(self, channel_id: UUID | str, user_ids: Iterable[UUID | str]) -> None:
        """Share this device's keys for a channel with these users too (beyond the users the
        server lists in `/channels/{id}/recipients`, e.g. for a server without that route).
        """
        self._extra_recipients.setdefault(str(channel_id), set()).update(str(u) for u in user_ids)

    def _sign(self, obj: dict[str, Any]) -> str:
        return str(self.account.sign(canonical_json(obj)).to_base64())

    def _device_keys(self) -> dict[str, Any]:
        unsigned = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {"curve25519": self.identity_key, "ed25519": self.signing_key},
        }
        return {**unsigned, "signature": self._sign(unsigned)}

    def _signed_key(self, key_id: str, key: str, *, fallback: bool) -> str:
        return self._sign(
            {
                "device_id": self.device_id,
                "fallback": fallback,
                "key": key,
                "key_id": key_id,
                "user_id": self.user_id,
            }
        )

    # -- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "version": STATE_VERSION,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "account": self.account.pickle(_PICKLE_KEY),
            "olm": {k: [s.pickle(_PICKLE_KEY) for s in v] for k, v in self._olm.items()},
            "outbound": {
                channel: {
                    "session": o.session.pickle(_PICKLE_KEY),
                    "created_at": o.created_at,
                    "shared_with": sorted(o.shared_with),
                }
                for channel, o in self._outbound.items()
            },
            "inbound": {
                f"{sender_key}|{session_id}": {
                    "session": i.session.pickle(_PICKLE_KEY),
                    "channel_id": i.channel_id,
                    "sender_user": i.sender_user,
                    "sender_device": i.sender_device,
                    "sender_key": i.sender_key,
                    "signing_key": i.signing_key,
                }
                for (sender_key, session_id), i in self._inbound.items()
            },
            "seen_pre_keys": list(self._seen_pre_keys),
            "megolm_indices": self._megolm_indices,
            "trust": self._book.to_state(),
        }
        self._store.save(state)

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise CryptoError("the key store is of an unknown version")
        self.user_id = state["user_id"]
        self.device_id = state["device_id"]
        self.account = vodozemac.Account.from_pickle(state["account"], _PICKLE_KEY)
        self._olm = {
            k: [vodozemac.Session.from_pickle(p, _PICKLE_KEY) for p in v]
            for k, v in state["olm"].items()
        }
        self._outbound = {
            channel: OutboundSession(
                vodozemac.GroupSession.from_pickle(o["session"], _PICKLE_KEY),
                o["created_at"],
                frozenset((x[0], x[1], x[2]) for x in o["shared_with"]),
            )
            for channel, o in state["outbound"].items()
        }
        self._inbound = {
            _inbound_key(key): InboundSession(
                vodozemac.InboundGroupSession.from_pickle(i["session"], _PICKLE_KEY),
                i["channel_id"],
                i["sender_user"],
                i["sender_device"],
                i["sender_key"],
                i["signing_key"],
            )
            for key, i in state["inbound"].items()
        }
        self._seen_pre_keys = dict.fromkeys(state["seen_pre_keys"])
        self._megolm_indices = dict(state["megolm_indices"])
        self._book = DeviceBook(state["trust"])

    # -- setup ------------------------------------------------------------------------------

    async def start(self, device_id: str | None = None) -> None:
        """Load or create the device, register it with this login session, top up keys.

        Raises:
            CryptoError: the store holds another user's device.
        """
        if self._client.user is None:
            await self._client.me()
        me = self._client.user
        if me is None or me.id is None:
            raise CryptoError("log in before enabling encryption")
        user_id = str(me.id)
        state = self._store.load()
        if state is not None:
            self._load(state)
            if self.user_id != user_id:
                raise CryptoError("the key store belongs to another user")
        else:
            self.user_id = user_id
            self.device_id = device_id or secrets.token_hex(5).upper()
            self.account = vodozemac.Account()
        # vodozemac 0.10's stubs omit the fallback-key API the extension has.
        self.account.generate_fallback_key()  # type: ignore[attr-defined]
        body: dict[str, Any] = {"device_keys": self._device_keys()}
        fallback: dict[str, vodozemac.Curve25519PublicKey] = self.account.fallback_key  # type: ignore[attr-defined]
        if fallback:
            key_id, key = next(iter(fallback.items()))
            body["fallback_key"] = {
                "key_id": key_id,
                "key": key.to_base64(),
                "signature": self._signed_key(key_id, key.to_base64(), fallback=True),
            }
        self._book.know(Device(self.user_id, self.device_id, self.identity_key, self.signing_key))
        counts = await self._client._request("POST", "/keys/upload", json=body)
        self.account.mark_keys_as_published()
        self._save()
        await self._top_up(counts)

    async def _top_up(self, counts: dict[str, Any] | None = None) -> None:
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
                "signature": self._signed_key(key_id, key.to_base64(), fallback=False),
            }
            for key_id, key in self.account.one_time_keys.items()
        }
        # Published only once the server has them; unpublished keys are sent again next time.
        await self._client._request(
            "POST", "/keys/upload", json={"device_id": self.device_id, "one_time_keys": keys}
        )
        self.account.mark_keys_as_published()
        self._save()

    # -- devices ----------------------------------------------------------------------------

    async def _query(self, user_ids: Iterable[str]) -> None:
        users = sorted(set(user_ids))
        fresh: list[TrustEvent] = []
        for start in range(0, len(users), 100):
            answer = await self._client._request(
                "POST", "/keys/query", json={"user_ids": users[start : start + 100]}
            )
            for user_id, devices in answer["devices"].items():
                if user_id in users:
                    fresh.extend(self._book.update(user_id, devices))
        if fresh:
            self._save()
            for event in fresh:
                log.warning("device trust: %s %s/%s", event.kind, event.user_id, event.device_id)
                if self._on_trust_event is not None:
                    self._on_trust_event(event)

    async def _channel(self, channel_id: str) -> Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            # Whether a channel is encrypted never changes, so one look is enough.
            channel = await self._client.channel(channel_id)
            self._channels[channel_id] = channel
        return channel

    async def is_encrypted(self, channel_id: UUID | str) -> bool:
        """Whether messages to this channel must be encrypted."""
        return (await self._channel(str(channel_id))).encrypted

    async def _members(self, channel: Channel) -> set[str]:
        """The users who may read the channel: its keys go to their devices."""
        answer = await self._client._request("GET", f"/channels/{channel.id}/recipients")
        return {str(u) for u in answer["user_ids"]} | self._extra_recipients.get(
            str(channel.id), set()
        )

    # -- Olm --------------------------------------------------------------------------------

    async def _ensure_olm(self, devices: list[Device]) -> None:
        """Start Olm sessions with devices that have none, from claimed one-time keys."""
        missing = [d for d in devices if d.curve25519 not in self._olm]
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
                self.rejected.append(Rejection("bad_one_time_key", device.user_id, "claim"))
                continue
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(device.curve25519),
                vodozemac.Curve25519PublicKey.from_base64(key["key"]),
            )
            self._olm[device.curve25519] = [session]

    def _olm_encrypt(self, device: Device, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._olm[device.curve25519][0]
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
            "ciphertext": {device.curve25519: {"type": message_type, "body": _b64(body)}},
        }

    def _olm_decrypt(self, sender_key: str, message_type: int, body: bytes) -> bytes:
        """Decrypt an Olm message from `sender_key`.

        Raises:
            _Replayed: a pre-key message seen before.
            ValueError: no session decrypts it.
        """
        message = vodozemac.AnyOlmMessage.from_parts(message_type, body)
        sessions = self._olm.get(sender_key, [])
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
        if digest in self._seen_pre_keys:
            raise _Replayed
        session, plaintext = self.account.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
        )
        self._seen_pre_keys[digest] = None
        while len(self._seen_pre_keys) > MAX_REMEMBERED_PRE_KEYS:
            del self._seen_pre_keys[next(iter(self._seen_pre_keys))]
        self._olm.setdefault(sender_key, []).insert(0, session)
        return plaintext

    async def _send_to_devices(self, devices: list[Device], payload: dict[str, Any]) -> None:
        await self._ensure_olm(devices)
        ready = [d for d in devices if d.curve25519 in self._olm]
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
            batch.setdefault(device.user_id, {})[device.device_id] = self._olm_encrypt(
                device, payload
            )
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

    # -- inbox ------------------------------------------------------------------------------

    async def sync(self) -> int:
        """Fetch and handle this device's to-device messages (room keys); returns how many.

        Each is acknowledged once handled, so a device that was offline gets its keys now.
        """
        async with self._lock:
            return await self._sync()

    async def _sync(self) -> int:
        handled = 0
        used_pre_key = False
        self._sync_members = {}
        pending, self._pending_room_keys = self._pending_room_keys, []
        for index, key in enumerate(pending):
            try:
                await self._accept_room_key(*key)
            except (ApiError, httpx.HTTPError):
                self._pending_room_keys.extend(pending[index:])
                raise
        while True:
            answer = await self._client._request(
                "GET", "/sendToDevice/inbox", params={"limit": 100}
            )
            messages = answer["messages"]
            if not messages:
                break
            for message in messages:
                try:
                    used_pre_key |= await self._handle_to_device(message)
                except ApiError as error:
                    if error.status >= 500:
                        raise  # unacknowledged: handled again at the next read
                    self._reject(f"lookup_failed:{error.code}", message)
            self._save()
            await self._client._request(
                "POST", "/sendToDevice/inbox/ack", json={"up_to": messages[-1]["id"]}
            )
            handled += len(messages)
            if len(messages) < 100:
                break
        if used_pre_key:
            await self._top_up()
        return handled

    async def on_gateway_event(self, method: str, params: dict[str, Any]) -> None:
        """A hint from the gateway: a `to_device` event means the inbox has something.

        The event's content is never used itself; the inbox is read and acknowledged as usual.
        """
        if method == "to_device" and params.get("recipient_device_id") == self.device_id:
            await self.sync()

    def _reject(self, reason: str, message: dict[str, Any]) -> bool:
        log.warning("refused a to-device %s: %s", message.get("type"), reason)
        self.rejected.append(
            Rejection(reason, message.get("sender_user_id"), str(message.get("type")))
        )
        return False

    async def _handle_to_device(self, message: dict[str, Any]) -> bool:
        """Handle one inbox entry; True when it started an Olm session (a key was used)."""
        content = message.get("content") or {}
        if message.get("type") != ENCRYPTED_TYPE or content.get("algorithm") != OLM_ALGORITHM:
            return self._reject("not_olm_encrypted", message)
        sender_key = content.get("sender_key")
        mine = (content.get("ciphertext") or {}).get(self.identity_key)
        if not isinstance(sender_key, str) or not isinstance(mine, dict):
            return self._reject("not_for_this_device", message)
        device = self._book.by_curve_key(sender_key)
        if device is None and message.get("sender_user_id"):
            await self._query([str(message["sender_user_id"])])
            device = self._book.by_curve_key(sender_key)
        if device is None:
            return self._reject("unknown_sender_device", message)
        had_sessions = len(self._olm.get(sender_key, []))
        try:
            body = base64.b64decode(mine["body"], validate=True)
            plaintext = self._olm_decrypt(sender_key, int(mine["type"]), body)
            payload = json.loads(plaintext)
        except _Replayed:
            return self._reject("replayed", message)
        except (ValueError, KeyError, TypeError):
            return self._reject("undecryptable", message)
        started = len(self._olm.get(sender_key, [])) > had_sessions
        if not (
            isinstance(payload, dict)
            and payload.get("sender") == device.user_id
            and payload.get("sender_device") == device.device_id
            and payload.get("keys") == {"ed25519": device.ed25519}
            and payload.get("recipient") == self.user_id
            and payload.get("recipient_keys") == {"ed25519": self.signing_key}
        ):
            self._reject("mismatched_olm_payload", message)
            return started
        if payload.get("type") == ROOM_KEY_TYPE:
            key = (device, payload.get("content") or {}, message)
            try:
                await self._accept_room_key(*key)
            except (ApiError, httpx.HTTPError) as error:
                if isinstance(error, ApiError) and error.status < 500:
                    raise
                # The Olm message is spent: keep its key to check again at the next read.
                self._pending_room_keys.append(key)
        return started

    async def _accept_room_key(
        self, device: Device, content: dict[str, Any], message: dict[str, Any]
    ) -> None:
        channel_id = content.get("channel_id")
        session_id = content.get("session_id")
        if content.get("algorithm") != MEGOLM_ALGORITHM or not isinstance(channel_id, str):
            self._reject("bad_room_key", message)
            return
        try:
            channel = await self._channel(channel_id)
        except ApiError:  # the channel is gone or hidden from us: not a key we want
            self._reject("room_key_for_unknown_channel", message)
            return
        if not channel.encrypted:
            self._reject("room_key_for_plain_channel", message)
            return
        members = self._sync_members.get(channel_id)
        if members is None:
            members = self._sync_members[channel_id] = await self._members(channel)
        if device.user_id not in members:
            self._reject("room_key_from_non_member", message)
            return
        try:
            session = vodozemac.InboundGroupSession(vodozemac.SessionKey(content["session_key"]))
        except (ValueError, KeyError, TypeError):
            self._reject("bad_room_key", message)
            return
        if session.session_id != session_id:
            self._reject("bad_room_key", message)
            return
        key = (device.curve25519, session.session_id)
        known = self._inbound.get(key)
        if known is not None and known.session.first_known_index <= session.first_known_index:
            return
        self._inbound[key] = InboundSession(
            session, channel_id, device.user_id, device.device_id, device.curve25519, device.ed25519
        )

    # -- Megolm -----------------------------------------------------------------------------

    async def _recipient_devices(self, channel: Channel) -> list[Device]:
        users = await self._members(channel) | {self.user_id}
        await self._query(users)
        devices = [d for u in sorted(users) for d in self._book.devices(u)]
        return [d for d in devices if d.curve25519 != self.identity_key]

    async def rotate(self, channel_id: UUID | str) -> None:
        """Start a new outbound session for this channel now and share it with its devices."""
        async with self._lock:
            await self._rotate(channel_id)

    async def _rotate(self, channel_id: UUID | str) -> None:
        channel = await self._channel(str(channel_id))
        devices = await self._recipient_devices(channel)
        await self._new_outbound(channel, devices)

    async def _new_outbound(self, channel: Channel, devices: list[Device]) -> OutboundSession:
        session = vodozemac.GroupSession()
        outbound = OutboundSession(
            session,
            time.time(),
            frozenset((d.user_id, d.device_id, d.curve25519) for d in devices),
        )
        channel_id = str(channel.id)
        self._outbound[channel_id] = outbound
        # This device reads its own messages through the same inbound path as everyone else.
        self._inbound[(self.identity_key, session.session_id)] = InboundSession(
            vodozemac.InboundGroupSession(session.session_key),
            channel_id,
            self.user_id,
            self.device_id,
            self.identity_key,
            self.signing_key,
        )
        payload = {
            "type": ROOM_KEY_TYPE,
            "content": {
                "algorithm": MEGOLM_ALGORITHM,
                "channel_id": channel_id,
                "session_id": session.session_id,
                "session_key": session.session_key.to_base64(),
            },
        }
        await self._send_to_devices(devices, payload)
        return outbound

    async def encrypt(self, channel_id: UUID | str, content: str) -> dict[str, str]:
        """The SPEC §5 ciphertext form of `content` for an encrypted channel or DM."""
        async with self._lock:
            return await self._encrypt(channel_id, content)

    async def _encrypt(self, channel_id: UUID | str, content: str) -> dict[str, str]:
        channel = await self._channel(str(channel_id))
        if not channel.encrypted:
            raise CryptoError("this channel is not end-to-end encrypted")
        devices = await self._recipient_devices(channel)
        current = frozenset((d.user_id, d.device_id, d.curve25519) for d in devices)
        outbound = self._outbound.get(str(channel.id))
        if outbound is None or outbound.shared_with != current or outbound.expired(time.time()):
            outbound = await self._new_outbound(channel, devices)
        plaintext = canonical_json(
            {"type": MESSAGE_TYPE, "channel_id": str(channel.id), "content": {"body": content}}
        )
        ciphertext = outbound.session.encrypt(plaintext).to_base64()
        self._save()
        return {
            "algorithm": MEGOLM_ALGORITHM,
            "ciphertext": ciphertext,
            "sender_key": self.identity_key,
            "session_id": outbound.session.session_id,
            "device_id": self.device_id,
        }

    async def decrypt_event(self, params: dict[str, Any]) -> Message:
        """A gateway `message.new` event's message, decrypted (for bots reading events)."""
        message = Message.model_validate(params)
        encrypted = message.encrypted
        if (
            encrypted is not None
            and (
                str(encrypted.get("sender_key")),
                str(encrypted.get("session_id")),
            )
            not in self._inbound
        ):
            await self.sync()
        return self.decrypt(message)

    def decrypt(self, message: Message) -> Message:
        """`message` with its content decrypted, or with `decryption_error` set (content None).

        Call :meth:`sync` first so that keys that arrived meanwhile are known.
        """
        if message.encrypted is None:
            return message
        author = None if message.author.id is None else str(message.author.id)
        self._message_channels[str(message.id)] = str(message.channel_id)
        try:
            body = self._decrypt(message, author)
        except _Undecryptable as failure:
            return message.model_copy(update={"content": None, "decryption_error": str(failure)})
        return message.model_copy(update={"content": body, "decryption_error": None})

    def _decrypt(self, message: Message, author: str | None) -> str:
        encrypted = message.encrypted or {}
        if encrypted.get("algorithm") != MEGOLM_ALGORITHM:
            raise _Undecryptable(f"unsupported algorithm {encrypted.get('algorithm')!r}")
        inbound = self._inbound.get(
            (str(encrypted.get("sender_key")), str(encrypted.get("session_id")))
        )
        if inbound is None:
            raise _Undecryptable("no key for this message (it was not shared with this device)")
        if (
            inbound.channel_id != str(message.channel_id)
            or inbound.sender_user != author
            or inbound.sender_key != encrypted.get("sender_key")
            or inbound.sender_device != encrypted.get("device_id")
        ):
            raise _Undecryptable("the message's sender does not match its key's sender")
        try:
            decrypted = inbound.session.decrypt(
                vodozemac.MegolmMessage.from_base64(str(encrypted.get("ciphertext")))
            )
            payload = json.loads(decrypted.plaintext)
        except ValueError:
            raise _Undecryptable("the ciphertext does not decrypt with its key") from None
        index_key = f"{inbound.session.session_id}:{decrypted.message_index}"
        first = self._megolm_indices.setdefault(index_key, str(message.id))
        if first != str(message.id):
            raise _Undecryptable("a replay of an earlier message")
        if (
            not isinstance(payload, dict)
            or payload.get("type") != MESSAGE_TYPE
            or payload.get("channel_id") != str(message.channel_id)
            or not isinstance((payload.get("content") or {}).get("body"), str)
        ):
            raise _Undecryptable("the decrypted payload is not a message of this channel")
        return str(payload["content"]["body"])

    def channel_of(self, message_id: UUID | str) -> str | None:
        """The channel of an encrypted message this device has seen (to encrypt its edit)."""
        return self._message_channels.get(str(message_id))

    def session_ids(self) -> set[str]:
        """Megolm sessions this device can decrypt with."""
        return {session_id for _, session_id in self._inbound}

    def outbound_session_id(self, channel_id: UUID | str) -> str | None:
        """This device's current outbound session for a channel."""
        outbound = self._outbound.get(str(channel_id))
        return None if outbound is None else str(outbound.session.session_id)


def _inbound_key(stored: str) -> tuple[str, str]:
    sender_key, _, session_id = stored.partition("|")
    return sender_key, session_id


class _Undecryptable(Exception):
    """Why a message cannot be shown."""


class _Replayed(Exception):
    """An Olm pre-key message this device has already seen."""
