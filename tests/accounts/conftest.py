"""A real SMTP server (aiosmtpd) on loopback, and the app configured to send through it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session

from tests.utils.net import free_port
from voicechat.settings import Settings


class Mailbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    async def wait_for(self, to: str, count: int = 1, within: float = 20) -> list[Message]:
        """The mails to `to`, once at least `count` arrived."""
        async with asyncio.timeout(within):
            while True:
                found = [m for m in self.messages if m["To"] == to]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.05)


def token_of(mail: Message) -> str:
    """The one-time code a mail carries."""
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    match = re.search(r"token=([A-Za-z0-9_-]+)", payload.decode())
    assert match is not None, payload
    return match.group(1)


class SmtpServer:
    """aiosmtpd on a loopback port that can be stopped and started again (an outage)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A running SMTP server."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    smtp: SmtpServer,
) -> Settings:
    """The test's settings, mailing through `smtp`, retrying quickly."""
    return settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        mail_from="voicechat@example.org",
        mail_retry_max_seconds=1,
        public_url="https://chat.example.org",
    )
