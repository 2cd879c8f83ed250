"""The money services' row locks make their lockers take turns without holding up sales and refunds.

Each holder below takes its locks on PostgreSQL in an open transaction, as it would in the middle of its work;
meanwhile a sale naming the same affiliate and program is stored, and a refund of one of the affiliate's sales.
With locks that also blocked foreign-key checks (``FOR UPDATE``), the sale waited for the holder to commit, and
a refund that held its sale's lock deadlocked against the money job (docs/money.md, "Concurrency"). On SQLite
the single writer makes every writer wait its turn by design, so the test is PostgreSQL's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from affiliate.extensions import db
from affiliate.models import Conversion, ConversionType, Program, User, utcnow
from affiliate.services import accrual, adjustments, groups, payouts, stripe_events
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report, set_plan

WAIT = "3s"  # far longer than storing a sale takes; a sale held up by a lock fails with "lock timeout"


def evaluating(world) -> Callable[[], object]:
    def hold():
        conversion = db.session.get(Conversion, world["unevaluated"])
        return accrual.evaluate_conversion(db.session, conversion, now=utcnow())

    return hold


def building_a_payout_batch(world) -> Callable[[], object]:
    return lambda: payouts.build_batch(db.session, "USD", actor=db.session.get(User, world["admin"]), now=utcnow())


def adding_a_group(world) -> Callable[[], object]:
    return lambda: groups.create_group(db.session, world["program"], "Gold", actor_id=world["admin"], now=utcnow())


def moving_the_affiliate(world) -> Callable[[], object]:
    def hold():
        group = groups.create_group(db.session, world["program"], "Silver", actor_id=world["admin"], now=utcnow())
        return groups.move(
            db.session, world["program"], [world["alice"]], group.id, actor_id=world["admin"], now=utcnow()
        )

    return hold


def adding_an_adjustment(world) -> Callable[[], object]:
    def hold():
        request = adjustments.AdjustmentRequest(world["alice"], world["program"], "bonus", 500, "A launch bonus")
        admin = db.session.get(User, world["admin"])
        return adjustments.create(db.session, request, actor=admin, thresholds={"*": 10_000}, now=utcnow())

    return hold


def receiving_a_stripe_event(world) -> Callable[[], object]:
    def hold():
        event = {"id": "evt_lock", "type": "customer.created", "created": int(time.time()), "data": {"object": {}}}
        return stripe_events.receive(db.session, db.session.get(Program, world["program"]), event, now=utcnow())

    return hold


HOLDERS = [
    evaluating,
    building_a_payout_batch,
    adding_a_group,
    moving_the_affiliate,
    adding_an_adjustment,
    receiving_a_stripe_event,
]


@contextmanager
def holding(app, take: Callable[[], object]) -> Iterator[None]:
    """Run ``take`` in its own thread and transaction, and keep that transaction open for the block."""
    held, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            try:
                take()
                db.session.flush()
            except BaseException as error:  # reported by the test, after the block
                failure.append(error)
            finally:
                held.set()
                release.wait(timeout=60)
                db.session.rollback()
                db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert held.wait(timeout=60), "the holder never took its locks"
        yield
    finally:
        release.set()
        thread.join(timeout=60)
    assert not failure, failure


@pytest.fixture
def world(app, database_uri):
    if database_uri.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: every write waits for the holder by design")
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    report(app, program, alice.id, "refundable", 10_000)
    unevaluated = report(app, program, alice.id, "waiting-for-the-job", 10_000)
    return {"admin": admin.id, "program": program.id, "alice": alice.id, "unevaluated": unevaluated}


@pytest.mark.parametrize("holder", HOLDERS, ids=lambda holder: holder.__name__)
def test_a_sale_and_a_refund_are_stored_while_a_money_service_holds_its_locks(app, world, holder):
    with holding(app, holder(world)), app.app_context():
        db.session.execute(text(f"SET LOCAL lock_timeout = '{WAIT}'"))
        program = db.session.get(Program, world["program"])
        request = ConversionRequest(type=ConversionType.SALE, order_id="meanwhile", amount_cents=2_500, currency="USD")
        sale = record_conversion(db.session, program, request, now=utcnow()).conversion
        sale.affiliate_id = world["alice"]  # credited as attribution would credit it
        db.session.flush()
        sale_id = sale.id
        refund = record_refund(
            db.session, program, RefundRequest(order_id="refundable", amount_cents=1_000), now=utcnow()
        )
        db.session.commit()
        assert refund.created and refund.conversion.affiliate_id == world["alice"]
    with app.app_context():
        stored = db.session.get(Conversion, sale_id)
        assert stored.affiliate_id == world["alice"] and stored.amount_cents == 2_500
