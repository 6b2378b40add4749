"""The real client address behind trusted reverse proxies (`VOICECHAT_TRUSTED_PROXIES`).

A forwarding header is only as honest as whoever wrote it. A client can send any
`X-Forwarded-For` it likes; what a proxy we trust appended to it is the only part we know to
be true. So the chain is walked from the right (the hop nearest to us) to the left, skipping
addresses of trusted proxies; the first address that is not a trusted proxy is the client.
A peer that is not a trusted proxy is the client itself, whatever it sends.

One header is believed, chosen by `VOICECHAT_PROXY_CLIENT_HEADER`: `x-forwarded-for` (Traefik,
nginx's `$proxy_add_x_forwarded_for`, HAProxy) or `forwarded` (RFC 7239). Believing both would
let a client spoof the one its proxy passes through untouched.

:class:`TrustedProxyMiddleware` rewrites the ASGI scope's `client` (and `scheme`, from
`X-Forwarded-Proto` or `proto=`) once per HTTP request or WebSocket, before anything else
runs, so sessions, the audit log, the access log, rate limits and the gateway's per-IP caps
all read the same address: :func:`client_ip` of the request or WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
ProxyClientHeader = Literal["x-forwarded-for", "forwarded"]

#: Loopback only: a proxy on the same host. Compose sets the proxy's network (docker/).
DEFAULT_TRUSTED_PROXIES: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

_MAX_REMEMBERED_PEERS = 4096

_SCHEMES = {
    "http": ("http", "ws"),
    "https": ("https", "wss"),
}


def client_ip(connection: HTTPConnection) -> str:
    """The caller's address: the peer, or the client a trusted proxy reported.

    Use this (not a header) for anything keyed by address: sessions, audit, per-IP limits.
    """
    return connection.client.host if connection.client is not None else ""


class TrustedProxies:
    """The networks whose forwarding headers are believed, and how to read them."""

    def __init__(
        self, networks: Iterable[Network], header: ProxyClientHeader = "x-forwarded-for"
    ) -> None:
        self.networks = tuple(networks)
        self.header = header
        self._header_name = header.encode()
        # Peers are few (the proxies, or clients seen directly): remember each verdict.
        self._verdicts: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        """Whether `address` (a peer's host) is one of our proxies."""
        verdict = self._verdicts.get(address)
        if verdict is None:
            parsed = _parse_address(address)
            verdict = parsed is not None and any(parsed in net for net in self.networks)
            if len(self._verdicts) >= _MAX_REMEMBERED_PEERS:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict

    def resolve(self, peer: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, str | None]:
        """The client's address and, if a trusted proxy said so, the original scheme.

        Args:
            peer: the socket peer's host.
            headers: the raw ASGI headers (lower-case names).
        """
        if not self.networks or not self.trusts(peer):
            return peer, None
        values = [value.decode("latin-1") for name, value in headers if name == self._header_name]
        if not values and (
            self.header == "forwarded" or all(name != b"x-forwarded-proto" for name, _ in headers)
        ):
            return peer, None
        if self.header == "forwarded":
            hops, protos = _forwarded_elements(values)
        else:
            hops = [hop.strip() for value in values for hop in value.split(",")]
            protos = [
                value.decode("latin-1").split(",")[-1].strip().lower()
                for name, value in headers
                if name == b"x-forwarded-proto"
            ][-1:]
        client = peer
        for hop in reversed(hops):
            parsed = _parse_address(hop)
            if parsed is None:
                # "unknown", an obfuscated name, garbage: nothing left of it can be trusted;
                # the last trusted hop is the best we know.
                break
            client = str(parsed)
            if not any(parsed in net for net in self.networks):
                break
        proto = protos[-1] if protos else None
        return client, proto if proto in _SCHEMES else None


class TrustedProxyMiddleware:
    """Sets the scope's client (and scheme) from a trusted proxy's forwarding headers."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if peer is not None:
                host, proto = self.proxies.resolve(peer[0], scope.get("headers", ()))
                if host != peer[0] or proto is not None:
                    scope = dict(scope)
                    # The port is the proxy's, not the client's; keep it only if we kept the host.
                    scope["client"] = (host, peer[1] if host == peer[0] else 0)
                    if proto is not None:
                        http_scheme, ws_scheme = _SCHEMES[proto]
                        scope["scheme"] = ws_scheme if scope["type"] == "websocket" else http_scheme
        await self.app(scope, receive, send)


def _parse_address(text: str) -> IPv4Address | IPv6Address | None:
    """An address out of a hop: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `2001:db8::1`."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        parsed = ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _forwarded_elements(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """The `for=` of every element of RFC 7239 `Forwarded` headers, and their `proto=`s."""
    hops: list[str] = []
    protos: list[str] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            hop = "unknown"  # an element without for= is a hop we cannot see past
            for pair in _split_outside_quotes(element, ";"):
                name, _, raw = pair.partition("=")
                name = name.strip().lower()
                if name == "for":
                    hop = raw.strip()
                elif name == "proto":
                    protos.append(raw.strip().strip('"').lower())
            hops.append(hop)
    return hops, protos


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in (p.strip() for p in parts) if part]
