"""Bonuses and clawbacks: finance adds them, a second person approves the large ones, payouts pay and recover them.

Uses the ``owed`` affiliates of tests/finance/conftest.py: Alice 60.00, Bob 70.00, Carol 80.00, Dan 20.00 (under
the 50.00 minimum) and Erin 90.00 (held: new payout details), all in USD at a default approval threshold of 100.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Adjustment, AuditLog, LedgerEntry, LedgerTransaction, Payout, User, utcnow
from affiliate.services import adjustments
from affiliate.services.ledger import balance
from config import adjustment_thresholds
from tests.factories import csrf_token, make_admin, make_finance, make_program, make_user
from tests.finance.conftest import set_details
from tests.finance.test_payout_pages import build, payout_of, post_on_batch, rows, signed_in
from tests.money.test_money_races import race
from tests.money.test_payouts import _earn


def add(client, affiliate_id: int, **fields):
    """Post the affiliate page's "Bonus or clawback" form, encoded as a browser would."""
    page = f"/admin/affiliates/{affiliate_id}"
    token = csrf_token(client.get(page).get_data(as_text=True))
    data = {"kind": "bonus", "reason": "Launch week", **fields, "csrf_token": token}
    body = "&".join(f"{quote(name)}={quote(value, errors='surrogatepass')}" for name, value in data.items())
    return client.post(f"{page}/adjustments", data=body, content_type="application/x-www-form-urlencoded")


def decide(client, adjustment_id: int, decision: str, **fields):
    token = csrf_token(client.get("/finance/adjustments/").get_data(as_text=True))
    return client.post(f"/finance/adjustments/{adjustment_id}/{decision}", data={**fields, "csrf_token": token})


def latest(app) -> Adjustment:
    with app.app_context():
        adjustment = db.session.scalars(select(Adjustment).order_by(Adjustment.id.desc())).first()
        db.session.expunge(adjustment)
        return adjustment


def payable(app, user) -> int:
    """What the affiliate is owed and not yet paid, in cents (negative: carried over to the next payout)."""
    with app.app_context():
        return -balance(db.session, f"affiliate_payable:{user.id}", "USD")


def postings(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).where(LedgerTransaction.kind == "adjustment"))


