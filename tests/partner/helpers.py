"""A small money history for the affiliate pages, worked out by hand, and reading the pages' figures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from affiliate.extensions import db
from affiliate.models import Commission, Payout, Program, User, utcnow
from affiliate.services.accrual import approve
from affiliate.services.payouts import approve_batch, build_batch, mark_paid
from tests.factories import Auth, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import _accrued, set_plan


@dataclass(frozen=True)
class History:
    program: Program
    alice: User
    bob: User


def signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def cards(html: str) -> dict[str, str]:
    """The summary cards as text: {"pending": "$10.00", "approved": ..., "next": "$30.00 to go ..."}."""
    found = re.findall(r'<div class="card" data-card="([a-z]+)">(.*?)</div>', html, re.S)
    return {name: " ".join(re.sub(r"<[^>]+>", " ", body).split()) for name, body in found}


def give_payout_details(app, user: User, days_ago: int = 10) -> None:
    with app.app_context():
        row = db.session.get(User, user.id)
        row.payout_method, row.payout_email = "paypal", f"pay-{row.id}@example.com"
        row.payout_details_changed_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()


def pay(app, affiliate: User, reference: str) -> None:
    """Build a batch, have a second person approve it, and mark the affiliate's payout paid."""
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        payout = db.session.scalar(db.select(Payout).where(Payout.affiliate_id == affiliate.id))
        assert mark_paid(db.session, payout, reference=reference, actor=db.session.get(User, checker.id), now=utcnow())
        db.session.commit()


def history(app) -> History:
    """Alice, at 10% with a $50.00 minimum: $60.00 paid (order A-PAID), $20.00 approved (A-APPROVED), $10.00 pending
    (A-PENDING). So her next payout is $30.00 away. Bob has $70.00 approved of his own (B-1)."""
    program = make_program(app, make_admin(app), name="Shoe Shop", minimum_payout_cents=5_000, hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app, name="Alice Archer")
    bob = make_affiliate(app, name="Bob Baker")
    give_payout_details(app, alice)
    paid = _accrued(app, program, alice, "A-PAID", 60_000)
    _approve(app, paid)
    pay(app, alice, "PP-1001")
    _approve(app, _accrued(app, program, alice, "A-APPROVED", 20_000))
    _accrued(app, program, alice, "A-PENDING", 10_000)
    _approve(app, _accrued(app, program, bob, "B-1", 70_000))
    return History(program, alice, bob)


def _approve(app, commission_id: int) -> None:
    with app.app_context():
        assert approve(db.session, db.session.get(Commission, commission_id), now=utcnow())
        db.session.commit()
