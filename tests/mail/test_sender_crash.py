"""The sender as production runs it, a `flask send-mail --loop` process: killed mid-send it loses nothing and
sends each message at least once; two at once never send the same message twice.

The senders are real subprocesses on the test's database (SQLite or PostgreSQL) and the loopback SMTP server;
the server hangs in the middle of a batch (``Inbox.hold``) so the kill lands while a message is in flight.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from affiliate import mail
from affiliate.database import reading
from affiliate.extensions import db
from affiliate.models import OutboxMessage, utcnow
from affiliate.services import outbox
from tests.mail.smtp import Inbox, SmtpServer
from tests.senders import Sender, eventually

MAIL_FROM = "Clicktrail <no-reply@clicktrail.example>"
BATCH = inspect.signature(mail.send_due).parameters["limit"].default  # what one round of `send-mail` claims


def mail_sender(name: str, database_uri: str, smtp: SmtpServer, instance: Path, *, claim_seconds: int) -> Sender:
    """`flask send-mail --loop` on the test's database and SMTP server, and no SMTP or mail setting of our own."""
    settings = {key: str(value) for key, value in smtp.settings.items()}
    settings |= {"MAIL_FROM": MAIL_FROM, "MAIL_CLAIM_SECONDS": str(claim_seconds)}
    return Sender("send-mail", name, database_uri, instance, settings, dropped=("SMTP_", "MAIL_"))


@dataclass(frozen=True)
class Row:
    subject: str
    attempts: int
    sent: bool
    held: bool  # claimed by a sender: not due before a time still ahead


def queue_messages(app, count: int, label: str) -> dict[str, int]:
    """Queue ``count`` messages with distinct subjects, all due at once; their ids by subject."""
    now = utcnow()
    with app.app_context():
        messages = [
            outbox.queue(
                db.session,
                kind="test",
                to=f"reader{n}@example.com",
                subject=f"{label} {n:03d}",
                text=f"Message {n}\n",
                html=f"<p>Message {n}</p>",
                now=now,
            )
            for n in range(count)
        ]
        db.session.commit()
        ids = {message.subject: message.id for message in messages}
        db.session.remove()
    return ids


def outbox_rows(app) -> dict[str, Row]:
    with app.app_context():
        try:
            with reading(db.session):
                return {
                    row.subject: Row(row.subject, row.attempts, row.sent_at is not None, row.next_attempt_at > utcnow())
                    for row in db.session.scalars(select(OutboxMessage))
                }
        finally:
            db.session.remove()


def received(inbox: Inbox) -> list[EmailMessage]:
    with inbox.arrived:
        return list(inbox.messages)


def message_id(outbox_id: int) -> str:
    return f"<clicktrail-outbox-{outbox_id}@clicktrail.example>"


MESSAGES = 20
THROUGH = 5  # messages the server accepts before it hangs


