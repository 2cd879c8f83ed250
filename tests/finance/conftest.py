"""Affiliates owed money in USD, each paid by another method, for the payout pages' tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from affiliate.extensions import db
from affiliate.models import Program, User, utcnow
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import set_plan
from tests.money.test_payouts import _earn


@dataclass(frozen=True)
class Owed:
    program: Program
    alice: User  # PayPal, owed 60.00
    bob: User  # Wise, owed 70.00; his name is a spreadsheet formula
    carol: User  # bank, owed 80.00
    dan: User  # PayPal, owed 20.00: below the 50.00 minimum
    erin: User  # PayPal, owed 90.00 but changed her payout details today


def set_details(
    app,
    user: User,
    method: str,
    *,
    email: str | None = None,
    name: str | None = None,
    iban: str | None = None,
    days_ago: int = 10,
) -> None:
    with app.app_context():
        row = db.session.get(User, user.id)
        row.payout_method, row.payout_email, row.payout_account_name, row.payout_iban = method, email, name, iban
        row.payout_details_changed_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()


@pytest.fixture
def owed(app) -> Owed:
    program = make_program(app, make_admin(app), minimum_payout_cents=5_000)
    set_plan(app, program.id, percent_bps=1_000)
    people = {
        "alice": make_affiliate(app, name="Alice Archer"),
        "bob": make_affiliate(app, name='=HYPERLINK("https://evil.test","Bob")'),
        "carol": make_affiliate(app, name="Carol Cruz"),
        "dan": make_affiliate(app, name="Dan Dale"),
        "erin": make_affiliate(app, name="Erin Eve"),
    }
    for key, cents in (("alice", 6_000), ("bob", 7_000), ("carol", 8_000), ("dan", 2_000), ("erin", 9_000)):
        _earn(app, program, people[key], cents, f"{key}-order-1")
    set_details(app, people["alice"], "paypal", email="alice.pay@example.com")
    set_details(app, people["bob"], "wise", email="bob.wise@example.com")
    set_details(app, people["carol"], "bank", name="Carol Cruz", iban="GB82WEST12345698765432")
    set_details(app, people["dan"], "paypal", email="dan@example.com")
    set_details(app, people["erin"], "paypal", email="erin@example.com", days_ago=0)
    return Owed(program=program, **people)
