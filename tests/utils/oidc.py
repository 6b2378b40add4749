"""A real OIDC provider for tests: `oidc-provider-mock` as its own process on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.utils.net import free_port


@dataclass
class MockProvider:
    """A running `oidc-provider-mock` process."""

    issuer: str
    process: subprocess.Popen[bytes]

    def put_user(self, sub: str, claims: dict[str, Any]) -> None:
        """Register (or replace) the claims the provider asserts for `sub`."""
        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5)
        assert response.status_code == 204, response.text

    def stop(self) -> None:
        """Terminate the process and wait for it."""
        self.process.terminate()
        self.process.wait(10)


def start_provider(log_path: Path) -> MockProvider:
    """Start a provider on a free port and wait until it serves its discovery document; its
    output goes to `log_path`, shown when it fails to start."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    provider = MockProvider(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"oidc-provider-mock exited:\n{log_path.read_text()}")
        try:
            url = f"{provider.issuer}/.well-known/openid-configuration"
            if httpx.get(url, timeout=1).is_success:
                return provider
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    provider.stop()
    raise AssertionError(f"oidc-provider-mock did not start:\n{log_path.read_text()}")


@contextmanager
def running_provider(log_path: Path) -> Iterator[MockProvider]:
    """A provider for the duration of the `with` block."""
    provider = start_provider(log_path)
    try:
        yield provider
    finally:
        provider.stop()