@pytest.mark.parametrize("server_took_it", [True, False], ids=["server-took-the-message-in-flight", "server-lost-it"])
def test_a_sender_killed_mid_send_loses_nothing_and_sends_each_message_at_least_once(
    app, smtp, database_uri, tmp_path, server_took_it
):
    ids = queue_messages(app, MESSAGES, "Crash")
    subjects = sorted(ids)  # also the order a sender claims and sends them (all due at once, by id)
    held = subjects[THROUGH]
    inbox = smtp.inbox
    inbox.hold, inbox.hold_after, inbox.drop_held = threading.Event(), THROUGH, not server_took_it
    senders: list[Sender] = []
    try:
        first = mail_sender("first", database_uri, smtp, tmp_path / "first", claim_seconds=2)
        senders.append(first)
        eventually(inbox.holding.is_set, "the first sender reaches the hanging server", first)
        first.kill()  # blocked in the DATA of `held`, the rest of its batch claimed and unsent

        at_kill = outbox_rows(app)
        assert [m["Subject"] for m in received(inbox)] == subjects[:THROUGH]
        assert {row.subject for row in at_kill.values() if row.sent} == set(subjects[:THROUGH]), (
            "marked sent exactly what the server had accepted"
        )
        in_flight = {row.subject for row in at_kill.values() if not row.sent}
        assert in_flight == set(subjects[THROUGH:])
        assert {subject: row.attempts for subject, row in at_kill.items()} == {
            subject: 1 if subject <= held else 0 for subject in subjects
        }, "the first sender tried what it reached, once, and nothing it had claimed but not reached"

        inbox.hold.set()  # the server goes on: it takes or (drop_held) refuses the message the dead sender sent
        second = mail_sender("second", database_uri, smtp, tmp_path / "second", claim_seconds=2)
        senders.append(second)
        eventually(lambda: set(subjects) <= {m["Subject"] for m in received(inbox)}, "every message arrives", second)
        eventually(lambda: all(row.sent for row in outbox_rows(app).values()), "every message is marked sent", second)
    finally:
        for sender in senders:
            sender.kill()

    messages = received(inbox)
    copies = Counter(m["Subject"] for m in messages)
    assert set(copies) == set(subjects), "nothing lost"
    final = outbox_rows(app)
    assert all(row.sent for row in final.values())
    duplicates = {subject for subject, count in copies.items() if count > 1}
    assert duplicates <= in_flight, "only a message in flight at the kill may arrive twice"
    # Here exactly one was in flight: the server either took it (then the resend is a second copy) or lost it.
    assert duplicates == ({held} if server_took_it else set())
    assert max(copies.values()) <= 2
    for received_message in messages:
        assert received_message["Message-ID"] == message_id(ids[received_message["Subject"]]), (
            "every copy of a message has its one Message-ID, so a receiver can drop the second"
        )
    # Sent before the kill: tried once. In flight: tried by the first sender, then again by the second. The rest:
    # claimed by the first sender, which never reached them, and tried once, by the second.
    assert {subject: row.attempts for subject, row in final.items()} == {
        subject: 2 if subject == held else 1 for subject in subjects
    }


PAIR_MESSAGES = 2 * BATCH + 20


def test_two_senders_at_once_send_every_message_exactly_once(app, smtp, database_uri, tmp_path):
    ids = queue_messages(app, PAIR_MESSAGES, "Pair")
    inbox = smtp.inbox
    # The first DATA waits (and the whole server with it), so each sender claims a batch before either sends.
    inbox.hold = threading.Event()
    senders: list[Sender] = []
    try:
        for name in ("one", "two"):
            senders.append(mail_sender(name, database_uri, smtp, tmp_path / name, claim_seconds=60))

        def claimed() -> int:
            return sum(row.held for row in outbox_rows(app).values())

        eventually(lambda: claimed() >= 2 * BATCH, "both senders claim a batch", *senders)
        assert claimed() == 2 * BATCH, "two batches, no message in both"
        inbox.hold.set()
        eventually(lambda: set(ids) <= {m["Subject"] for m in received(inbox)}, "every message arrives", *senders)
        eventually(lambda: all(row.sent for row in outbox_rows(app).values()), "every message is marked sent", *senders)
        eventually(lambda: sum(sender.sent() for sender in senders) >= PAIR_MESSAGES, "senders report", *senders)
    finally:
        for sender in senders:
            sender.kill()

    messages = received(inbox)
    copies = Counter(m["Subject"] for m in messages)
    assert copies == Counter(set(ids)), f"each message once; twice: {[s for s, n in copies.items() if n > 1]}"
    assert sorted(m["Message-ID"] for m in messages) == sorted(message_id(outbox_id) for outbox_id in ids.values())
    assert all(row.sent and row.attempts == 1 for row in outbox_rows(app).values()), "no claim was taken twice"
    assert all(sender.sent() >= BATCH for sender in senders), "\n".join(sender.output() for sender in senders)
