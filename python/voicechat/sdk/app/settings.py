"""The desktop client's own settings: one validated JSON file under the client home.

The client home is `VOICECHAT_CLIENT_HOME` when set, else the platform's user config directory
(`~/.config/voicechat` on Linux, `~/Library/Application Support/voicechat` on macOS,
`%LOCALAPPDATA%\\voicechat` on Windows). A file that cannot be read or fails validation is moved
aside (`settings.json.corrupt`) and replaced by defaults; `ClientSettings.problem` then says so
in a sentence for the person, and the client keeps starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"


def client_home() -> Path:
    """Where the client keeps its settings (and, without a keyring, its tokens)."""
    override = os.environ.get("VOICECHAT_CLIENT_HOME")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("voicechat", appauthor=False))


def write_private(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace `path` atomically with `text`, created with `mode` (never wider, not even
    for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def account_file(home: Path, folder: str, server_url: str, username: str, suffix: str) -> Path:
    """A file of one account on one server: `<home>/<folder>/<host>-<username><suffix>`."""
    host = re.sub(r"[^a-z0-9.-]+", "_", server_url.split("://", 1)[-1].lower())
    return home / folder / f"{host}-{username}{suffix}"


class AudioSettings(BaseModel):
    """What the Settings screen sets for voice; the fields of `voicechat.sdk.audio.AudioConfig`.

    `bitrate` and `frame_ms` left at None take the server's values from `voice.join`.
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    input_device: str | None = None
    output_device: str | None = None
    noise_suppression: bool = True
    mode: Literal["voice_activity", "push_to_talk"] = "voice_activity"
    bitrate: int | None = Field(None, ge=24000, le=96000)
    frame_ms: Literal[10, 20, 40, 60] | None = None


class ClientSettings(BaseModel):
    """The desktop client's settings (`settings.json` under :func:`client_home`).

    Use `ClientSettings.load()` and `settings.save()`; assignments are validated.
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    server_url: str = "http://127.0.0.1:8080"
    username: str | None = Field(None, max_length=64)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    ptt_key: str = Field("f8", min_length=1, max_length=32)
    user_volumes: dict[str, float] = Field(default_factory=dict)
    theme: Literal["dark", "light"] = "dark"
    download_dir: str | None = None

    _home: Path | None = PrivateAttr(None)
    _problem: str | None = PrivateAttr(None)

    @field_validator("server_url")
    @classmethod
    def _server_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            raise ValueError("the server address must start with http:// or https://")
        return url

    @field_validator("user_volumes")
    @classmethod
    def _volumes(cls, value: dict[str, float]) -> dict[str, float]:
        for user, volume in value.items():
            if not 0.0 <= volume <= 2.0:
                raise ValueError(f"the volume for {user} must be between 0.0 and 2.0")
        return value

    @property
    def home(self) -> Path:
        """The directory this settings object loads from and saves to."""
        return self._home if self._home is not None else client_home()

    @property
    def path(self) -> Path:
        """The settings file."""
        return self.home / SETTINGS_FILE

    @property
    def problem(self) -> str | None:
        """Why the stored settings could not be used (a sentence), if they could not."""
        return self._problem

    @classmethod
    def load(cls, home: Path | None = None) -> ClientSettings:
        """The stored settings, or defaults when there are none or they are unreadable."""
        home = home if home is not None else client_home()
        path = home / SETTINGS_FILE
        problem: str | None = None
        try:
            settings = cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            settings = cls()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = _reason(exc)
            backup = path.with_name(SETTINGS_FILE + ".corrupt")
            with contextlib.suppress(OSError):
                os.replace(path, backup)
            problem = (
                f"Your settings in {path} could not be read ({reason}), so the defaults are "
                f"used; the old file was kept as {backup.name}."
            )
            log.warning("client settings: %s", problem)
            settings = cls()
            settings._home = home
            settings.save()
        settings._home = home
        settings._problem = problem
        return settings

    def save(self) -> None:
        """Write the settings (atomically, readable by the user only)."""
        write_private(self.path, self.model_dump_json(indent=2) + "\n")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        return f"{where}: {first['msg']}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at line {exc.lineno}"
    return type(exc).__name__
