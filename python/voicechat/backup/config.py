"""The configuration a backup carries: the settings the server was given, secrets included,
and the key files a development setup keeps in its data dir."""

from __future__ import annotations

import json
import os
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from voicechat.settings import ENV_PREFIX, Settings


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path | IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def settings_snapshot(settings: Settings) -> dict[str, Any]:
    """Every setting that was given (not left at its default), secrets in the clear, except the
    backup key itself: whoever can open the backup has it already, and it must live elsewhere."""
    names = sorted(settings.model_fields_set - {"backup_key"})
    snapshot = {name: _plain(getattr(settings, name)) for name in names}
    for name in ("database_url", "valkey_url"):
        if is_embedded(settings, name):
            # `serve` filled in the URL of the embedded server it started: not configuration,
            # and a restored data dir gets servers (and passwords) of its own.
            snapshot.pop(name, None)
    return snapshot


_EMBEDDED_PASSWORDS = {
    "database_url": Path("postgres") / "voicechat.password",
    "valkey_url": Path("valkey") / "password",
}


def is_embedded(settings: Settings, name: str) -> bool:
    """Whether `database_url` / `valkey_url` is unset or the embedded server's own (as `serve`
    resolves it for the app)."""
    value = getattr(settings, name)
    if value is None:
        return True
    try:
        password = (settings.data_dir / _EMBEDDED_PASSWORDS[name]).read_text().strip()
    except OSError:
        return False
    url = value.get_secret_value()
    return bool(password) and f":{password}@127.0.0.1:" in url


def env_file_text(snapshot: dict[str, Any]) -> str:
    """The snapshot as `VOICECHAT_*=` lines a `.env` file (python-dotenv) reads back."""
    lines = ["# Settings of the server this backup was made from (voicechat backup restore)."]
    for name, value in sorted(snapshot.items()):
        text = value if isinstance(value, str) else json.dumps(value)
        quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{ENV_PREFIX}{name.upper()}="{quoted}"')
    return "\n".join(lines) + "\n"


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (0600, in a 0700 directory) through a temporary name."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.restoring")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def ensure_data_dir(settings: Settings) -> None:
    """Create the data dir as `serve` would: as root traversable (0711) by the service user
    the embedded PostgreSQL runs as, else 0700."""
    if not settings.data_dir.exists():
        settings.data_dir.mkdir(parents=True, mode=0o711 if os.geteuid() == 0 else 0o700)
