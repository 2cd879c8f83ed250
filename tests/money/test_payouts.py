"""Payout batches: amounts from the ledger, maker-checker, each payout settled exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Commission, LedgerTransaction, Payout, PayoutBatch, Program, User, utcnow
from affiliate.services import payouts as payouts_service
from affiliate.services.accrual import approve
from affiliate.services.ledger import balance, check
from affiliate.services.payouts import PayoutError, approve_batch, build_batch, mark_failed, mark_paid
from tests.factories import make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import _accrued, set_plan


def _earn(app, program, affiliate, cents: int, order: str) -> None:
    commission = _accrued(app, program, affiliate, order, cents * 10)  # at 10%
    with app.app_context():
        approve(db.session, db.session.get(Commission, commission), now=utcnow())
        db.session.commit()


def _details(app, affiliate, changed_days_ago: int = 10) -> None:
    with app.app_context():
        user = db.session.get(User, affiliate.id)
        user.payout_method, user.payout_email = "paypal", f"pay-{user.id}@example.com"
        user.payout_details_changed_at = utcnow() - timedelta(days=changed_days_ago)
        db.session.commit()


@pytest.fixture
def owed(app):
    """Alice is owed 60.00, Bob 20.00 (below the 50.00 minimum), Carol 70.00 but changed her details today."""
    program = make_program(app, make_admin(app), minimum_payout_cents=5_000)
    set_plan(app, program.id, percent_bps=1_000)
    people = {name: make_affiliate(app, name=name) for name in ("Alice", "Bob", "Carol")}
    for name, cents in (("Alice", 6_000), ("Bob", 2_000), ("Carol", 7_000)):
        _earn(app, program, people[name], cents, f"{name}-1")
        _details(app, people[name], changed_days_ago=0 if name == "Carol" else 10)
    return people


def test_a_batch_pays_from_the_ledger_and_needs_a_second_person(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        batch, held = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        db.session.commit()
        payouts = db.session.scalars(select(Payout).where(Payout.batch_id == batch.id)).all()
        assert [(p.affiliate_id, p.amount_cents) for p in payouts] == [(owed["Alice"].id, 6_000)]
        assert [h.affiliate_id for h in held] == [owed["Carol"].id] and "held" in held[0].reason
        assert balance(db.session, f"affiliate_payable:{owed['Alice'].id}", "USD") == 0
        with pytest.raises(PayoutError, match="cannot approve"):
            approve_batch(db.session, batch, approver=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        db.session.commit()
        assert db.session.get(PayoutBatch, batch.id).status == "approved"
        again, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        assert again is None, "nobody is owed the minimum any more"
        assert check(db.session) == []


def test_four_concurrent_clicks_pay_a_payout_once(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        db.session.commit()
        payout_id = db.session.scalar(select(Payout.id).where(Payout.batch_id == batch.id))
    results: list[bool] = []
    start = threading.Barrier(4)

    def click() -> None:
        with app.app_context():
            start.wait()
            payout = db.session.get(Payout, payout_id)
            results.append(
                mark_paid(db.session, payout, reference="PP-1", actor=db.session.get(User, checker.id), now=utcnow())
            )
            db.session.commit()

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, False, False, True]
    with app.app_context():
        paid = select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "payout_paid")
        assert db.session.scalar(paid) == 1
        assert db.session.scalar(select(Commission.status).where(Commission.affiliate_id == owed["Alice"].id)) == "paid"
        assert balance(db.session, "cash", "USD") == -6_000
        assert check(db.session) == []


def test_two_finance_users_building_at_once_reserve_each_balance_once(app, owed):
    makers = [make_finance(app), make_finance(app)]
    start = threading.Barrier(2)
    built: list[int] = []

    def build(maker) -> None:
        with app.app_context():
            start.wait()
            batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
            db.session.commit()
            if batch is not None:
                built.append(batch.id)

    threads = [threading.Thread(target=build, args=(maker,)) for maker in makers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(built) == 1, "the second build finds nothing left to pay"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 1
        assert balance(db.session, "payout_clearing", "USD") == -6_000
        assert check(db.session) == []


def test_a_failed_payout_returns_to_the_balance(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        payout = db.session.scalar(select(Payout).where(Payout.batch_id == batch.id))
        assert mark_failed(
            db.session, payout, reason="PayPal account closed", actor=db.session.get(User, checker.id), now=utcnow()
        )
        assert not mark_paid(db.session, payout, reference="late", actor=db.session.get(User, checker.id), now=utcnow())
        db.session.commit()
        assert balance(db.session, f"affiliate_payable:{owed['Alice'].id}", "USD") == -6_000
        assert balance(db.session, "payout_clearing", "USD") == 0
        assert check(db.session) == []


@pytest.mark.parametrize("scan_share", [0, 10**9], ids=["through-the-index", "reading-the-table"])
def test_a_batch_links_exactly_its_payees_approved_commissions(app, owed, monkeypatch, scan_share):
    """However the commissions are found (the build chooses by the batch's share of the table), a payout
    carries its affiliate's approved commissions not yet in a payout, and nobody else's."""
    monkeypatch.setattr(payouts_service, "SCAN_SHARE", scan_share)
    with app.app_context():
        program = db.session.scalar(select(Program))
        db.session.expunge(program)
    _earn(app, program, owed["Alice"], 1_000, "Alice-2")
    maker = make_finance(app)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        db.session.commit()
        payout = db.session.scalar(select(Payout).where(Payout.batch_id == batch.id))
        linked = db.session.execute(
            select(Commission.affiliate_id, Commission.payout_id).where(Commission.payout_id.is_not(None))
        ).all()
        assert sorted(linked) == [(owed["Alice"].id, payout.id)] * 2
        unlinked = db.session.scalars(select(Commission.affiliate_id).where(Commission.payout_id.is_(None))).all()
        assert sorted(unlinked) == sorted([owed["Bob"].id, owed["Carol"].id])
