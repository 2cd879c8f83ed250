"""The ledger: balanced, idempotent postings, rows the database will not change, and ledger-check."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from affiliate.extensions import db
from affiliate.models import LedgerEntry, LedgerTransaction, utcnow
from affiliate.services.ledger import ConflictingPosting, Leg, UnbalancedPosting, balance, check, post, post_new
from tests.factories import make_affiliate


@pytest.fixture
def payable(app) -> tuple[str, int]:
    """An affiliate's payable account and id."""
    affiliate = make_affiliate(app)
    return f"affiliate_payable:{affiliate.id}", affiliate.id


def accrual(payable, cents: int = 1_250) -> list[Leg]:
    account, affiliate_id = payable
    return [Leg("commission_expense", cents, "USD"), Leg(account, -cents, "USD", affiliate_id)]


def test_balanced_postings_once_per_reference(app, payable):
    with app.app_context():
        first = post(db.session, "accrual", "commission:1", accrual(payable), now=utcnow())
        again = post(db.session, "accrual", "commission:1", list(reversed(accrual(payable))), now=utcnow())
        db.session.commit()
        assert first.created and not again.created and again.transaction.id == first.transaction.id
        assert balance(db.session, payable[0], "USD") == -1_250
        assert balance(db.session, "commission_expense", "USD") == 1_250
        assert db.session.scalar(select(text("count(*)")).select_from(LedgerEntry)) == 2
        with pytest.raises(ConflictingPosting):
            post(db.session, "accrual", "commission:1", accrual(payable, 9), now=utcnow())


def test_bulk_postings_land_whole_or_not_at_all(app, payable):
    """Many postings at once (a payout batch's reserves): each balanced with its own legs; a reference already
    posted refuses the whole lot as the database's integrity error, and the rollback leaves no trace of it."""
    account, affiliate_id = payable
    postings = [(f"payout:{n}", [Leg(account, n, "USD", affiliate_id), Leg("payout_clearing", -n, "USD")]) for n in
                range(1, 1_201)]  # fmt: skip
    with app.app_context():
        post_new(db.session, "payout_reserve", postings, now=utcnow())
        db.session.commit()
        legs = db.session.execute(
            select(LedgerTransaction.reference, LedgerEntry.account, LedgerEntry.affiliate_id, LedgerEntry.amount_cents)
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.kind == "payout_reserve")
        ).all()
        assert len(legs) == 2_400 and check(db.session) == []
        assert all(amount == int(reference.split(":")[1]) for reference, acc, _, amount in legs if acc == account)
        assert balance(db.session, account, "USD") == 1_200 * 1_201 // 2
        again = [("payout:5000", postings[0][1]), postings[-1]]
        with pytest.raises(IntegrityError):
            post_new(db.session, "payout_reserve", again, now=utcnow())
        db.session.rollback()
        assert (
            db.session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.reference == "payout:5000")) is None
        )
        assert balance(db.session, account, "USD") == 1_200 * 1_201 // 2


def test_bulk_postings_refuse_a_naive_time_as_single_ones_do(app, payable):
    account, affiliate_id = payable
    postings = [("payout:1", [Leg(account, 5, "USD", affiliate_id), Leg("payout_clearing", -5, "USD")])]
    with app.app_context():
        with pytest.raises(Exception, match="naive datetime"):
            post_new(db.session, "payout_reserve", postings, now=datetime(2026, 12, 6, 12, 0))
        db.session.rollback()
        assert db.session.scalar(select(LedgerTransaction.id)) is None


@pytest.mark.parametrize(
    "legs",
    [
        [Leg("commission_expense", 100, "USD")],
        [Leg("commission_expense", 100, "USD"), Leg("payout_clearing", -99, "USD")],
        [Leg("commission_expense", 100, "USD"), Leg("payout_clearing", -100, "EUR")],
        [Leg("commission_expense", 1.5, "USD"), Leg("payout_clearing", -1.5, "USD")],
    ],
)
def test_unbalanced_or_float_postings_are_refused_and_store_nothing(app, legs):
    with app.app_context():
        with pytest.raises(UnbalancedPosting):
            post(db.session, "accrual", "bad", legs, now=utcnow())
        db.session.rollback()
        assert db.session.scalar(select(LedgerTransaction.id)) is None


@pytest.mark.parametrize("statement", ["update_entry", "delete_entry", "update_transaction", "delete_transaction"])
def test_the_database_refuses_to_change_ledger_rows(app, payable, statement):
    with app.app_context():
        posted = post(db.session, "accrual", "commission:2", accrual(payable), now=utcnow()).transaction
        db.session.commit()
        change = {
            "update_entry": update(LedgerEntry).values(amount_cents=0),
            "delete_entry": delete(LedgerEntry),
            "update_transaction": update(LedgerTransaction).values(memo="edited"),
            "delete_transaction": delete(LedgerTransaction),
        }[statement]
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(change)
        db.session.rollback()
        assert balance(db.session, payable[0], "USD") == -1_250
        assert db.session.get(LedgerTransaction, posted.id).memo is None


def test_ledger_check_passes_then_names_a_broken_transaction(app, runner, payable):
    with app.app_context():
        post(db.session, "accrual", "commission:3", accrual(payable), now=utcnow())
        db.session.commit()
    ok = runner.invoke(args=["ledger-check"])
    assert ok.exit_code == 0 and "invariants hold" in ok.output
    with app.app_context():
        # A write that bypasses the service (inserts are allowed; only the service balances them).
        broken = LedgerTransaction(kind="manual", reference="oops", created_at=utcnow())
        db.session.add(broken)
        db.session.flush()
        db.session.add(
            LedgerEntry(transaction_id=broken.id, account="payout_clearing", amount_cents=500, currency="USD")
        )
        db.session.commit()
        broken_id = broken.id
        assert {p.invariant for p in check(db.session)} == {"balanced", "two_or_more_legs", "books_balance"}
    failed = runner.invoke(args=["ledger-check"])
    assert failed.exit_code == 1
    assert f"transaction {broken_id} sums to 500 USD" in failed.output
