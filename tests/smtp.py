"""A local SMTP sink (aiosmtpd): the outside world of the e-mail job, the only fake we use."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.services import free_port, until


@dataclasses.dataclass
class Delivered:
    recipients: list[str]
    message: EmailMessage


class SinkHandler:
    """Stores every message; refuses the first `failures` with a temporary error (451)."""

    def __init__(self, failures: int = 0, hold: bool = False) -> None:
        self.failures = failures
        self.refused = 0
        self.delivered: list[Delivered] = []
        self.receiving = threading.Event()  # set when a message's DATA has arrived
        self.release = threading.Event()  # with hold=True, the answer waits for this
        if not hold:
            self.release.set()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.to_thread(self.release.wait, 60)
        with self._lock:
            if self.refused < self.failures:
                self.refused += 1
                return "451 4.3.0 Try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.delivered.append(Delivered(list(envelope.rcpt_tos), message))
        return "250 OK"


@dataclasses.dataclass
class SmtpSink:
    handler: SinkHandler
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def wait_for(self, count: int, deadline: float = 60.0) -> list[Delivered]:
        await until(lambda: len(self.handler.delivered) >= count, f"{count} e-mail(s)", deadline)
        return self.handler.delivered


@contextmanager
def smtp_sink(failures: int = 0, hold: bool = False) -> Iterator[SmtpSink]:
    handler = SinkHandler(failures, hold)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSink(handler, port)
    finally:
        handler.release.set()
        controller.stop()
