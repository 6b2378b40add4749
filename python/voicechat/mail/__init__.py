"""Account mail (docs/accounts.md): SMTP delivery (`smtp.py`), plain-text templates
(`templates/`), and the outbox sender that retries while SMTP is down (`outbox.py`)."""

from voicechat.mail.outbox import MailSender
from voicechat.mail.smtp import SmtpTarget, SmtpUnavailable
from voicechat.mail.templates import render

__all__ = ["MailSender", "SmtpTarget", "SmtpUnavailable", "render"]
