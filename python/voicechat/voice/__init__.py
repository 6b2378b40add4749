"""Voice: the SFU media plane and the native client peer, for asyncio code.

`Sfu` and `Peer` wrap `voicechat._native.sfu` (see docs/voice.md). The native objects run
their own media threads; these wrappers only move blocking calls off the event loop.
`plane` is what the gateway's voice service drives (the SFU in process, or voice nodes through
`remote`); `node` is the `voicechat voice` process's side of that control channel (`control`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicechat._native.sfu import ParticipantStats, ReceivedPacket, SfuConfig, SfuEvent
from voicechat.voice.media import Peer, Sfu

if TYPE_CHECKING:
    # Only a type here: the SDK's voice call imports `voicechat.voice.media` (the client
    # peer) and must not load the server's settings with it.
    from voicechat.settings import Settings

__all__ = [
    "ParticipantStats",
    "Peer",
    "ReceivedPacket",
    "Sfu",
    "SfuConfig",
    "SfuEvent",
    "sfu_config",
]


def sfu_config(settings: Settings) -> SfuConfig:
    """The SFU configuration `voicechat serve` and `voicechat voice` run with."""
    return SfuConfig(
        bind_ip=settings.media_bind_ip,
        media_port=settings.media_port,
        public_ip=str(settings.public_ip),
        worker_threads=settings.media_workers,
        max_users_per_room=settings.voice_user_limit,
    )
