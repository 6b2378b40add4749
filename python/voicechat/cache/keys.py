"""Every Valkey key and pub/sub channel name voicechat uses, in one place.

All names start with `vc:` so a shared Valkey can hold other applications' keys too.
TTLs that belong to a key's meaning live here beside its name.
"""

from __future__ import annotations

from uuid import UUID

PREFIX = "vc:"

SESSION_TTL_SECONDS = 7 * 24 * 3600
TYPING_TTL_SECONDS = 8
PRESENCE_TTL_SECONDS = 60


def session(session_id: UUID | str) -> str:
    """Hash: the live session (user id, IP, user agent, created, last used)."""
    return f"{PREFIX}session:{session_id}"


def user_sessions(user_id: UUID | str) -> str:
    """Set: the ids of a user's live sessions."""
    return f"{PREFIX}user:{user_id}:sessions"


def session_revocations() -> str:
    """Pub/sub channel: the id of each session just ended (logout, revocation, refresh-token
    reuse). Every API process subscribes and drops its cached verdict (auth/live_sessions.py)."""
    return f"{PREFIX}sessions:revoked"


def refresh_token(token_hash: str) -> str:
    """String: the session a (hashed) refresh token belongs to; TTL 7 days."""
    return f"{PREFIX}refresh:{token_hash}"


def refresh_family(session_id: UUID | str) -> str:
    """Hash: the current and previous refresh token hashes of a session (reuse detection)."""
    return f"{PREFIX}session:{session_id}:refresh"


def presence(user_id: UUID | str) -> str:
    """Hash: socket id → instance id for each open gateway socket of a user."""
    return f"{PREFIX}presence:{user_id}"


def instance_heartbeat(instance_id: str) -> str:
    """String with a TTL: an API instance is alive while this key exists."""
    return f"{PREFIX}instance:{instance_id}"


# An instance refreshes its heartbeat key every third of this; one that stops (SIGKILL) is
# treated as dead, and its sockets' presence entries reaped, once the key has expired.
INSTANCE_HEARTBEAT_TTL_SECONDS = 10


def instances() -> str:
    """Set: ids of the API instances that hold (or held) gateway sockets."""
    return f"{PREFIX}instances"


def instance_sockets(instance_id: str) -> str:
    """Set: `<user id>:<socket id>:<client ip>` of each gateway socket open on an instance."""
    return f"{PREFIX}instance:{instance_id}:sockets"


def address_sockets(ip: str) -> str:
    """Hash: socket id → instance id for each open gateway socket from one client address
    (the per-IP cap; entries go with the presence entries)."""
    return f"{PREFIX}gateway:ip:{ip}"


def presence_choice(user_id: UUID | str) -> str:
    """String: the status a user chose with `presence.set` (online, idle, dnd, offline)."""
    return f"{PREFIX}presence:{user_id}:choice"


def typing(channel_id: UUID | str) -> str:
    """Sorted set: user id scored by typing expiry time."""
    return f"{PREFIX}typing:{channel_id}"


def voice_channel(channel_id: UUID | str) -> str:
    """Hash: user id → voice state of who is in a voice channel."""
    return f"{PREFIX}voice:{channel_id}"


def rate_limit_prefix() -> str:
    """Prefix under which the `limits` library stores its windows."""
    return f"{PREFIX}ratelimit"


def events_channel() -> str:
    """Pub/sub channel carrying gateway events between API instances."""
    return f"{PREFIX}events"


def mfa_challenge(token_hash: str) -> str:
    """Hash: a login waiting for its second factor (user id, attempts left); TTL 5 minutes."""
    return f"{PREFIX}mfa:{token_hash}"


OIDC_STATE_TTL_SECONDS = 600
OIDC_LOGIN_CODE_TTL_SECONDS = 120


def oidc_state(state_hash: str) -> str:
    """Hash: an SSO login in flight (provider, PKCE verifier, nonce, redirect URI), keyed by
    the hash of its `state`; read and deleted at once by the callback; TTL 10 minutes."""
    return f"{PREFIX}oidc:state:{state_hash}"


def oidc_login_code(code_hash: str) -> str:
    """String: JSON `{user_id, provider}` a one-time SSO `login_code` stands for; TTL 2 minutes."""
    return f"{PREFIX}oidc:code:{code_hash}"


def instance_voice(instance_id: str) -> str:
    """Set: `<channel id>:<user id>` of each voice participant served by an instance."""
    return f"{PREFIX}instance:{instance_id}:voice"


# -- voice nodes (`voicechat voice`) and their control channel (docs/voice.md) ----------------

#: A voice node refreshes its heartbeat key every third of this; once the key has expired
#: (a SIGKILLed node) API instances treat the node's participants as gone.
VOICE_NODE_TTL_SECONDS = 6
#: How long a channel stays pinned to its node without a refresh; the node refreshes the pin of
#: every room it holds participants in, so only empty rooms lose theirs.
VOICE_ROOM_PIN_TTL_SECONDS = 30
#: A request list nobody consumes (its node died) disappears after this.
VOICE_REQUESTS_TTL_SECONDS = 60


def voice_nodes() -> str:
    """Set: ids of the voice nodes that registered (alive or not; see `voice_node`)."""
    return f"{PREFIX}voice:nodes"


def voice_node(node_id: str) -> str:
    """String with a TTL: JSON `{id, address, capacity, load}` of a live voice node."""
    return f"{PREFIX}voice:node:{node_id}"


def voice_node_requests(node_id: str) -> str:
    """List: JSON control requests for one voice node (LPUSH by API instances, BRPOP by it)."""
    return f"{PREFIX}voice:node:{node_id}:requests"


def voice_room_pin(channel_id: UUID | str) -> str:
    """String with a TTL: the id of the voice node that holds a voice channel's room."""
    return f"{PREFIX}voice:pin:{channel_id}"


def voice_inbox(instance_id: str) -> str:
    """Pub/sub channel: replies and SFU events from voice nodes for one API instance."""
    return f"{PREFIX}voice:inbox:{instance_id}"


def backup_status() -> str:
    """Hash: the last scheduled backup's outcome (`last_success_at`, `last_success_id`,
    `last_failure_at`, `last_error`) and when a scheduler first ran (`first_scheduled_at`),
    read by every instance's /health and /metrics."""
    return f"{PREFIX}backup:status"


def backup_slot(slot: str) -> str:
    """String with a TTL: the instance that took one scheduled backup time (SET NX), so one
    instance makes it however many run."""
    return f"{PREFIX}backup:slot:{slot}"


BACKUP_SLOT_TTL_SECONDS = 2 * 24 * 3600


def audit_purge_slot(day: str) -> str:
    """String with a TTL: the instance that purges the audit log on one day (SET NX), so
    one instance purges however many run (voicechat/audit_retention.py)."""
    return f"{PREFIX}audit:purge:{day}"


AUDIT_PURGE_SLOT_TTL_SECONDS = 2 * 24 * 3600
