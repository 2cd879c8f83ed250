"""Deadlocks PostgreSQL breaks are run again, not answered with a 500.

The conversion and commission rollups are kept by triggers, so two transactions that change the money of two
affiliates in opposite orders update the same rollup rows in opposite orders, however each service orders its own
rows: PostgreSQL ends one of them to break the deadlock. The loser kept nothing; the portal and the money jobs run
it again (affiliate.database.retrying). Here one reviewer's decision is held open half-way (it has changed one of
Alice's sales) while another reviewer decides Bob's and Alice's in that order through the portal; the first then
reaches Bob's. The portal's request is made the deadlock's loser (its server's deadlock_timeout is the shorter), so
without the retry its reviewer gets a 500 and nothing they chose changes. On SQLite one writer at a time cannot
deadlock, so the test is PostgreSQL's.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from affiliate.extensions import db
from affiliate.models import Conversion, utcnow
from affiliate.services import review
from tests.factories import Auth, csrf_token, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import report, set_plan


def waiting_for_a_lock(app) -> bool:
    with app.app_context():
        return bool(
            db.session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        )


def test_a_review_decision_that_loses_a_deadlock_is_run_again_and_done(app, database_uri):
    if database_uri.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: nothing to deadlock")
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    # Ids in this order: Alice's first, Bob's first, Alice's second, Bob's second; all flagged, the same day.
    a1, b1, a2, b2 = (
        report(app, program, affiliate.id, order, 10_000, status="flagged")
        for affiliate, order in ((alice, "a-1"), (bob, "b-1"), (alice, "a-2"), (bob, "b-2"))
    )
    finance, other = make_finance(app, email="fin@example.com"), make_finance(app, email="fin2@example.com")
    reviewer = app.test_client()
    Auth(reviewer).login(other.email)
    token = csrf_token(reviewer.get("/finance/review/").get_data(as_text=True))
    answers = []

    def decide_through_the_portal() -> None:
        try:
            answers.append(
                reviewer.post(
                    "/finance/review/decide", data={"ids": [b1, a2], "decision": "approve", "csrf_token": token}
                ).status_code
            )
        except Exception as error:  # the test app propagates a request's error: a 500 in production
            answers.append(repr(error))

    with app.app_context():
        db.session.execute(text("SET deadlock_timeout = '20s'"))  # this side waits out the portal's second
        assert review.decide(db.session, [a1], "approve", actor_id=finance.id, note=None, now=utcnow()) == [a1]
        portal = threading.Thread(target=decide_through_the_portal)
        portal.start()
        deadline = time.monotonic() + 30
        while not waiting_for_a_lock(app):  # Bob's row taken, waiting for Alice's that this side holds
            assert time.monotonic() < deadline, "the portal's decision never waited for this one"
            time.sleep(0.05)
        assert review.decide(db.session, [b2], "approve", actor_id=finance.id, note=None, now=utcnow()) == [b2]
        db.session.commit()
        db.session.execute(text("RESET deadlock_timeout"))
    portal.join(timeout=60)
    assert answers == [302]
    with app.app_context():
        statuses = dict(db.session.execute(select(Conversion.id, Conversion.status)).all())
    assert statuses == {a1: "approved", b1: "approved", a2: "approved", b2: "approved"}
