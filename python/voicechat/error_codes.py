"""Every error code voicechat puts on the wire, in one place: the server raises them, the SDK
keys on them.

`ErrorCode` is the snake_case `error.code` of the HTTP error shape (SPEC §3), the `data.code` of
a gateway JSON-RPC error (docs/gateway.md), and the `error.code` of a voice node's reply on the
control channel (docs/voice.md). Its members are `str`s: they compare equal to, hash like and
serialise as their text, so `ErrorCode.DM_IMMUTABLE == "dm_immutable"` and the wire format is
the text itself. `RpcErrorCode` is the gateway's numeric JSON-RPC `error.code`.

docs/errors.md describes each code; tests/test_error_catalogue.py fails when a raise site uses a
code this module lacks, or when this module holds a code docs/errors.md does not describe.

This module imports nothing of voicechat, so the SDK can use it without loading the server.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The snake_case code of an error, grouped as in docs/errors.md."""

    # One per HTTP status: the defaults of the domain error classes (`voicechat.errors`) and of
    # errors raised outside them (routing, request validation, a crash).
    ERROR = "error"
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    GONE = "gone"
    REQUEST_TIMEOUT = "request_timeout"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    URI_TOO_LONG = "uri_too_long"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    RATE_LIMITED = "rate_limited"
    REQUEST_HEADER_TOO_LARGE = "request_header_too_large"
    INTERNAL_ERROR = "internal_error"
    BAD_GATEWAY = "bad_gateway"
    SERVICE_UNAVAILABLE = "service_unavailable"

    # A dependency that is down or too slow (docs/reliability.md, "When a dependency fails"):
    # 503 with `Retry-After`; the gateway closes with 1013.
    DATABASE_UNAVAILABLE = "database_unavailable"
    VALKEY_UNAVAILABLE = "valkey_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"

    # Accounts, tokens, sessions and MFA.
    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_MFA_TOKEN = "invalid_mfa_token"
    INVALID_MFA_CODE = "invalid_mfa_code"
    MFA_ALREADY_ENABLED = "mfa_already_enabled"
    MFA_NOT_STARTED = "mfa_not_started"
    MFA_NOT_ENABLED = "mfa_not_enabled"
    SESSION_REVOKED = "session_revoked"
    SESSION_NOT_FOUND = "session_not_found"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    REFRESH_TOKEN_ROTATED = "refresh_token_rotated"
    USERNAME_TAKEN = "username_taken"
    USER_NOT_FOUND = "user_not_found"

    # Password change and reset, email verification, deletion (docs/accounts.md).
    SMTP_UNAVAILABLE = "smtp_unavailable"
    PASSWORD_NOT_SET = "password_not_set"
    WRONG_PASSWORD = "wrong_password"
    REAUTHENTICATION_REQUIRED = "reauthentication_required"
    ACCOUNT_TOKEN_INVALID = "account_token_invalid"
    ACCOUNT_TOKEN_USED = "account_token_used"
    ACCOUNT_TOKEN_EXPIRED = "account_token_expired"
    ACCOUNT_DELETED = "account_deleted"

    # Single sign-on (OIDC).
    UNKNOWN_PROVIDER = "unknown_provider"
    INVALID_REDIRECT_URI = "invalid_redirect_uri"
    INVALID_STATE = "invalid_state"
    MISSING_CODE = "missing_code"
    SSO_DENIED = "sso_denied"
    SSO_CODE_REJECTED = "sso_code_rejected"
    INVALID_ID_TOKEN = "invalid_id_token"
    INVALID_NONCE = "invalid_nonce"
    INVALID_USERINFO = "invalid_userinfo"
    INVALID_LOGIN_CODE = "invalid_login_code"
    SSO_PROVIDER_UNAVAILABLE = "sso_provider_unavailable"
    SSO_PROVIDER_ERROR = "sso_provider_error"
    SSO_PROVISIONING_FAILED = "sso_provisioning_failed"

    # Registration modes and invites (docs/moderation.md, "Registration and invites").
    REGISTRATION_CLOSED = "registration_closed"
    INVITE_REQUIRED = "invite_required"
    INVITE_INVALID = "invite_invalid"
    INVITE_NOT_FOUND = "invite_not_found"
    ROLE_ABOVE_YOURS = "role_above_yours"

    # Bans, timeouts and voice moderation (docs/moderation.md).
    BANNED = "banned"
    TIMED_OUT = "timed_out"
    ROLE_HIERARCHY = "role_hierarchy"
    CANNOT_MODERATE_SELF = "cannot_moderate_self"
    BAN_NOT_FOUND = "ban_not_found"
    INVALID_TIMEOUT = "invalid_timeout"
    NOT_IN_VOICE = "not_in_voice"
    SERVER_MUTED = "server_muted"

    # Bots and the administration of accounts (docs/accounts.md, "Bots", "Administration").
    INVALID_BOT_TOKEN = "invalid_bot_token"
    NOT_FOR_BOTS = "not_for_bots"
    BOT_NOT_FOUND = "bot_not_found"
    ACCOUNT_DISABLED = "account_disabled"
    LAST_ADMINISTRATOR = "last_administrator"

    # Channels, roles and permissions.
    CHANNEL_NOT_FOUND = "channel_not_found"
    MISSING_PERMISSION = "missing_permission"
    PERMISSION_ESCALATION = "permission_escalation"
    DM_IMMUTABLE = "dm_immutable"
    INVALID_DM = "invalid_dm"
    INVALID_CHANGE = "invalid_change"
    INVALID_CATEGORY = "invalid_category"
    MEMBER_NOT_FOUND = "member_not_found"
    ROLE_NOT_FOUND = "role_not_found"
    ROLE_NAME_TAKEN = "role_name_taken"
    DEFAULT_ROLE = "default_role"

    # Messages.
    MESSAGE_NOT_FOUND = "message_not_found"
    NOT_A_TEXT_CHANNEL = "not_a_text_channel"
    EMPTY_MESSAGE = "empty_message"
    NOT_AUTHOR = "not_author"
    INVALID_REPLY = "invalid_reply"
    INVALID_ATTACHMENT = "invalid_attachment"
    ENCRYPTION_REQUIRED = "encryption_required"
    NOT_ENCRYPTED = "not_encrypted"
    INCOMPLETE_CIPHERTEXT = "incomplete_ciphertext"

    # Message search (docs/search.md).
    CHANNEL_NOT_SEARCHABLE = "channel_not_searchable"
    INVALID_SEARCH_CURSOR = "invalid_search_cursor"
    SEARCH_TIMEOUT = "search_timeout"

    # Files and uploads.
    FILE_NOT_FOUND = "file_not_found"
    FILE_CONTENT_MISSING = "file_content_missing"
    FILE_UNREADABLE = "file_unreadable"
    MASTER_KEY_UNAVAILABLE = "master_key_unavailable"
    INVALID_AVATAR = "invalid_avatar"
    INVALID_MULTIPART = "invalid_multipart"
    TOO_MANY_PARTS = "too_many_parts"
    FIELD_TOO_LONG = "field_too_long"
    CLIENT_DISCONNECTED = "client_disconnected"

    # End-to-end encryption: device keys and to-device messages.
    NO_DEVICE = "no_device"
    INVALID_DEVICE_KEYS = "invalid_device_keys"
    INVALID_KEY = "invalid_key"
    INVALID_SIGNATURE = "invalid_signature"
    DEVICE_EXISTS = "device_exists"
    KEY_REUSED = "key_reused"
    UNKNOWN_DEVICE = "unknown_device"
    TOO_MANY_KEYS = "too_many_keys"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TO_DEVICE_TOO_LARGE = "to_device_too_large"

    # Voice, as the gateway's `voice.*` methods answer (JSON-RPC `data.code`).
    NOT_A_VOICE_CHANNEL = "not_a_voice_channel"
    VOICE_CHANNEL_FULL = "voice_channel_full"
    VOICE_UNAVAILABLE = "voice_unavailable"

    # The gateway's caps on sockets (docs/gateway.md, "Caps on sockets").
    TOO_MANY_SOCKETS = "too_many_sockets"

    # A voice node's replies to an API instance (the control channel; never seen by a client).
    # The first six carry a native SFU error across and are raised again as the same class.
    INVALID_SDP = "invalid_sdp"
    ROOM_FULL = "room_full"
    UNKNOWN_PARTICIPANT = "unknown_participant"
    UNKNOWN_ROOM = "unknown_room"
    PARTICIPANT_EXISTS = "participant_exists"
    INVALID_ID = "invalid_id"
    NODE_FULL = "node_full"
    INTERNAL = "internal"


class RpcErrorCode(IntEnum):
    """JSON-RPC error codes of the gateway: the standard ones, then its own (-32000 and below)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    #: A domain error without a more specific code; `data.code` says which.
    SERVER_ERROR = -32000
    UNAUTHORIZED = -32001
    FORBIDDEN = -32003
    NOT_FOUND = -32004
    RATE_LIMITED = -32029
