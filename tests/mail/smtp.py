"""A real SMTP server on loopback (aiosmtpd) that tests read delivered mail from."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class Inbox:
    """What the server accepted, in order; ``refuse`` makes it answer every DATA with a temporary failure.

    ``hold``, while an unset Event, makes DATA wait (a server that hangs mid-send), once ``hold_after``
    messages have arrived; ``holding`` is set when a DATA starts waiting. The whole server waits with it.
    Let go, the held message is taken, or with ``drop_held`` refused (the server never took it).
    """

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: bool = False
    hold: threading.Event | None = None
    hold_after: int = 0
    drop_held: bool = False
    holding: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope) -> str:
        hold = self.hold
        if hold is not None and not hold.is_set() and len(self.messages) >= self.hold_after:
            self.holding.set()
            hold.wait(60)
            if self.drop_held:
                return "451 4.3.0 Try again later"
        if self.refuse:
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if address in message["To"]]

    def wait_for(self, check: Callable[[list[EmailMessage]], bool], timeout: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not check(self.messages):
                left = deadline - time.monotonic()
                assert left > 0, f"mail never arrived; have {[m['Subject'] for m in self.messages]}"
                self.arrived.wait(left)
        return list(self.messages)


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.inbox.hold is not None:
            self.inbox.hold.set()
        self.stop()

    def stop(self) -> None:
        """Stop listening (a test may do it early, to see an unreachable server); stopping twice is fine."""
        if self.controller._thread is not None:
            self.controller.stop()

    @property
    def settings(self) -> dict:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": self.port, "SMTP_TLS": "none"}


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()
