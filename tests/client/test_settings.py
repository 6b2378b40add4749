"""Client settings and the token store on disk, without a server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from voicechat.sdk.app import AudioSettings, ClientSettings, StoredTokens, TokenStore, client_home


def test_settings_persist_between_runs(home: Path) -> None:
    assert client_home() == home
    fresh = ClientSettings.load()
    assert fresh.problem is None
    assert fresh.server_url == "http://127.0.0.1:8080"
    fresh.server_url = "https://chat.example.com/"
    fresh.username = "alice"
    fresh.ptt_key = "ctrl"
    fresh.user_volumes = {"a1b2": 1.5}
    fresh.audio = AudioSettings(mode="push_to_talk", bitrate=32000, noise_suppression=False)
    fresh.save()

    again = ClientSettings.load()
    assert again.server_url == "https://chat.example.com"
    assert (again.username, again.ptt_key, again.user_volumes) == ("alice", "ctrl", {"a1b2": 1.5})
    assert again.audio.mode == "push_to_talk"
    assert again.audio.bitrate == 32000
    assert not again.audio.noise_suppression


def test_bad_values_are_refused_when_set(home: Path) -> None:
    settings = ClientSettings.load()
    with pytest.raises(ValidationError, match="http:// or https://"):
        settings.server_url = "chat.example.com"
    with pytest.raises(ValidationError):
        settings.audio = AudioSettings(bitrate=8000)
    with pytest.raises(ValidationError, match=r"between 0\.0 and 2\.0"):
        settings.user_volumes = {"x": 3.0}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"server_url": "ftp://nope"}), "server_url"),
        (json.dumps({"audio": {"bitrate": 1}}), "audio.bitrate"),
        (json.dumps(["a", "list"]), "could not be read"),
    ],
)
def test_a_corrupt_file_is_reported_and_replaced_by_defaults(
    home: Path, content: str, reason: str
) -> None:
    home.mkdir(parents=True)
    (home / "settings.json").write_text(content)
    settings = ClientSettings.load()
    assert settings.problem is not None
    assert reason in settings.problem
    assert "defaults" in settings.problem
    assert settings.server_url == "http://127.0.0.1:8080"
    # The broken file is kept for the person to look at, and a good one replaces it.
    assert (home / "settings.json.corrupt").read_text() == content
    assert ClientSettings.load().problem is None


def test_the_token_file_is_private_and_holds_no_password(home: Path) -> None:
    store = TokenStore()
    assert store.backend == "file"
    assert store.load("http://127.0.0.1:8080") is None
    store.save("http://127.0.0.1:8080/", StoredTokens("access-1", "refresh-1", "u1", "alice"))
    store.save("https://other.example", StoredTokens("access-2", "refresh-2", "u2", "alice"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) & 0o077 == 0
    text = store.path.read_text()
    assert "password" not in text
    assert set(json.loads(text)["http://127.0.0.1:8080"]) == {
        "access_token",
        "refresh_token",
        "user_id",
        "username",
    }
    loaded = store.load("HTTP://127.0.0.1:8080")
    assert loaded == StoredTokens("access-1", "refresh-1", "u1", "alice")

    store.path.chmod(0o644)
    assert store.load("https://other.example") is not None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600, "narrowed again on read"

    store.delete("http://127.0.0.1:8080")
    assert store.load("http://127.0.0.1:8080") is None
    assert store.load("https://other.example") is not None