def state(app) -> tuple[int, int, int]:
    """Adjustments, ledger entries and audit rows: what a refused request must leave alone."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model)) for model in (Adjustment, LedgerEntry, AuditLog)
        )


def test_a_bonus_within_the_threshold_posts_at_once_and_the_affiliate_reads_why(app, owed, runner):
    maker = signed_in(app, make_finance(app, name="Maker"))
    response = add(maker, owed.alice.id, program=str(owed.program.id), amount="30.00", reason="Launch week")
    assert response.status_code == 303
    adjustment = latest(app)
    assert (adjustment.status, adjustment.amount_cents, adjustment.approved_by_id) == ("approved", 3_000, None)
    assert payable(app, owed.alice) == 6_000 + 3_000
    with app.app_context():
        assert balance(db.session, "adjustment_expense", "USD") == 3_000
        (entry,) = db.session.scalars(select(AuditLog).where(AuditLog.subject_type == "adjustment")).all()
        assert (entry.action, entry.note) == ("adjustment.create", "Launch week")
    assert runner.invoke(args=["ledger-check"]).exit_code == 0
    alice = signed_in(app, owed.alice)
    earnings = alice.get("/partner/earnings/").get_data(as_text=True)
    assert "Launch week" in earnings and "$30.00" in earnings
    statement = rows(alice.get("/partner/earnings/statement.csv"))
    assert statement[-1][1:] == ["bonus", f"Bonus #{adjustment.id}: Launch week", "USD", "30.00", "90.00"]


def test_over_the_threshold_a_second_finance_user_approves_it_and_its_maker_cannot(app, owed, runner):
    maker_user, checker_user = make_finance(app, name="Maker"), make_finance(app, name="Checker")
    maker, checker = signed_in(app, maker_user), signed_in(app, checker_user)
    assert add(maker, owed.bob.id, program=str(owed.program.id), amount="100.00").status_code == 303
    assert latest(app).status == "approved", "exactly the threshold posts at once"
    assert add(maker, owed.bob.id, program=str(owed.program.id), amount="100.01", reason="Q3 target").status_code == 303
    pending = latest(app)
    assert pending.status == "pending_approval" and postings(app) == 1
    assert payable(app, owed.bob) == 7_000 + 10_000, "nothing moves while it waits"
    assert "Q3 target" in checker.get("/finance/adjustments/").get_data(as_text=True)

    refused = decide(maker, pending.id, "approve")
    assert refused.status_code == 409 and "cannot approve it" in refused.get_data(as_text=True)
    assert latest(app).status == "pending_approval" and postings(app) == 1
    assert decide(checker, pending.id, "approve").status_code == 303
    again = decide(checker, pending.id, "approve")
    assert again.status_code == 409 and "already approved" in again.get_data(as_text=True)
    approved = latest(app)
    assert (approved.status, approved.approved_by_id, approved.created_by_id) == (
        "approved",
        checker_user.id,
        maker_user.id,
    )
    assert postings(app) == 2 and payable(app, owed.bob) == 7_000 + 10_000 + 10_001
    with app.app_context():
        trail = db.session.execute(
            select(AuditLog.action, AuditLog.actor_id)
            .where(AuditLog.subject_id == pending.id, AuditLog.subject_type == "adjustment")
            .order_by(AuditLog.id)
        ).all()
        assert [tuple(row) for row in trail] == [
            ("adjustment.create", maker_user.id),
            ("adjustment.approve", checker_user.id),
        ]
    assert runner.invoke(args=["ledger-check"]).exit_code == 0


def test_approving_needs_a_recent_sign_in(app, owed):
    maker, checker = signed_in(app, make_finance(app)), signed_in(app, make_finance(app))
    add(maker, owed.alice.id, program=str(owed.program.id), amount="500.00")
    with checker.session_transaction() as session:
        session["password_at"] -= 16 * 60
    refused = decide(checker, latest(app).id, "approve")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/reauth?")
    assert latest(app).status == "pending_approval" and postings(app) == 0


def test_a_rejected_adjustment_posts_nothing_and_the_affiliate_never_sees_it(app, owed):
    maker, checker = signed_in(app, make_finance(app)), signed_in(app, make_finance(app))
    add(maker, owed.alice.id, program=str(owed.program.id), amount="250.00", reason="Typo bonus")
    pending = latest(app)
    before = state(app)
    assert decide(checker, pending.id, "reject").status_code == 422, "a rejection says why"
    assert state(app) == before
    assert decide(checker, pending.id, "reject", note="Wrong affiliate").status_code == 303
    rejected = latest(app)
    assert (rejected.status, rejected.rejection_note) == ("rejected", "Wrong affiliate")
    assert decide(checker, pending.id, "approve").status_code == 409, "a rejected adjustment is never posted"
    assert postings(app) == 0 and payable(app, owed.alice) == 6_000
    assert "Typo bonus" not in signed_in(app, owed.alice).get("/partner/earnings/").get_data(as_text=True)


def test_a_payout_batch_pays_a_bonus_with_what_was_earned(app, owed):
    finance = signed_in(app, make_finance(app))
    add(finance, owed.alice.id, program=str(owed.program.id), amount="15.50")
    add(finance, owed.dan.id, program=str(owed.program.id), amount="30.00")  # Dan: 20.00 + 30.00 reaches 50.00
    assert build(finance).status_code == 303
    assert payout_of(app, owed.alice).amount_cents == 6_000 + 1_550
    assert payout_of(app, owed.dan).amount_cents == 5_000
    assert payable(app, owed.alice) == payable(app, owed.dan) == 0


def test_a_clawback_after_a_payout_is_recovered_from_the_next_one(app, owed, runner):
    maker, checker = signed_in(app, make_finance(app)), signed_in(app, make_finance(app))
    batch_id = int(build(maker).headers["Location"].rsplit("/", 1)[1])
    assert post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    first = payout_of(app, owed.alice)
    post_on_batch(checker, batch_id, f"/finance/payouts/payout/{first.id}/paid", {"reference": "PP-1"})
    assert (
        add(
            maker,
            owed.alice.id,
            kind="clawback",
            program=str(owed.program.id),
            amount="20.00",
            reason="Order 17 was a test purchase",
        ).status_code
        == 303
    )
    assert payable(app, owed.alice) == -2_000, "below zero: carried over"
    earnings = signed_in(app, owed.alice).get("/partner/earnings/").get_data(as_text=True)
    assert "$20.00 is carried over" in earnings and "Order 17 was a test purchase" in earnings
    _earn(app, owed.program, owed.alice, 7_000, "alice-order-2")
    assert build(maker).status_code == 303
    with app.app_context():
        second = db.session.scalars(
            select(Payout).where(Payout.affiliate_id == owed.alice.id).order_by(Payout.id.desc())
        ).first()
        assert second.amount_cents == 7_000 - 2_000
    assert runner.invoke(args=["ledger-check"]).exit_code == 0


def test_three_and_zero_decimal_currencies_are_read_in_their_own_units(app, owed):
    admin = make_admin(app)
    dinars = make_program(app, admin, currency="KWD", minimum_payout_cents=10_000)
    yen = make_program(app, admin, currency="JPY", minimum_payout_cents=5_000)
    finance = signed_in(app, make_finance(app))
    assert add(finance, owed.carol.id, program=str(dinars.id), amount="12.125").status_code == 303
    assert (latest(app).amount_cents, latest(app).currency, latest(app).status) == (12_125, "KWD", "approved")
    with app.app_context():
        assert balance(db.session, f"affiliate_payable:{owed.carol.id}", "KWD") == -12_125
    before = state(app)
    assert "at most 3 decimal places" in add(finance, owed.carol.id, program=str(dinars.id), amount="12.1255").get_data(
        as_text=True
    )
    assert "at most 0 decimal places" in add(finance, owed.carol.id, program=str(yen.id), amount="50.5").get_data(
        as_text=True
    )
    assert state(app) == before
    # The default threshold is 100 whole units of each currency: 100 yen, so 5,000 yen waits for approval.
    assert add(finance, owed.carol.id, program=str(yen.id), amount="5000").status_code == 303
    assert (latest(app).amount_cents, latest(app).status) == (5_000, "pending_approval")
    assert "¥5,000" in finance.get("/finance/adjustments/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": "-5.00"}, "such as 50.00"),
        ({"amount": "0"}, "more than zero"),
        ({"amount": "0.00"}, "more than zero"),
        ({"amount": "1.234"}, "at most 2 decimal places"),
        ({"amount": "99999999999999999"}, "such as 50.00"),
        ({"amount": "100000000000.01"}, "too large"),
        ({"amount": "1e3"}, "such as 50.00"),
        ({"amount": ""}, "Enter the amount"),
        ({"program": "999999"}, "Choose one of the programs"),
        ({"program": "99999999999999999999"}, "Choose one of the programs"),
        ({"program": "-1"}, "Choose one of the programs"),
        ({"program": ""}, "Choose the program"),
        ({"reason": ""}, "Say why"),
        ({"reason": "   "}, "Say why"),
        ({"reason": "x" * 1001}, "1000"),
        ({"reason": "a\x00b"}, "NUL"),
        ({"kind": "gift"}, "Not a valid choice"),
    ],
)
def test_bad_input_is_a_form_error_that_changes_nothing(app, owed, change, message):
    finance = signed_in(app, make_finance(app))
    before = state(app)
    response = add(finance, owed.alice.id, **{"program": str(owed.program.id), "amount": "10.00", **change})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert state(app) == before and payable(app, owed.alice) == 6_000


def test_only_affiliates_get_adjustments_and_only_staff_make_them(app, owed):
    finance_user, member = make_finance(app), make_user(app, role="member")
    finance = signed_in(app, finance_user)
    before = state(app)
    assert add(finance, owed.alice.id, program=str(owed.program.id), amount="1.00").status_code == 303
    after = state(app)
    token = csrf_token(finance.get(f"/admin/affiliates/{owed.alice.id}").get_data(as_text=True))
    data = {"kind": "bonus", "program": str(owed.program.id), "amount": "1.00", "reason": "x", "csrf_token": token}
    assert finance.post(f"/admin/affiliates/{finance_user.id}/adjustments", data=data).status_code == 404
    assert finance.post("/admin/affiliates/99999999999999999999/adjustments", data=data).status_code == 404
    assert finance.post("/finance/adjustments/99999/approve", data={"csrf_token": token}).status_code == 404
    alice = signed_in(app, owed.alice)
    alice_token = csrf_token(alice.get("/partner/earnings/").get_data(as_text=True))
    refused = alice.post(f"/admin/affiliates/{owed.alice.id}/adjustments", data={**data, "csrf_token": alice_token})
    assert refused.status_code == 403
    assert state(app) == after and after != before
    with app.app_context():
        request = adjustments.AdjustmentRequest(owed.alice.id, owed.program.id, "bonus", 100, "x")
        with pytest.raises(adjustments.AdjustmentError):
            adjustments.create(
                db.session, request, actor=db.session.get(User, owed.alice.id), thresholds={"*": 100}, now=utcnow()
            )
        # Text no column can keep is refused by the service too, whoever calls it (a browser's lone surrogate
        # arrives as U+FFFD, so only code can send one).
        for reason in ("a\x00b", "\ud800", " "):
            with pytest.raises(adjustments.AdjustmentError, match="reason"):
                adjustments.create(
                    db.session,
                    adjustments.AdjustmentRequest(owed.alice.id, owed.program.id, "bonus", 100, reason),
                    actor=db.session.get(User, finance_user.id),
                    thresholds={"*": 100},
                    now=utcnow(),
                )
        with pytest.raises(adjustments.AdjustmentError, match="for affiliates"):
            adjustments.create(
                db.session,
                adjustments.AdjustmentRequest(member.id, owed.program.id, "bonus", 100, "x"),
                actor=db.session.get(User, finance_user.id),
                thresholds={"*": 100},
                now=utcnow(),
            )
        db.session.rollback()


def test_two_approvals_at_the_same_moment_post_once(app, owed):
    maker, first, second = make_finance(app), make_finance(app), make_finance(app)
    set_details(app, owed.dan, "paypal", email="dan@example.com")
    for round_ in range(4):
        with app.app_context():
            request = adjustments.AdjustmentRequest(
                owed.dan.id, owed.program.id, "clawback" if round_ % 2 else "bonus", 50_000, f"round {round_}"
            )
            adjustment_id = adjustments.create(
                db.session, request, actor=db.session.get(User, maker.id), thresholds={"*": 100}, now=utcnow()
            ).id
            db.session.commit()

        def approver(user_id: int, adjustment_id: int = adjustment_id):
            def contender():
                approver_row = db.session.get(User, user_id)
                return adjustments.approve(db.session, adjustment_id, approver=approver_row, now=utcnow()).id

            return contender

        results = race(app, approver(first.id), approver(second.id))
        assert sorted(type(r).__name__ for r in results) == ["AdjustmentError", "int"], results
        assert postings(app) == round_ + 1
    assert payable(app, owed.dan) == 2_000 + 50_000 - 50_000 + 50_000 - 50_000
    with app.app_context():
        approvals = db.session.scalar(select(func.count()).where(AuditLog.action == "adjustment.approve"))
        assert approvals == 4


def test_the_approval_threshold_is_whole_units_of_each_currency():
    thresholds = adjustment_thresholds("100,JPY=15000")
    assert adjustments.approval_threshold(thresholds, "USD") == 10_000
    assert adjustments.approval_threshold(thresholds, "KWD") == 100_000
    assert adjustments.approval_threshold(thresholds, "JPY") == 15_000
    assert adjustments.approval_threshold(adjustment_thresholds("0"), "EUR") == 0
    for bad in ("", "-1", "1.5", "100,JPY", "100,YENS=5"):
        with pytest.raises(SystemExit):
            adjustment_thresholds(bad)
