"""GUI test fixtures: a virtual X display of our own, and where screenshots go.

Kivy opens its window when `kivy.core.window` is first imported and cannot reopen it in the
same process, so the display and Kivy's environment are set up before anything imports Kivy,
and the GUI tests are one scenario per process (`test_client.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.utils.net import free_port
from tests.utils.oidc import running_provider

ROOT = Path(__file__).resolve().parents[2]
SCREEN = "1280x800x24"


@pytest.fixture(scope="module")
def x_display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Xvfb server; DISPLAY and Kivy's settings point at it while the module runs."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("Xvfb is not installed (scripts/test.sh installs the xvfb package)")
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", SCREEN, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        kivy_home = tmp_path_factory.mktemp("kivy-home")
        env = {
            "DISPLAY": f":{number}",
            "KIVY_HOME": str(kivy_home),
            "KIVY_NO_ARGS": "1",
            "KIVY_NO_CONSOLELOG": "1",
            "KIVY_NO_FILELOG": "1",
            "KIVY_LOG_MODE": "PYTHON",
            # No sound system in the tests' window (the voice engine runs device-less).
            "SDL_AUDIODRIVER": "dummy",
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield env["DISPLAY"]
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots are kept after the run: `$VOICECHAT_TEST_ARTIFACTS/gui`, else
    `tests/artifacts/gui` (ignored by git)."""
    base = os.environ.get("VOICECHAT_TEST_ARTIFACTS")
    folder = (Path(base) if base else ROOT / "tests" / "artifacts") / "gui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def oidc_issuer(tmp_path: Path) -> Iterator[str]:
    """A running `oidc-provider-mock` on loopback (the SSO provider); yields its issuer URL."""
    with running_provider(tmp_path / "oidc-provider.log") as idp:
        yield idp.issuer


@pytest.fixture
def sso_server_env(
    database_url: str, clean_valkey: str, oidc_issuer: str, tmp_path: Path
) -> dict[str, str]:
    """The environment of a live server on this test's database and Valkey that offers one
    SSO provider (the port is fixed, so a restarted server is the same address)."""
    providers = [
        {
            "id": "corp",
            "name": "Corp SSO",
            "issuer": oidc_issuer,
            "client_id": "voicechat-corp",
            "client_secret": "secret-of-corp",
        }
    ]
    return {
        "VOICECHAT_PORT": str(free_port()),
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
        "VOICECHAT_OIDC_PROVIDERS": json.dumps(providers),
    }


@pytest.fixture
def sso_server(
    live_server_factory: Callable[..., LiveServer], sso_server_env: dict[str, str]
) -> LiveServer:
    """A live server offering one SSO provider (see `sso_server_env`)."""
    return live_server_factory(sso_server_env)
