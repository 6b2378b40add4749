"""End-to-end encryption for a desktop session: where this account's keys live, turning the
device on, and the trust events (devices seen, changed or forged) the GUI shows.

The protocol itself is :class:`voicechat.sdk.crypto.Crypto`; this is the part of a session
that decides where its keys are kept and what to reload once it can decrypt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from voicechat.sdk.app.feed import NETWORK_ERRORS, Background, ChangeFeed
from voicechat.sdk.app.settings import account_file
from voicechat.sdk.app.state import Change
from voicechat.sdk.app.timeline import Timeline
from voicechat.sdk.client import Client
from voicechat.sdk.crypto import CryptoError, CryptoStore, KeyringStore, StoreError, TrustEvent
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Channel, Me


class Encryption:
    """Whether and how one session encrypts.

    Args:
        client: the logged-in client that gets the :class:`~voicechat.sdk.crypto.Crypto`.
        home: the client home (keys go under `keys/`).
        feed: where trust events and failures go.
        background: reloads the timelines that can now be decrypted.
        me: the signed-in user (names the key file and the keyring entry).
        timelines: the session's timelines, and the channel each shows.
    """

    def __init__(
        self,
        client: Client,
        home: Path,
        feed: ChangeFeed,
        background: Background,
        *,
        me: Callable[[], Me | None],
        timelines: Callable[[], list[tuple[Timeline, Channel | None]]],
    ) -> None:
        self._client = client
        self._home = home
        self._feed = feed
        self._background = background
        self._me = me
        self._timelines = timelines
        # Devices seen, changed or forged, for the GUI to show.
        self.trust_events: list[TrustEvent] = []

    @property
    def enabled(self) -> bool:
        """Whether this session encrypts and decrypts (DMs and encrypted channels)."""
        return self._client.crypto is not None

    def key_store_path(self) -> Path:
        """Where this account's encryption keys live on this machine."""
        me = self._me()
        username = me.username if me else "unknown"
        return account_file(self._home, "keys", self._client.base_url, username, ".keys")

    async def enable(self, store: CryptoStore | None = None) -> bool:
        """Make this installation an encryption device, so DMs and encrypted channels read and
        write. Without a store, the keys go to the OS keyring; False (and the error reported)
        when it cannot be done."""
        if self._client.crypto is not None:
            return True
        if store is None:
            me = self._me()
            account = f"{self._client.base_url}|{me.username if me else ''}"
            store = KeyringStore(self.key_store_path(), account)
        try:
            await self._client.enable_encryption(store, on_trust_event=self._on_trust_event)
        except (ApiError, CryptoError, StoreError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return False
        for timeline, channel in self._timelines():
            if timeline.loaded and channel is not None and channel.encrypted:
                self._background.spawn(timeline.load_latest())
        return True

    def _on_trust_event(self, event: TrustEvent) -> None:
        self.trust_events.append(event)
        self._feed.notify(Change("trust", payload=event))
