"""Outgoing mail: SMTP (aiosmtplib) when TASKAPI_SMTP_URL is set, else the log.

TASKAPI_SMTP_URL forms: `smtp://host:25` (plain), `smtp://user:pass@host:587?starttls=true`
(STARTTLS, the usual submission port), `smtps://user:pass@host:465` (implicit TLS).
"""

from __future__ import annotations

import dataclasses
import logging
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from taskapi.settings import Settings

log = logging.getLogger(__name__)
SMTP_ERRORS: tuple[type[BaseException], ...] = (aiosmtplib.SMTPException, OSError, TimeoutError)


@dataclasses.dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        implicit = parts.scheme == "smtps"
        query = parse_qs(parts.query)
        start_tls = query.get("starttls", ["false"])[0].lower() in {"1", "true", "yes"}
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=start_tls,
        )


class Mailer:
    """Sends one message; raises one of SMTP_ERRORS when the server refuses or is away."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.timeout = settings.smtp_timeout_seconds
        self.target = SmtpTarget.from_url(settings.smtp_url) if settings.smtp_url else None

    async def send(self, recipient: str, subject: str, body: str) -> None:
        if self.target is None:
            log.info("mail (no SMTP configured) to=%s subject=%r body=%r", recipient, subject, body)
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = subject
        message.set_content(body)
        target = self.target
        await aiosmtplib.send(
            message,
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            timeout=self.timeout,
        )
        log.info("mail sent to=%s subject=%r", recipient, subject)
