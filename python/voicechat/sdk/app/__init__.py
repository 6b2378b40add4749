"""The desktop client's application model, without a window (SPEC §9, issue 7).

Everything but drawing: sessions (password, MFA, SSO, resume from stored tokens), the channel
tree, members and presence, timelines with paging, typing, an outbox that survives being
offline, attachments, voice state and the audio engine's controls, settings and token storage,
readable errors. The Kivy client binds its screens to an :class:`AppSession` and redraws on
its :class:`Change` notifications; tests drive the same objects against a real server.

    settings = ClientSettings.load()
    session = await AppSession.resume(settings)
    if session is None:
        try:
            session = await AppSession.login(url, username, password, settings=settings)
        except MfaRequired as needed:
            session = await AppSession.complete_mfa(needed.challenge, code)
    session.subscribe(lambda change: schedule_redraw(change))
    timeline = await session.select_channel(channel_id)
    await session.send(channel_id, "hello")
"""

from voicechat.sdk.app.engines import DeviceEngineFactory, EngineFactory, VoiceEngineLike
from voicechat.sdk.app.readable import readable_error
from voicechat.sdk.app.session import AppSession
from voicechat.sdk.app.settings import AudioSettings, ClientSettings, client_home
from voicechat.sdk.app.signin import MfaChallenge, MfaRequired, Provider
from voicechat.sdk.app.sso import LoopbackRedirect, SsoError
from voicechat.sdk.app.state import (
    CategoryGroup,
    Change,
    ChannelTree,
    ConnectionState,
    Member,
    VoiceParticipant,
    VoiceState,
)
from voicechat.sdk.app.timeline import Timeline, TimelineEntry
from voicechat.sdk.app.tokens import StoredTokens, TokenStore

__all__ = [
    "AppSession",
    "AudioSettings",
    "CategoryGroup",
    "Change",
    "ChannelTree",
    "ClientSettings",
    "ConnectionState",
    "DeviceEngineFactory",
    "EngineFactory",
    "LoopbackRedirect",
    "Member",
    "MfaChallenge",
    "MfaRequired",
    "Provider",
    "SsoError",
    "StoredTokens",
    "Timeline",
    "TimelineEntry",
    "TokenStore",
    "VoiceEngineLike",
    "VoiceParticipant",
    "VoiceState",
    "client_home",
    "readable_error",
]
