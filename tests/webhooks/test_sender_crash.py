"""The delivery sender as production runs it, a `flask send-webhooks --loop` process: killed with SIGKILL mid-send
it loses nothing and delivers each message at least once, every copy with the same id and a valid signature; two
senders at once never send the same message twice.

The senders are real subprocesses on the test's database (SQLite or PostgreSQL) and send to the https receiver on
loopback (tests/webhooks/receivers.py), which hangs in the middle of a batch so the kill lands while a message is
in flight. They sign with the real time, so the receiver verifies with it too.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from affiliate import delivery
from affiliate.database import reading
from affiliate.extensions import db
from affiliate.models import Delivery, utcnow
from affiliate.services import webhooks
from tests.factories import make_admin, make_program
from tests.senders import Sender, eventually
from tests.webhooks.receivers import Receiver, add_endpoint

BATCH = inspect.signature(delivery.send_due).parameters["limit"].default  # what one round of the sender claims
PATH = "/hooks/clicktrail"


def webhook_sender(name: str, database_uri: str, instance: Path, *, claim_seconds: int) -> Sender:
    """`flask send-webhooks --loop`, allowed to reach the loopback receiver as the test suite's settings are."""
    settings = {"OUTBOUND_ALLOW_LOOPBACK": "1", "DELIVERY_CLAIM_SECONDS": str(claim_seconds)}
    return Sender("send-webhooks", name, database_uri, instance, settings, dropped=("SMTP_", "DELIVERY_"))


@dataclass(frozen=True)
class Row:
    number: int
    message_id: str
    attempts: int
    delivered: bool
    held: bool  # claimed by a sender: not due before a time still ahead


def queue_events(app: Flask, hooks: Receiver, count: int) -> dict[int, str]:
    """An endpoint at the receiver and ``count`` events for it, all due at once; message id by event number."""
    hooks.clock = utcnow
    admin = make_admin(app)
    program = make_program(app, admin)
    endpoint = add_endpoint(app, program, admin, hooks.url(PATH))
    hooks.secrets[PATH] = [endpoint.secret]
    now = utcnow()
    with app.app_context():
        for number in range(count):
            webhooks.emit(db.session, program.id, "link.created", {"number": number}, now=now)
        db.session.commit()
        db.session.remove()
    return {row.number: row.message_id for row in delivery_rows(app).values()}


def delivery_rows(app: Flask) -> dict[int, Row]:
    """Every delivery, by the number of its event."""
    with app.app_context():
        try:
            with reading(db.session):
                rows = [
                    Row(
                        event_number(row.body),
                        row.message_id,
                        row.attempts,
                        row.status == "delivered",
                        row.next_attempt_at > utcnow(),
                    )
                    for row in db.session.scalars(select(Delivery))
                ]
        finally:
            db.session.remove()
    return {row.number: row for row in rows}


def event_number(body: str) -> int:
    return json.loads(body)["data"]["number"]


def arrived(hooks: Receiver) -> Counter[int]:
    """How many copies of each event the receiver took, every one verified with the endpoint's secret."""
    received = list(hooks.at(PATH))
    assert all(request.verified for request in received), "a copy whose signature did not verify"
    return Counter(request.payload["data"]["number"] for request in received)


MESSAGES = 20
THROUGH = 5  # deliveries the receiver answers before it hangs


