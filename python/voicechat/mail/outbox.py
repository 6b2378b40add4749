"""The mail outbox's sender: delivers what requests queued in `mail_outbox`, retrying with
backoff while SMTP is down.

Invariants:

- A request that sends mail commits the row (in its own transaction) and wakes the local
  sender; it never talks to SMTP itself, so an SMTP outage never fails or slows a request, and
  a mail is never lost while PostgreSQL keeps the row.
- Every API instance runs a sender. A sender claims due rows with a lease (`next_attempt_at`
  pushed `LEASE_SECONDS` ahead, `FOR UPDATE SKIP LOCKED`), so two instances never send the same
  row at once, and a row claimed by a sender that died is sent by another after the lease.
- A delivered row is deleted (its body may hold a token). A failure is logged (host, port and
  the server's answer; never the password or the body) and retried after
  min(2^(attempts-1), `mail_retry_max_seconds`) seconds. Mail whose content has expired (the
  token inside is dead) is dropped unsent and logged at error level.
- `stop()` cancels the loop and returns at once, even in the middle of an SMTP exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from voicechat.db.pool import Pool
from voicechat.db.repositories.accounts import MailOutbox
from voicechat.mail.smtp import SmtpTarget, SmtpUnavailable

log = logging.getLogger(__name__)

#: How long a claimed mail is left to its sender before another may retry it.
LEASE_SECONDS = 120.0
#: How often the outbox is looked at without a wake-up (mail queued by another instance).
POLL_SECONDS = 5.0
#: Mail handed to SMTP per claim.
BATCH = 20


@dataclass(frozen=True, slots=True)
class MailMetrics:
    """Where the sender reports (the API passes its Prometheus metrics)."""

    sent: Callable[[], None] = lambda: None
    failed: Callable[[], None] = lambda: None
    dropped: Callable[[int], None] = lambda count: None
    pending: Callable[[int], None] = lambda count: None


class MailSender:
    """The background sender of one API instance."""

    def __init__(
        self,
        db: Pool,
        target: SmtpTarget | None,
        *,
        sender: str,
        timeout: float,
        retry_max_seconds: float,
        metrics: MailMetrics | None = None,
    ) -> None:
        self._db = db
        self.target = target
        self._sender = sender
        self._timeout = timeout
        self._retry_max = retry_max_seconds
        self._metrics = metrics or MailMetrics()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The last delivery's outcome, for /health: None until one was tried.
        self.last_error: str | None = None

    @property
    def configured(self) -> bool:
        """True when an SMTP server is configured (otherwise nothing is ever queued)."""
        return self.target is not None

    def start(self) -> None:
        """Start delivering (a no-op without SMTP configured)."""
        if self.target is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="mail-outbox")

    async def stop(self) -> None:
        """Stop at once; what is still queued stays in the outbox for the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self) -> None:
        """Look at the outbox now (a request just queued mail)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                more = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # PostgreSQL down or a bug: keep the loop alive, say so
                log.exception("the mail outbox could not be read; retrying")
                more = False
            if more:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def deliver_due(self) -> bool:
        """Send what is due; True when a full batch went (more may be waiting)."""
        assert self.target is not None
        async with self._db.acquire() as conn:
            outbox = MailOutbox(conn)
            dropped = await outbox.drop_expired()
            claimed = await outbox.claim(limit=BATCH, lease_seconds=LEASE_SECONDS)
        for gone in dropped:
            log.error(
                "mail %s to %s dropped unsent after %s attempts: its content expired (%s)",
                gone["id"],
                _mask(gone["recipient"]),
                gone["attempts"],
                gone["last_error"] or "never delivered",
            )
        if dropped:
            self._metrics.dropped(len(dropped))
        for mail in claimed:
            try:
                await self.target.send(
                    self._sender, mail.recipient, mail.subject, mail.body, timeout=self._timeout
                )
            except SmtpUnavailable as exc:
                delay = min(2.0 ** (mail.attempts - 1), self._retry_max)
                self.last_error = str(exc)
                self._metrics.failed()
                log.warning(
                    "mail %s to %s not delivered (attempt %s), retrying in %.0f s: %s",
                    mail.id,
                    _mask(mail.recipient),
                    mail.attempts,
                    delay,
                    exc,
                )
                async with self._db.acquire() as conn:
                    await MailOutbox(conn).defer(mail.id, delay_seconds=delay, error=str(exc))
                continue
            self.last_error = None
            self._metrics.sent()
            async with self._db.acquire() as conn:
                await MailOutbox(conn).sent(mail.id)
            log.info("mail %s delivered to %s", mail.id, _mask(mail.recipient))
        async with self._db.acquire() as conn:
            self._metrics.pending(await MailOutbox(conn).pending())
        return len(claimed) == BATCH


def _mask(address: str) -> str:
    """`a***@example.org`: enough for an operator to match a complaint, not a mailing list."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}"
