"""The public path of :class:`VoiceCall` (`from voicechat.sdk.voice import VoiceCall`, as in
examples/ and docs/sdk.md); the call itself lives in :mod:`voicechat.sdk.call`."""

from voicechat.sdk.call import VoiceCall

__all__ = ["VoiceCall"]
