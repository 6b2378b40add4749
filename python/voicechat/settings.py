"""The one settings object: `VOICECHAT_*` variables, an optional TOML file, `serve` flags.

Every value is validated when the process starts; a wrong value stops start-up with one line
naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Collection
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "VOICECHAT_"
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG_FILE"

# Values people paste from examples; production refuses them as secrets.
_PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "password", "voicechat", "dev", "development", "test"}
)

Port = Annotated[int, Field(ge=1, le=65535)]


class Environment(StrEnum):
    """Where the server runs; production is strict about secrets."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


def default_data_dir() -> Path:
    """The data dir when none is configured.

    `$XDG_DATA_HOME/voicechat` (normally `~/.local/share/voicechat`). As root it is
    `/var/lib/voicechat`: the embedded PostgreSQL runs as an unprivileged user who cannot
    enter root's home, and we never loosen a home directory's permissions to let it.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/voicechat")
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "voicechat"


class OidcProvider(BaseModel):
    """One SSO provider, found by its issuer's discovery document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=64)
    issuer: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    # Claim names tried in order for each profile attribute (SPEC §3 defaults).
    display_name_claims: tuple[str, ...] = ("preferred_username", "name", "email")
    avatar_claims: tuple[str, ...] = ("picture", "avatar_url")
    email_claims: tuple[str, ...] = ("email",)
    roles_claims: tuple[str, ...] = ("groups", "roles")
    # A provider whose accounts the operator vouches for (the organisation's own directory):
    # its new subjects are provisioned whatever VOICECHAT_REGISTRATION says.
    trusted: bool = False


