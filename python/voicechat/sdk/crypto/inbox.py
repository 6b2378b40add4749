"""This device's to-device inbox: the room keys other devices sent it over Olm.

The REST inbox is the source of truth (gateway `to_device` events only prompt a read). Each
message is acknowledged once handled. A room key is accepted only from inside an Olm message,
from a device whose self-signed keys verified, whose user may read the channel, and only for a
session whose id matches its key; anything else is recorded as a :class:`Rejection`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import vodozemac

from voicechat.sdk.crypto.olm import ENCRYPTED_TYPE, OlmDevice, Rejection, Replayed
from voicechat.sdk.crypto.trust import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Channel

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)

ROOM_KEY_TYPE = "m.room_key"


@dataclass(slots=True)
class InboundSession:
    """A Megolm session someone shared with this device, bound to the device that sent it."""

    session: vodozemac.InboundGroupSession
    channel_id: str
    sender_user: str
    sender_device: str
    sender_key: str  # the sending device's curve25519 identity key
    signing_key: str  # and its ed25519 key


# Keyed by (sender curve25519, session id).
InboundSessions = dict[tuple[str, str], InboundSession]


class ToDeviceInbox:
    """Reads and handles this device's to-device messages.

    Args:
        client: the logged-in client.
        device: this device's Olm side (decrypts, and tops up keys once one was used).
        device_of: a known device by its curve25519 key.
        query: looks up users' devices (then `device_of` knows them).
        channel: a channel by id.
        members: the users who may read a channel.
        inbound: this device's Megolm sessions, where accepted keys go.
        save: persists the device's state.
        rejected: where refusals are recorded.
    """

    def __init__(
        self,
        client: Client,
        device: OlmDevice,
        *,
        device_of: Callable[[str], Device | None],
        query: Callable[[Iterable[str]], Awaitable[None]],
        channel: Callable[[str], Awaitable[Channel]],
        members: Callable[[Channel], Awaitable[set[str]]],
        inbound: Callable[[], InboundSessions],
        save: Callable[[], None],
        rejected: list[Rejection],
    ) -> None:
        self._client = client
        self._device = device
        self._device_of = device_of
        self._query = query
        self._channel = channel
        self._members = members
        self._inbound = inbound
        self._save = save
        self.rejected = rejected
        # Channel recipients looked up while handling one batch of the inbox.
        self._members_seen: dict[str, set[str]] = {}
        # Room keys decrypted but not yet checked because the server was unreachable.
        self._pending: list[tuple[Device, dict[str, Any], dict[str, Any]]] = []

    def _refuse(self, reason: str, message: dict[str, Any]) -> bool:
        log.warning("refused a to-device %s: %s", message.get("type"), reason)
        self.rejected.append(
            Rejection(reason, message.get("sender_user_id"), str(message.get("type")))
        )
        return False

    async def read(self) -> int:
        """Fetch and handle the to-device messages waiting (room keys); returns how many.

        The caller holds the device's lock: this advances Olm ratchets.
        """
        handled = 0
        used_pre_key = False
        self._members_seen = {}
        pending, self._pending = self._pending, []
        for index, key in enumerate(pending):
            try:
                await self._accept_room_key(*key)
            except (ApiError, httpx.HTTPError):
                self._pending.extend(pending[index:])
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
                    self._refuse(f"lookup_failed:{error.code}", message)
            self._save()
            await self._client._request(
                "POST", "/sendToDevice/inbox/ack", json={"up_to": messages[-1]["id"]}
            )
            handled += len(messages)
            if len(messages) < 100:
                break
        if used_pre_key:
            await self._device.top_up()
        return handled

    async def _handle_to_device(self, message: dict[str, Any]) -> bool:
        """Handle one inbox entry; True when it started an Olm session (a key was used)."""
        content = message.get("content") or {}
        if message.get("type") != ENCRYPTED_TYPE or content.get("algorithm") != OLM_ALGORITHM:
            return self._refuse("not_olm_encrypted", message)
        sender_key = content.get("sender_key")
        mine = (content.get("ciphertext") or {}).get(self._device.identity_key)
        if not isinstance(sender_key, str) or not isinstance(mine, dict):
            return self._refuse("not_for_this_device", message)
        device = self._device_of(sender_key)
        if device is None and message.get("sender_user_id"):
            await self._query([str(message["sender_user_id"])])
            device = self._device_of(sender_key)
        if device is None:
            return self._refuse("unknown_sender_device", message)
        had_sessions = len(self._device.sessions.get(sender_key, []))
        try:
            body = base64.b64decode(mine["body"], validate=True)
            plaintext = self._device.decrypt(sender_key, int(mine["type"]), body)
            payload = json.loads(plaintext)
        except Replayed:
            return self._refuse("replayed", message)
        except (ValueError, KeyError, TypeError):
            return self._refuse("undecryptable", message)
        started = len(self._device.sessions.get(sender_key, [])) > had_sessions
        if not (
            isinstance(payload, dict)
            and payload.get("sender") == device.user_id
            and payload.get("sender_device") == device.device_id
            and payload.get("keys") == {"ed25519": device.ed25519}
            and payload.get("recipient") == self._device.user_id
            and payload.get("recipient_keys") == {"ed25519": self._device.signing_key}
        ):
            self._refuse("mismatched_olm_payload", message)
            return started
        if payload.get("type") == ROOM_KEY_TYPE:
            key = (device, payload.get("content") or {}, message)
            try:
                await self._accept_room_key(*key)
            except (ApiError, httpx.HTTPError) as error:
                if isinstance(error, ApiError) and error.status < 500:
                    raise
                # The Olm message is spent: keep its key to check again at the next read.
                self._pending.append(key)
        return started

    async def _accept_room_key(
        self, device: Device, content: dict[str, Any], message: dict[str, Any]
    ) -> None:
        channel_id = content.get("channel_id")
        session_id = content.get("session_id")
        if content.get("algorithm") != MEGOLM_ALGORITHM or not isinstance(channel_id, str):
            self._refuse("bad_room_key", message)
            return
        try:
            channel = await self._channel(channel_id)
        except ApiError:  # the channel is gone or hidden from us: not a key we want
            self._refuse("room_key_for_unknown_channel", message)
            return
        if not channel.encrypted:
            self._refuse("room_key_for_plain_channel", message)
            return
        members = self._members_seen.get(channel_id)
        if members is None:
            members = self._members_seen[channel_id] = await self._members(channel)
        if device.user_id not in members:
            self._refuse("room_key_from_non_member", message)
            return
        try:
            session = vodozemac.InboundGroupSession(vodozemac.SessionKey(content["session_key"]))
        except (ValueError, KeyError, TypeError):
            self._refuse("bad_room_key", message)
            return
        if session.session_id != session_id:
            self._refuse("bad_room_key", message)
            return
        key = (device.curve25519, session.session_id)
        inbound = self._inbound()
        known = inbound.get(key)
        if known is not None and known.session.first_known_index <= session.first_known_index:
            return
        inbound[key] = InboundSession(
            session, channel_id, device.user_id, device.device_id, device.curve25519, device.ed25519
        )