@pytest.mark.parametrize("receiver_took_it", [True, False], ids=["receiver-took-the-message", "receiver-lost-it"])
def test_a_sender_killed_mid_send_loses_nothing_and_delivers_each_message_at_least_once(
    app, hooks, database_uri, tmp_path, receiver_took_it
):
    ids = queue_events(app, hooks, MESSAGES)
    numbers = sorted(ids)  # also the order a sender claims and sends them (all due at once, by id)
    hooks.hold, hooks.hold_after, hooks.drop_held = threading.Event(), THROUGH, not receiver_took_it
    senders: list[Sender] = []
    try:
        first = webhook_sender("first", database_uri, tmp_path / "first", claim_seconds=2)
        senders.append(first)
        eventually(hooks.holding.is_set, "the first sender reaches the hanging receiver", first)
        first.kill()  # waiting for the answer to delivery THROUGH, the rest of its batch claimed and unsent

        at_kill = delivery_rows(app)
        assert sorted(arrived(hooks)) == numbers[:THROUGH]
        assert {row.number for row in at_kill.values() if row.delivered} == set(numbers[:THROUGH]), (
            "marked delivered exactly what the receiver had answered"
        )
        in_flight = {row.number for row in at_kill.values() if not row.delivered}
        assert in_flight == set(numbers[THROUGH:])
        assert {row.number: row.attempts for row in at_kill.values()} == {
            number: 1 if number <= THROUGH else 0 for number in numbers
        }, "the first sender tried what it reached, once, and nothing it had claimed but not reached"

        hooks.hold.set()  # the receiver goes on: it takes or (drop_held) loses the message the dead sender sent
        second = webhook_sender("second", database_uri, tmp_path / "second", claim_seconds=2)
        senders.append(second)
        eventually(lambda: set(numbers) <= set(arrived(hooks)), "every message arrives", second)
        eventually(lambda: all(r.delivered for r in delivery_rows(app).values()), "every one is marked", second)
    finally:
        for sender in senders:
            sender.kill()

    copies = arrived(hooks)
    assert set(copies) == set(numbers), "nothing lost"
    duplicates = {number for number, count in copies.items() if count > 1}
    assert duplicates <= in_flight, "only a message in flight at the kill may arrive twice"
    # Exactly one was in flight: the receiver either took it (then the resend is a second copy) or lost it.
    assert duplicates == ({THROUGH} if receiver_took_it else set())
    assert max(copies.values()) <= 2
    for request in hooks.at(PATH):
        assert request.headers["webhook-id"] == ids[request.payload["data"]["number"]], (
            "every copy of a message has its one id, so the receiver can drop the second"
        )
    # Delivered before the kill: tried once. In flight: tried by the first sender, then again by the second. The
    # rest: claimed by the first sender, which never reached them, and tried once, by the second.
    assert {row.number: row.attempts for row in delivery_rows(app).values()} == {
        number: 2 if number == THROUGH else 1 for number in numbers
    }


PAIR_MESSAGES = 2 * BATCH + 20


def test_two_senders_at_once_deliver_every_message_exactly_once(app, hooks, database_uri, tmp_path):
    ids = queue_events(app, hooks, PAIR_MESSAGES)
    # The first request of each sender waits, so both claim a batch before either is answered.
    hooks.hold = threading.Event()
    senders: list[Sender] = []
    try:
        for name in ("one", "two"):
            senders.append(webhook_sender(name, database_uri, tmp_path / name, claim_seconds=60))

        def claimed() -> int:
            return sum(row.held for row in delivery_rows(app).values())

        eventually(lambda: claimed() >= 2 * BATCH, "both senders claim a batch", *senders)
        assert claimed() == 2 * BATCH, "two batches, no message in both"
        hooks.hold.set()
        eventually(lambda: set(ids) <= set(arrived(hooks)), "every message arrives", *senders)
        eventually(lambda: all(r.delivered for r in delivery_rows(app).values()), "every one is marked", *senders)
        eventually(lambda: sum(sender.sent() for sender in senders) >= PAIR_MESSAGES, "senders report", *senders)
    finally:
        for sender in senders:
            sender.kill()

    copies = arrived(hooks)
    assert copies == Counter(set(ids)), f"each message once; twice: {[n for n, c in copies.items() if c > 1]}"
    assert sorted(request.headers["webhook-id"] for request in hooks.at(PATH)) == sorted(ids.values())
    assert all(row.delivered and row.attempts == 1 for row in delivery_rows(app).values()), "no claim taken twice"
    assert all(sender.sent() >= BATCH for sender in senders), "\n".join(sender.output() for sender in senders)