class Settings(BaseSettings):
    """Runtime configuration of a voicechat process (API, voice node or CLI)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    host: str = Field("127.0.0.1", min_length=1, description="Address the HTTP API binds.")
    port: Port = Field(8080, description="TCP port of the HTTP API.")
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description=(
            "API worker processes of `voicechat serve` sharing the port (0: one per usable "
            "core; 1: one process, SFU inside it). docs/architecture.md, Processes."
        ),
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="Local state.")
    env: Environment = Field(Environment.DEVELOPMENT, description="development or production.")
    database_url: SecretStr | None = Field(
        None, description="postgresql:// DSN; unset starts an embedded PostgreSQL."
    )
    valkey_url: SecretStr | None = Field(
        None, description="redis:// or valkey:// URL; unset starts an embedded Valkey."
    )
    storage_url: str | None = Field(
        None, description="file:///path or s3://bucket; unset stores files in the data dir."
    )
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, ge=1, le=5 * 1024**3, description="Largest upload; 413 above it."
    )
    upload_retention_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 365,
        description="Hours an upload may stay unattached (and a replaced avatar stay) before "
        "it is deleted.",
    )
    s3_endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="S3-compatible endpoint; unset: AWS."
    )
    s3_region: str | None = Field(None, description="The bucket's region; unset: boto3's.")
    s3_access_key_id: str | None = Field(
        None, description="With the secret below; unset: boto3's credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    media_port: int = Field(
        10000, ge=0, le=65535, description="UDP port of the SFU (0: any free port)."
    )
    media_bind_ip: str = Field("127.0.0.1", description="Address the SFU's UDP socket binds.")
    media_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="SFU media threads; thread i listens on VOICECHAT_MEDIA_PORT + i and each "
        "voice channel lives on one of them.",
    )
    voice_bitrate: int = Field(64000, ge=24000, le=96000, description="Opus bitrate, bit/s.")
    voice_frame_ms: Literal[10, 20, 40, 60] = Field(20, description="Opus frame length.")
    voice_user_limit: int = Field(
        50, ge=50, le=100, description="Most users in a voice channel without its own limit."
    )
    public_ip: IPv4Address | IPv6Address = Field(
        IPv4Address("127.0.0.1"), description="Address put in ICE candidates."
    )
    voice_mode: Literal["embedded", "remote"] = Field(
        "embedded",
        description=(
            "embedded: the SFU runs inside `voicechat serve`; remote: the API drives "
            "`voicechat voice` nodes over Valkey (docs/voice.md)."
        ),
    )
    voice_node_capacity: int = Field(
        500, ge=1, le=100_000, description="Participants a `voicechat voice` node takes."
    )
    voice_alive_file: Path | None = Field(
        None,
        description=(
            "`voicechat voice` touches this file after every heartbeat that reached Valkey "
            "(for a container health check)."
        ),
    )
    voice_request_timeout: float = Field(
        5.0, ge=0.5, le=60.0, description="Seconds the API waits for a voice node's reply."
    )
    master_key: SecretStr | None = Field(
        None,
        description=(
            "Base64 of 32 random bytes; wraps per-object keys and encrypts MFA secrets. "
            "Development generates one in the data dir; production requires it."
        ),
    )
    master_key_previous: SecretStr | None = Field(
        None,
        description=(
            "The master key being rotated away from (base64 of 32 bytes): still opens what it "
            "sealed while `voicechat admin rotate-master-key` re-seals it under "
            "VOICECHAT_MASTER_KEY; remove it once the rotation says nothing is left under it."
        ),
    )
    jwt_private_key: SecretStr | None = Field(
        None,
        description=(
            "PEM of the Ed25519 key that signs access tokens. Development generates one in "
            "the data dir; production requires it."
        ),
    )
    jwt_issuer: str = Field("voicechat", min_length=1, description="`iss` of access tokens.")
    access_token_ttl: int = Field(900, ge=60, le=3600, description="Seconds; 15 minutes.")
    refresh_token_ttl: int = Field(7 * 24 * 3600, ge=3600, le=90 * 24 * 3600)
    refresh_grace_seconds: int = Field(
        10, ge=0, le=120, description="How long a just-rotated refresh token may be replayed."
    )
    rate_limit_login: str = Field(
        "10/5minutes", description="Failed-and-passed login attempts per account."
    )
    rate_limit_login_ip: str = Field("50/5minutes", description="Login attempts per client IP.")
    rate_limit_register_ip: str = Field("10/hour", description="Registrations per client IP.")
    registration: Literal["invite", "open", "closed"] = Field(
        "invite",
        description=(
            "Who may create an account: invite (the first user freely, then only with an "
            "invite), open (anyone), closed (only `voicechat admin`, after the first user)."
        ),
    )
    server_name: str = Field(
        "voicechat", min_length=1, max_length=100, description="Shown with an invite's preview."
    )
    rate_limit_invite_ip: str = Field(
        "30/minute", description="Invite code look-ups (GET /invites/{code}) per client IP."
    )
    audit_retention_days: int = Field(
        365, ge=1, le=36500, description="Days audit log entries are kept before a purge."
    )
    rate_limit_refresh: str = Field("30/minute", description="Refreshes per account and per IP.")
    rate_limit_mfa: str = Field("5/5minutes", description="MFA code attempts per account.")
    rate_limit_mfa_ip: str = Field("20/5minutes", description="MFA code attempts per client IP.")
    rate_limit_bot_token_ip: str = Field(
        "20/minute", description="Unknown or revoked bot tokens presented per client IP."
    )
    # Accounts and mail (docs/accounts.md).
    smtp_url: SecretStr | None = Field(
        None,
        description=(
            "Where account mail goes: smtp://user:pass@host:port (STARTTLS when the server "
            "offers it), smtp+starttls://... (STARTTLS required), smtps://... (implicit TLS). "
            "Unset: no mail; forgot-password still answers 202 and operators reset passwords "
            "with `voicechat admin users reset-password`."
        ),
    )
    mail_from: str = Field(
        "voicechat@localhost",
        min_length=3,
        max_length=254,
        pattern=r"^([^<>]*<)?[^@\s<>]+@[^@\s<>]+>?$",
        description='The From of account mail: "voicechat@example.org" or "Name <addr>".',
    )
    smtp_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds for one SMTP delivery, connect to QUIT."
    )
    mail_retry_max_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Longest pause between retries of a mail SMTP refused (backoff from 1 s).",
    )
    password_reset_ttl_seconds: int = Field(
        1800, ge=1, le=86400, description="How long a password reset token works (30 min)."
    )
    email_verify_ttl_seconds: int = Field(
        86400, ge=1, le=30 * 86400, description="How long an email verification token works."
    )
    deleted_username_grace_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="Days a deleted account's username and SSO subject stay taken.",
    )
    rate_limit_password_forgot_ip: str = Field(
        "10/hour", description="Forgot-password requests per client IP."
    )
    rate_limit_password_forgot: str = Field(
        "3/hour", description="Forgot-password requests (and reset mails) per account."
    )
    rate_limit_account_token_ip: str = Field(
        "30/hour", description="Reset and verification tokens presented per client IP."
    )
    rate_limit_reauth: str = Field(
        "5/15minutes",
        description="Password or MFA checks per account for password change and deletion.",
    )
    rate_limit_email_change: str = Field(
        "5/hour", description="Verification mails one account may ask for."
    )
    rate_limit_export: str = Field("3/hour", description="Data exports per account.")
    rate_limit_key_claims: str = Field(
        "50/hour",
        description="One-time keys one user may claim from another user's devices.",
    )
    # Message search (docs/search.md).
    rate_limit_search: str = Field(
        "30/minute", description="Searches (GET /search/messages) per user."
    )
    search_timeout: float = Field(
        2.0,
        gt=0,
        le=60,
        description=(
            "Seconds PostgreSQL may spend on one search before cancelling it (503 "
            "search_timeout); kept under VOICECHAT_DB_COMMAND_TIMEOUT."
        ),
    )
    gateway_max_sockets_per_user: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Open gateway sockets one user may hold, across every instance.",
    )
    gateway_max_sockets_per_ip: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Open gateway sockets one client address may hold, across every instance.",
    )
    rate_limit_gateway_ip: str = Field(
        "600/minute", description="Gateway connection attempts per client IP."
    )
    rate_limit_gateway_user: str = Field(
        "60/minute", description="Gateway `auth` attempts per user."
    )
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")),
        description=(
            "CIDRs of reverse proxies whose forwarding header names the client (comma-separated "
            "or a JSON list; empty: trust none). docs/reliability.md, Trusted proxies."
        ),
    )
    proxy_client_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for",
        description="The header trusted proxies write the client into (RFC 7239: forwarded).",
    )
    http_max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request head (request line and headers), bytes; 431 above it.",
    )
    http_max_headers: int = Field(
        100, ge=10, le=1000, description="Most header lines in a request; 431 above it."
    )
    http_max_request_line_bytes: int = Field(
        8 * 1024, ge=256, le=256 * 1024, description="Longest request URL, bytes; 414 above it."
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send a request's headers (slowloris); then 408.",
    )
    http_body_idle_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a request body may stop arriving before the request ends in 408.",
    )
    oidc_providers: list[OidcProvider] = Field(
        default_factory=list, description="SSO providers, as a JSON list."
    )
    oidc_redirect_allowlist: list[str] = Field(
        default_factory=list,
        description="Non-loopback redirect URIs clients may ask SSO to return to.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description=(
            "Base URL people reach the API at (SSO providers redirect to "
            "<public_url>/auth/oidc/callback); unset means http://<host>:<port>."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: JSON when stderr is not a terminal."
    )
    db_pool_min: int = Field(1, ge=0, le=100)
    db_pool_max: int = Field(10, ge=1, le=1000)
    # Bounds on every dependency call (docs/reliability.md, "When a dependency fails"): past
    # them, what needs the dependency answers 503 `<dependency>_unavailable` with Retry-After.
    db_connect_timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds to open a PostgreSQL connection."
    )
    db_acquire_timeout: float = Field(
        1.5,
        gt=0,
        le=60,
        description="Seconds a request waits for a pooled PostgreSQL connection (opening one "
        "included).",
    )
    db_command_timeout: float = Field(
        2.5, gt=0, le=3600, description="Seconds one PostgreSQL statement may run."
    )
    valkey_pool_size: int = Field(
        64,
        ge=2,
        le=10_000,
        description="Valkey connections one process opens at most; past it, callers wait.",
    )
    valkey_pool_timeout: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds a caller waits for a free Valkey connection before 503.",
    )
    valkey_timeout: float = Field(
        2.0,
        ge=1.5,
        le=60,
        description="Seconds to connect to Valkey, and for one command (above the voice "
        "node's 1 s blocking poll).",
    )
    s3_connect_timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds to open a connection to the S3 server."
    )
    s3_read_timeout: float = Field(
        3.0,
        gt=0,
        le=300,
        description="Seconds the S3 server may stay silent (an answer, or room to send more).",
    )
    s3_max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="Attempts per S3 call (botocore standard retries) within its deadline.",
    )
    # Backups (docs/backup.md). The key is never the master key: a backup holds the master key.
    backup_url: str | None = Field(
        None,
        description="file:///dir or s3://bucket/prefix where `voicechat backup` keeps backups "
        "(S3 through the VOICECHAT_S3_* settings); on another disk than the data dir.",
    )
    backup_key: SecretStr | None = Field(
        None,
        description="Base64 of 32 random bytes, or a passphrase of 12 characters or more "
        "(stretched by Argon2id), that encrypts backups; kept apart from the backups.",
    )
    backup_schedule: str = Field(
        "0 3 * * *", description="When scheduled backups run, cron syntax in UTC."
    )
    backup_retention_days: int = Field(
        30, ge=1, le=3650, description="Days `backup prune` keeps; the newest is always kept."
    )
    wal_archive: bool = Field(
        False, description="Archive WAL for point-in-time recovery (not built yet: off only)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats .env, which beats the TOML file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("valkey_url")
    @classmethod
    def _valkey_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value()
        if url.startswith("valkey://"):
            url = "redis://" + url.removeprefix("valkey://")
        elif url.startswith("valkeys://"):
            url = "rediss://" + url.removeprefix("valkeys://")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, valkey:// or unix://")
        return SecretStr(url)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        from voicechat.mail.smtp import SmtpTarget

        SmtpTarget.from_url(value.get_secret_value())  # ValueError names the problem, no secret
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("file://"):
            if not value.removeprefix("file://").startswith("/"):
                raise ValueError("file:// URLs need an absolute path (file:///srv/voicechat)")
        elif value.startswith("s3://"):
            if not value.removeprefix("s3://").split("/", 1)[0]:
                raise ValueError("s3:// URLs need a bucket name (s3://bucket)")
        else:
            raise ValueError("must be file:///path or s3://bucket")
        return value

    @field_validator("backup_url")
    @classmethod
    def _backup_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("file://"):
            if not value.removeprefix("file://").startswith("/"):
                raise ValueError("file:// URLs need an absolute path (file:///mnt/backups)")
        elif value.startswith("s3://"):
            if not value.removeprefix("s3://").split("/", 1)[0]:
                raise ValueError("s3:// URLs need a bucket name (s3://bucket/prefix)")
        else:
            raise ValueError("must be file:///dir or s3://bucket/prefix")
        return value

    @field_validator("backup_key")
    @classmethod
    def _backup_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # The same rule as voicechat.backup.archive.BackupKey.parse (which settings cannot
        # import without a cycle): a raw key is base64 of exactly 32 bytes.
        if value is None:
            return None
        text = value.get_secret_value().strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32 and (len(text) < 12 or text.lower() in _PLACEHOLDER_SECRETS):
            raise ValueError(
                "must be base64 of 32 random bytes, or a passphrase of at least 12 characters"
            )
        return value

    @field_validator("backup_schedule")
    @classmethod
    def _cron_shape(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError("must be a cron expression of 5 fields, e.g. '0 3 * * *'")
        return value

    @field_validator("wal_archive")
    @classmethod
    def _wal_archive_not_built(cls, value: bool) -> bool:
        if value:
            raise ValueError("point-in-time recovery is not built yet; leave it off")
        return value

    @field_validator("master_key_previous", mode="before")
    @classmethod
    def _no_previous_key(cls, value: object) -> object:
        # Compose passes an unset variable as "": no rotation under way.
        return None if value == "" else value

    @field_validator("master_key", "master_key_previous")
    @classmethod
    def _master_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().lower() in _PLACEHOLDER_SECRETS:
            return value
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 of 32 random bytes") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes, got {len(raw)}")
        return value

    @field_validator(
        "rate_limit_login",
        "rate_limit_login_ip",
        "rate_limit_register_ip",
        "rate_limit_invite_ip",
        "rate_limit_refresh",
        "rate_limit_mfa",
        "rate_limit_mfa_ip",
        "rate_limit_bot_token_ip",
        "rate_limit_password_forgot_ip",
        "rate_limit_password_forgot",
        "rate_limit_account_token_ip",
        "rate_limit_reauth",
        "rate_limit_email_change",
        "rate_limit_export",
        "rate_limit_key_claims",
        "rate_limit_search",
        "rate_limit_gateway_ip",
        "rate_limit_gateway_user",
    )
    @classmethod
    def _rate_limit_shape(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("must look like 10/minute or 5/15minutes") from None
        return value

    @field_validator("jwt_private_key")
    @classmethod
    def _ed25519_pem(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(value.get_secret_value().encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("must be an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("must be an Ed25519 key (EdDSA is the pinned algorithm)")
        return value

    @field_validator("oidc_providers")
    @classmethod
    def _unique_provider_ids(cls, value: list[OidcProvider]) -> list[OidcProvider]:
        ids = [provider.id for provider in value]
        if len(set(ids)) != len(ids):
            raise ValueError("provider ids must be unique")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.media_port != 0 and self.media_port + self.media_workers - 1 > 65535:
            raise ValueError(
                "VOICECHAT_MEDIA_WORKERS: ports VOICECHAT_MEDIA_PORT to "
                "VOICECHAT_MEDIA_PORT + workers - 1 must stay below 65536"
            )
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("VOICECHAT_DB_POOL_MIN must not exceed VOICECHAT_DB_POOL_MAX")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "VOICECHAT_S3_ACCESS_KEY_ID and VOICECHAT_S3_SECRET_ACCESS_KEY go together"
            )
        if (
            self.backup_key is not None
            and self.master_key is not None
            and self.backup_key.get_secret_value().strip()
            == self.master_key.get_secret_value().strip()
        ):
            raise ValueError(
                "VOICECHAT_BACKUP_KEY must not be the master key (a backup holds the master key)"
            )
        if self.master_key_previous is not None and self.master_key is None:
            raise ValueError(
                "VOICECHAT_MASTER_KEY_PREVIOUS needs VOICECHAT_MASTER_KEY (the new key) beside it"
            )
        if self.env is Environment.PRODUCTION:
            if (
                self.s3_secret_access_key is not None
                and self.s3_secret_access_key.get_secret_value().lower() in _PLACEHOLDER_SECRETS
            ):
                raise ValueError(
                    "VOICECHAT_S3_SECRET_ACCESS_KEY: production refuses a default secret"
                )
            if (
                self.master_key is None
                or self.master_key.get_secret_value().lower() in _PLACEHOLDER_SECRETS
            ):
                raise ValueError(
                    "VOICECHAT_MASTER_KEY: production refuses a missing or default secret "
                    '(generate one: python -c "import os,base64;'
                    'print(base64.b64encode(os.urandom(32)).decode())")'
                )
            if self.jwt_private_key is None:
                raise ValueError(
                    "VOICECHAT_JWT_PRIVATE_KEY: production requires an Ed25519 private key (PEM)"
                )
        elif (
            self.master_key is not None
            and self.master_key.get_secret_value().lower() in _PLACEHOLDER_SECRETS
        ):
            raise ValueError("VOICECHAT_MASTER_KEY: must be base64 of 32 random bytes")
        return self

    @cached_property
    def embedded_postgres(self) -> bool:
        """True when no PostgreSQL is configured and the CLI starts its own."""
        return self.database_url is None

    @cached_property
    def embedded_valkey(self) -> bool:
        """True when no Valkey is configured and the CLI starts its own."""
        return self.valkey_url is None

    @property
    def public_base_url(self) -> str:
        """The configured public URL without a trailing slash, or `http://<host>:<port>`."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def files_dir(self) -> Path:
        """Where the local storage backend keeps objects when no storage URL is set."""
        if self.storage_url is not None and self.storage_url.startswith("file://"):
            return Path(self.storage_url.removeprefix("file://"))
        return self.data_dir / "files"


class SettingsError(Exception):
    """Configuration that cannot start the server; the message is one line for a person."""


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings, turning a validation error into one readable line.

    Args:
        **overrides: values from command-line flags; `None` means "not given".

    Raises:
        SettingsError: naming the first wrong variable.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, flags=set(given))) from None


def describe_validation_error(exc: ValidationError, *, flags: Collection[str] = ()) -> str:
    """One line per the first error: `VOICECHAT_PORT: <why> (got 'abc')`."""
    error = exc.errors(include_url=False)[0]
    loc = error.get("loc") or ()
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        # A model-level rule already names its variable in the message.
        return message
    field = str(loc[0])
    name = f"{ENV_PREFIX}{field.upper()}"
    if field in flags:
        name += f" (--{field.replace('_', '-')})"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or field in _SECRET_FIELDS else f" (got {got!r})"
    return f"{name}: {message}{shown}"


_SECRET_FIELDS = frozenset(
    {
        "database_url",
        "valkey_url",
        "master_key",
        "master_key_previous",
        "jwt_private_key",
        "oidc_providers",
        "s3_secret_access_key",
        "backup_key",
    }
)
