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
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import vodozemac

from voicechat.e2ee.signing import canonical_json
from voicechat.sdk.crypto.inbox import ROOM_KEY_TYPE, InboundSession, ToDeviceInbox
from voicechat.sdk.crypto.olm import OlmDevice, Rejection
from voicechat.sdk.crypto.store import CryptoStore, MemoryStore
from voicechat.sdk.crypto.trust import MEGOLM_ALGORITHM, Device, DeviceBook, TrustEvent, fingerprint
from voicechat.sdk.models import Channel, Message

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)

__all__ = ["ROOM_KEY_TYPE", "Crypto", "CryptoError", "InboundSession", "Rejection"]

MESSAGE_TYPE = "m.room.message"
ROTATE_AFTER_MESSAGES = 100
ROTATE_AFTER_SECONDS = 7 * 24 * 3600
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
        self.rejected: list[Rejection] = []
        self._device = OlmDevice(client, save=self._save, reject=self.rejected.append)
        self._outbound: dict[str, OutboundSession] = {}
        # Keyed by (sender curve25519, session id): a member who re-shares someone else's
        # session key gets a binding of their own, never the original sender's.
        self._inbound: dict[tuple[str, str], InboundSession] = {}
        self._megolm_indices: dict[str, str] = {}
        self._book = DeviceBook()
        self._channels: dict[str, Channel] = {}
        self._extra_recipients: dict[str, set[str]] = {}
        self._message_channels: dict[str, str] = {}
        self._inbox = ToDeviceInbox(
            client,
            self._device,
            device_of=lambda curve_key: self._book.by_curve_key(curve_key),
            query=self._query,
            channel=self._channel,
            members=self._members,
            inbound=lambda: self._inbound,
            save=self._save,
            rejected=self.rejected,
        )
        # One send or inbox read at a time: both advance ratchets and may start sessions.
        self._lock = asyncio.Lock()

    # -- identity ---------------------------------------------------------------------------

    @property
    def account(self) -> vodozemac.Account:
        """This device's vodozemac account."""
        return self._device.account

    @property
    def user_id(self) -> str:
        """The user this device belongs to."""
        return self._device.user_id

    @property
    def device_id(self) -> str:
        """This device's id."""
        return self._device.device_id

    @property
    def identity_key(self) -> str:
        """This device's curve25519 identity key."""
        return self._device.identity_key

    @property
    def signing_key(self) -> str:
        """This device's ed25519 signing key."""
        return self._device.signing_key

    @property
    def _olm(self) -> dict[str, list[vodozemac.Session]]:
        # The Olm sessions by the other device's curve25519 key (tests inspect them).
        return self._device.sessions

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
            "seen_pre_keys": list(self._device.seen_pre_keys),
            "megolm_indices": self._megolm_indices,
            "trust": self._book.to_state(),
        }
        self._store.save(state)

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise CryptoError("the key store is of an unknown version")
        device = self._device
        device.user_id = state["user_id"]
        device.device_id = state["device_id"]
        device.account = vodozemac.Account.from_pickle(state["account"], _PICKLE_KEY)
        device.sessions = {
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
        device.seen_pre_keys = dict.fromkeys(state["seen_pre_keys"])
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
            self._device.create(user_id, device_id)
        self._book.know(Device(self.user_id, self.device_id, self.identity_key, self.signing_key))
        await self._device.publish()

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

    # -- inbox ------------------------------------------------------------------------------

    async def sync(self) -> int:
        """Fetch and handle this device's to-device messages (room keys); returns how many.

        Each is acknowledged once handled, so a device that was offline gets its keys now.
        """
        async with self._lock:
            return await self._inbox.read()

    async def on_gateway_event(self, method: str, params: dict[str, Any]) -> None:
        """A hint from the gateway: a `to_device` event means the inbox has something.

        The event's content is never used itself; the inbox is read and acknowledged as usual.
        """
        if method == "to_device" and params.get("recipient_device_id") == self.device_id:
            await self.sync()

    async def _send_to_devices(self, devices: list[Device], payload: dict[str, Any]) -> None:
        await self._device.send(devices, payload)

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
