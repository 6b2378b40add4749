"""Where the desktop client keeps its session tokens: the OS keyring, else a private file.

Only the token pair and who it belongs to are stored, never a password. Entries are keyed by
server URL, so one installation can stay logged in to several servers. In the keyring each
server is one entry of the service `voicechat-client`; without a usable keyring backend (a
headless machine, a container) they live in `tokens.json` under the client home, mode 0600 in
a 0700 directory. `VOICECHAT_CLIENT_TOKEN_STORE=file` (or `keyring`) forces a backend.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from voicechat.sdk.app.settings import client_home, write_private
from voicechat.sdk.crypto.store import keyring_available

log = logging.getLogger(__name__)

KEYRING_SERVICE = "voicechat-client"
TOKENS_FILE = "tokens.json"

Backend = Literal["keyring", "file"]


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A session to resume: its token pair and whose it is."""

    access_token: str
    refresh_token: str
    user_id: str | None = None
    username: str | None = None


def server_key(server_url: str) -> str:
    """The key for a server: its URL without a trailing slash, scheme and host lower-cased."""
    url = server_url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"


class TokenStore:
    """Session tokens per server URL.

    Args:
        home: the client home for the file backend (default: :func:`client_home`).
        backend: "keyring" or "file"; default: `VOICECHAT_CLIENT_TOKEN_STORE`, else the keyring
            when it has a usable backend, else the file.
    """

    def __init__(self, home: Path | None = None, *, backend: Backend | None = None) -> None:
        self.home = home if home is not None else client_home()
        chosen = backend or os.environ.get("VOICECHAT_CLIENT_TOKEN_STORE") or None
        if chosen not in (None, "keyring", "file"):
            raise ValueError("VOICECHAT_CLIENT_TOKEN_STORE must be 'keyring' or 'file'")
        self.backend: Backend = chosen or ("keyring" if keyring_available() else "file")  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        """The file of the file backend."""
        return self.home / TOKENS_FILE

    def load(self, server_url: str) -> StoredTokens | None:
        """The stored session for this server, if any."""
        raw = self._read_keyring(server_url) if self.backend == "keyring" else None
        if raw is None:
            raw = self._read_file().get(server_key(server_url))
        if not isinstance(raw, dict):
            return None
        try:
            return StoredTokens(
                access_token=str(raw["access_token"]),
                refresh_token=str(raw["refresh_token"]),
                user_id=raw.get("user_id"),
                username=raw.get("username"),
            )
        except KeyError:
            return None

    def save(self, server_url: str, tokens: StoredTokens) -> None:
        """Store (or replace) the session for this server."""
        if self.backend == "keyring":
            import keyring
            from keyring.errors import KeyringError

            try:
                keyring.set_password(
                    KEYRING_SERVICE, server_key(server_url), json.dumps(asdict(tokens))
                )
                return
            except KeyringError:
                log.warning("token store: the keyring refused the tokens; using the file")
        entries = self._read_file()
        entries[server_key(server_url)] = asdict(tokens)
        self._write_file(entries)

    def delete(self, server_url: str) -> None:
        """Forget the session for this server (both backends)."""
        if self.backend == "keyring":
            import keyring
            from keyring.errors import KeyringError, PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError, KeyringError):
                keyring.delete_password(KEYRING_SERVICE, server_key(server_url))
        entries = self._read_file()
        if entries.pop(server_key(server_url), None) is not None:
            self._write_file(entries)

    def _read_keyring(self, server_url: str) -> object:
        import keyring
        from keyring.errors import KeyringError

        try:
            stored = keyring.get_password(KEYRING_SERVICE, server_key(server_url))
        except KeyringError:
            return None
        if stored is None:
            return None
        try:
            return json.loads(stored)
        except ValueError:
            return None

    def _read_file(self) -> dict[str, object]:
        try:
            info = self.path.stat()
            if stat.S_IMODE(info.st_mode) & 0o077:
                # Someone widened it: narrow it again before reading secrets from it.
                self.path.chmod(0o600)
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("token store: %s is unreadable; no stored sessions", self.path)
            return {}
        return entries if isinstance(entries, dict) else {}

    def _write_file(self, entries: dict[str, object]) -> None:
        write_private(self.path, json.dumps(entries, indent=2) + "\n")
