"""The desktop side of SSO: a one-shot HTTP listener on loopback that catches the redirect.

RFC 8252 §7.3: the client listens on 127.0.0.1 on a port the OS picks, passes
`http://127.0.0.1:<port>/sso/callback` as `redirect_uri`, and opens the provider's page in the
system browser. The server finishes the OIDC flow and redirects the browser to that URI with a
one-time `login_code`, which the client exchanges for tokens. Nothing but that one path is
answered; the listener closes as soon as it has the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from urllib.parse import parse_qs, urlsplit

CALLBACK_PATH = "/sso/callback"
MAX_REQUEST_BYTES = 16 * 1024


class SsoError(Exception):
    """The single sign-on did not complete; the message is for a person."""


_DONE_PAGE = """<!doctype html><meta charset="utf-8"><title>voicechat</title>
<body style="font-family:sans-serif;margin:3em"><h1>{title}</h1><p>{text}</p></body>
"""


class LoopbackRedirect:
    """Waits for the browser's redirect to `http://127.0.0.1:<port>/sso/callback`.

    Use as `async with LoopbackRedirect() as redirect:` and `await redirect.login_code()`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[str] | None = None

    @property
    def redirect_uri(self) -> str:
        """The URI to pass to the server as `redirect_uri`."""
        assert self._server is not None, "start the listener first"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{self._host}:{port}{CALLBACK_PATH}"

    async def __aenter__(self) -> LoopbackRedirect:
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._serve, self._host, 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def login_code(self, timeout: float = 300.0) -> str:
        """The `login_code` the browser brought back.

        Raises:
            SsoError: the provider or the server refused the login, or nobody came back
                within `timeout` seconds.
        """
        assert self._result is not None, "start the listener first"
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError:
            raise SsoError("The sign-in page was not completed in time. Try again.") from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        if len(head) > MAX_REQUEST_BYTES:
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        target = parts[1] if len(parts) == 3 and parts[0] == "GET" else ""
        url = urlsplit(target)
        if url.path != CALLBACK_PATH:
            await _answer(writer, 404, "Not found", "This address only takes sign-in redirects.")
            return
        query = parse_qs(url.query)
        code = (query.get("login_code") or [""])[0]
        assert self._result is not None
        if code:
            await _answer(
                writer, 200, "Signed in", "You are signed in to voicechat. You can close this tab."
            )
            if not self._result.done():
                self._result.set_result(code)
            return
        error = (query.get("error_description") or query.get("error") or ["no login code"])[0]
        await _answer(writer, 400, "Sign-in failed", f"The sign-in did not complete: {error}")
        if not self._result.done():
            self._result.set_exception(SsoError(f"The sign-in did not complete: {error}."))


async def _answer(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
    body = _DONE_PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        "Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()
