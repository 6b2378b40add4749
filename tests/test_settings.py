"""Settings: defaults, validation messages that name the variable, production rules."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicechat.settings import Environment, SettingsError, load_settings

GOOD_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("VOICECHAT_"):
            monkeypatch.delenv(name)
    # No stray .env from the working directory.
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_spec() -> None:
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.media_port == 10000
    assert settings.env is Environment.DEVELOPMENT
    assert settings.embedded_postgres
    assert settings.embedded_valkey
    assert str(settings.public_ip) == "127.0.0.1"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOICECHAT_PORT", "9090")
    monkeypatch.setenv("VOICECHAT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("VOICECHAT_VALKEY_URL", "valkey://localhost:6379/0")
    settings = load_settings()
    assert settings.port == 9090
    assert settings.data_dir == tmp_path / "d"
    assert settings.valkey_url is not None
    assert settings.valkey_url.get_secret_value() == "redis://localhost:6379/0"
    assert not settings.embedded_valkey


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECHAT_PORT", "9090")
    assert load_settings(port="7000", host=None).port == 7000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VOICECHAT_PORT", "abc"),
        ("VOICECHAT_PORT", "70000"),
        ("VOICECHAT_MEDIA_PORT", "-1"),
        ("VOICECHAT_MEDIA_WORKERS", "0"),
        ("VOICECHAT_VOICE_BITRATE", "8000"),
        ("VOICECHAT_VOICE_FRAME_MS", "15"),
        ("VOICECHAT_ENV", "staging"),
        ("VOICECHAT_DATABASE_URL", "mysql://x"),
        ("VOICECHAT_VALKEY_URL", "http://x"),
        ("VOICECHAT_STORAGE_URL", "ftp://x"),
        ("VOICECHAT_STORAGE_URL", "file://relative/path"),
        ("VOICECHAT_PUBLIC_IP", "not-an-ip"),
        ("VOICECHAT_MASTER_KEY", "c2hvcnQ="),
        ("VOICECHAT_LOG_LEVEL", "loud"),
        ("VOICECHAT_RATE_LIMIT_LOGIN", "lots"),
        ("VOICECHAT_OIDC_PROVIDERS", '[{"id": "x"}]'),
    ],
)
def test_a_wrong_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}:")
    assert "\n" not in message


def test_media_threads_must_fit_below_the_last_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECHAT_MEDIA_PORT", "65535")
    monkeypatch.setenv("VOICECHAT_MEDIA_WORKERS", "2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("VOICECHAT_MEDIA_WORKERS: ports VOICECHAT_MEDIA_PORT")
    monkeypatch.setenv("VOICECHAT_MEDIA_PORT", "65534")
    assert load_settings().media_workers == 2


def test_secrets_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECHAT_DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_unknown_variable_in_config_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "voicechat.toml"
    config.write_text('port = 8181\ncolour = "blue"\n')
    monkeypatch.setenv("VOICECHAT_CONFIG_FILE", str(config))
    with pytest.raises(SettingsError, match="VOICECHAT_COLOUR"):
        load_settings()


def test_config_file_is_read_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "voicechat.toml"
    config.write_text('port = 8181\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("VOICECHAT_CONFIG_FILE", str(config))
    monkeypatch.setenv("VOICECHAT_HOST", "127.0.0.2")
    settings = load_settings()
    assert settings.port == 8181
    assert settings.host == "127.0.0.2"


@pytest.mark.parametrize("key", [None, "changeme", "secret"])
def test_production_refuses_default_secrets(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    monkeypatch.setenv("VOICECHAT_ENV", "production")
    if key is not None:
        monkeypatch.setenv("VOICECHAT_MASTER_KEY", key)
    with pytest.raises(SettingsError, match="VOICECHAT_MASTER_KEY"):
        load_settings()


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def test_production_requires_a_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECHAT_ENV", "production")
    monkeypatch.setenv("VOICECHAT_MASTER_KEY", GOOD_KEY)
    with pytest.raises(SettingsError, match="VOICECHAT_JWT_PRIVATE_KEY"):
        load_settings()


def test_signing_key_must_be_ed25519(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    monkeypatch.setenv("VOICECHAT_JWT_PRIVATE_KEY", pem)
    with pytest.raises(SettingsError, match="VOICECHAT_JWT_PRIVATE_KEY: must be an Ed25519"):
        load_settings()


def test_production_starts_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECHAT_ENV", "production")
    monkeypatch.setenv("VOICECHAT_MASTER_KEY", GOOD_KEY)
    monkeypatch.setenv("VOICECHAT_JWT_PRIVATE_KEY", _ed25519_pem())
    assert load_settings().env is Environment.PRODUCTION


def test_serve_with_a_bad_port_exits_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECHAT_")}
    env["VOICECHAT_PORT"] = "abc"
    env["VOICECHAT_DATA_DIR"] = str(tmp_path / "never-created")
    result = subprocess.run(
        [sys.executable, "-m", "voicechat", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "VOICECHAT_PORT" in lines[0]
    assert "Traceback" not in result.stderr
    # Nothing was started or created for a configuration that cannot run.
    assert not (tmp_path / "never-created").exists()
