"""One SMTP delivery with aiosmtplib, configured by `VOICECHAT_SMTP_URL`.

URL forms (docs/accounts.md, "Mail settings"):

| URL | TLS | default port |
|---|---|---|
| `smtp://user:pass@host:port` | STARTTLS when the server offers it, plain otherwise | 25 |
| `smtp+starttls://user:pass@host:port` | STARTTLS required: no mail goes out without it | 587 |
| `smtps://user:pass@host:port` | TLS from the first byte (implicit TLS) | 465 |

User and password are percent-decoded and optional (no AUTH without them). Certificates are
checked against the system's CA bundle. The password lives only in the target: `describe()`
and every error message name the host and port, never it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

TlsMode = Literal["opportunistic", "starttls", "implicit"]
_SCHEMES: dict[str, tuple[TlsMode, int]] = {
    "smtp": ("opportunistic", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("implicit", 465),
}


class SmtpUnavailable(Exception):
    """The mail could not be handed to the SMTP server; the message names no secret."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to deliver mail."""

    host: str
    port: int
    tls: TlsMode
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """Parse `VOICECHAT_SMTP_URL`.

        Raises:
            ValueError: not one of the forms above (the message never repeats the URL).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError("must start with smtp://, smtp+starttls:// or smtps://")
        tls, default_port = _SCHEMES[scheme]
        try:
            port = parts.port or default_port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError("needs a host name (smtp://host:587)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("takes no path, query or fragment")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def describe(self) -> str:
        """`host:port (tls)` for logs: no user name or password."""
        return f"{self.host}:{self.port} ({self.tls})"

    async def send(
        self,
        sender: str,
        recipient: str,
        subject: str,
        body: str,
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Deliver one plain-text mail (`timeout`: aiosmtplib's own, per step).

        Raises:
            SmtpUnavailable: the server could not be reached, refused TLS or login, or refused
                the mail; the message says which, without the password.
        """
        message = EmailMessage()
        message["From"] = sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.host)
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls == "implicit",
                # None: STARTTLS if offered; True: required (aiosmtplib refuses without it).
                start_tls=True if self.tls == "starttls" else None,
                timeout=timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SmtpUnavailable(f"{self.describe()} refused the login: {exc.code}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpUnavailable(
                f"{self.describe()} answered {exc.code}: {_short(exc.message)}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise SmtpUnavailable(
                f"{self.describe()} unreachable: {type(exc).__name__}: {_short(str(exc))}"
            ) from None


def _short(text: str) -> str:
    return " ".join(text.split())[:200]
