"""The client address behind trusted proxies, and only behind them.

Live: the server trusts 127.0.0.1 alone; a client connecting from 127.0.0.5 (another loopback
address) is an untrusted peer whose forwarding headers must be ignored, while requests from
127.0.0.1 play the proxy whose headers are believed. What the server took as the address is
read back from the sessions list, the audit log and the per-IP login limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD, bearer
from voicechat.api.proxies import TrustedProxies

PROXY = "127.0.0.1"
STRANGER = "127.0.0.5"


# -- the resolution rules ------------------------------------------------------------------

_LOOPBACK_AND_LAN = TrustedProxies([ip_network("127.0.0.0/8"), ip_network("10.0.0.0/8")])


def _xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v.encode()) for v in values]


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # An untrusted peer is the client, whatever it claims.
        ("203.0.113.9", _xff("198.51.100.1"), "203.0.113.9"),
        # A trusted peer's header names the client...
        ("127.0.0.1", _xff("198.51.100.1"), "198.51.100.1"),
        # ...read right to left past every trusted hop, ignoring what the client prepended.
        ("127.0.0.1", _xff("6.6.6.6, 198.51.100.1, 10.1.2.3"), "198.51.100.1"),
        ("127.0.0.1", _xff("6.6.6.6", "198.51.100.1"), "198.51.100.1"),
        # Every hop trusted: the farthest one is the best we know.
        ("127.0.0.1", _xff("10.0.0.7, 10.0.0.8"), "10.0.0.7"),
        # Garbage stops the walk at the last trusted hop.
        ("127.0.0.1", _xff("198.51.100.1, not-an-ip"), "127.0.0.1"),
        ("127.0.0.1", _xff("198.51.100.1, unknown, 10.0.0.2"), "10.0.0.2"),
        # No header: the proxy itself.
        ("127.0.0.1", [], "127.0.0.1"),
        # Ports and IPv6.
        ("127.0.0.1", _xff("198.51.100.1:5555"), "198.51.100.1"),
        ("127.0.0.1", _xff("[2001:db8::1]:443"), "2001:db8::1"),
        ("::ffff:127.0.0.1", _xff("2001:db8::2"), "2001:db8::2"),
        # The other header is not believed.
        ("127.0.0.1", [(b"forwarded", b"for=198.51.100.1")], "127.0.0.1"),
    ],
)
def test_x_forwarded_for_is_read_right_to_left_from_trusted_peers_only(
    peer: str, headers: list[tuple[bytes, bytes]], client: str
) -> None:
    assert _LOOPBACK_AND_LAN.resolve(peer, headers)[0] == client


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("for=198.51.100.1", "198.51.100.1"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=6.6.6.6, for=198.51.100.1;proto=https, for=10.0.0.1", "198.51.100.1"),
        ('for=198.51.100.1;by="10.0.0.1";host="a,b"', "198.51.100.1"),
        ("for=_hidden, for=10.0.0.3", "10.0.0.3"),
        ("proto=https", "127.0.0.1"),
    ],
)
def test_forwarded_elements_are_read_the_same_way(value: str, client: str) -> None:
    proxies = TrustedProxies(_LOOPBACK_AND_LAN.networks, "forwarded")
    headers = [(b"forwarded", value.encode()), (b"x-forwarded-for", b"7.7.7.7")]
    assert proxies.resolve("127.0.0.1", headers)[0] == client


def test_no_trusted_proxies_means_no_header_is_believed() -> None:
    assert TrustedProxies([]).resolve("127.0.0.1", _xff("198.51.100.1"))[0] == "127.0.0.1"


def test_the_scheme_comes_from_a_trusted_proxy() -> None:
    headers = [*_xff("198.51.100.1"), (b"x-forwarded-proto", b"https")]
    assert _LOOPBACK_AND_LAN.resolve("127.0.0.1", headers) == ("198.51.100.1", "https")
    assert _LOOPBACK_AND_LAN.resolve("203.0.113.9", headers) == ("203.0.113.9", None)


# -- against a live server -----------------------------------------------------------------


def _server(
    factory: Callable[..., LiveServer],
    database_url: str,
    valkey: str,
    tmp_path: Path,
    **env: str,
) -> LiveServer:
    return factory(
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            "VOICECHAT_TRUSTED_PROXIES": f"{PROXY}/32",
            **env,
        }
    )


@contextmanager
def _client_from(server: LiveServer, source: str) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=server.base_url, timeout=10) as client:
        yield client


def _session_ips(client: httpx.Client, username: str, headers: dict[str, str]) -> list[str]:
    registered = client.post(
        "/auth/register",
        json={"username": username, "password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert registered.status_code == 201, registered.text
    sessions = client.get("/auth/sessions", headers=bearer(registered.json()["access_token"]))
    assert sessions.status_code == 200, sessions.text
    return [s["ip_address"] for s in sessions.json()]


async def _audit_ips(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT DISTINCT host(ip_address) AS ip FROM audit_log")
        return {row["ip"] for row in rows}
    finally:
        await conn.close()


async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored_and_a_proxys_is_used(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    server = _server(
        live_server_factory,
        database_url,
        clean_valkey,
        tmp_path,
        VOICECHAT_RATE_LIMIT_LOGIN_IP="2/minute",
    )
    spoof = {"X-Forwarded-For": "198.51.100.66", "Forwarded": "for=198.51.100.67"}
    with _client_from(server, STRANGER) as stranger:
        assert _session_ips(stranger, "stranger", spoof) == [STRANGER]
    with _client_from(server, PROXY) as proxy:
        # What the client sent first is not believed, what our proxy appended is.
        behind = {"X-Forwarded-For": "6.6.6.6, 203.0.113.10"}
        assert _session_ips(proxy, "behind", behind) == ["203.0.113.10"]
    assert await _audit_ips(database_url) == {STRANGER, "203.0.113.10"}

    def bad_login(client: httpx.Client, headers: dict[str, str]) -> int:
        return client.post(
            "/auth/login", json={"username": "nobody", "password": "wrong"}, headers=headers
        ).status_code

    # Per-IP limits: a stranger changing its header is still one address...
    with _client_from(server, STRANGER) as stranger:
        assert [bad_login(stranger, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(3)] == [
            401,
            401,
            429,
        ]
    # ...while two clients behind the proxy are two.
    with _client_from(server, PROXY) as proxy:
        first = {"X-Forwarded-For": "203.0.113.20"}
        assert [bad_login(proxy, first) for _ in range(3)] == [401, 401, 429]
        assert bad_login(proxy, {"X-Forwarded-For": "203.0.113.21"}) == 401


async def test_a_proxy_speaking_rfc_7239_forwarded(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    server = _server(
        live_server_factory,
        database_url,
        clean_valkey,
        tmp_path,
        VOICECHAT_PROXY_CLIENT_HEADER="forwarded",
    )
    with _client_from(server, PROXY) as proxy:
        headers = {
            "Forwarded": 'for=6.6.6.6, for="[2001:db8::5]:4711";proto=https',
            "X-Forwarded-For": "198.51.100.99",
        }
        assert _session_ips(proxy, "rfc", headers) == ["2001:db8::5"]
    with _client_from(server, STRANGER) as stranger:
        assert _session_ips(stranger, "rfc2", {"Forwarded": "for=198.51.100.1"}) == [STRANGER]
