"""The affiliate's side: payouts on the earnings page, a negative carry-over, a statement of their own rows."""

from __future__ import annotations

from decimal import Decimal

from affiliate.extensions import db
from affiliate.models import Program, utcnow
from affiliate.services.conversions import RefundRequest, record_refund
from affiliate.services.ledger import balance, check
from tests.factories import make_affiliate, make_finance
from tests.finance.test_payout_pages import build, payout_of, post_on_batch, rows, signed_in


def pay_everyone_due(app):
    making, checking = signed_in(app, make_finance(app)), signed_in(app, make_finance(app))
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    assert post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    return batch_id, checking


def test_statement_runs_from_earning_to_payout_to_a_refund_carried_over(app, owed, runner):
    batch_id, finance = pay_everyone_due(app)
    payout = payout_of(app, owed.alice)
    post_on_batch(finance, batch_id, f"/finance/payouts/payout/{payout.id}/paid", {"reference": "PP-42"})
    with app.app_context():
        program = db.session.get(Program, owed.program.id)
        record_refund(db.session, program, RefundRequest(order_id="alice-order-1"), now=utcnow())
        db.session.commit()
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0

    alice = signed_in(app, owed.alice)
    earnings = alice.get("/partner/earnings/").get_data(as_text=True)
    assert "$60.00 is carried over" in earnings and "PP-42" in earnings
    statement = rows(alice.get("/partner/earnings/statement.csv"))
    assert statement[0] == ["date_utc", "type", "description", "currency", "amount", "balance"]
    body = [(kind, amount, running) for _, kind, _, _, amount, running in statement[1:]]
    assert body == [("commission", "60.00", "60.00"), ("payout", "-60.00", "0.00"), ("refund", "-60.00", "-60.00")]
    assert (
        "alice-order-1" in statement[1][2] and f"Payout #{payout.id}" in statement[2][2] and "PP-42" in statement[2][2]
    )
    with app.app_context():
        owed_now = balance(db.session, f"affiliate_payable:{owed.alice.id}", "USD")
        owed_now += balance(db.session, f"affiliate_pending:{owed.alice.id}", "USD")
        assert Decimal(statement[-1][5]) * 100 == -owed_now, "the running balance ends where the ledger is"
        assert check(db.session) == []


def test_a_statement_holds_only_the_signed_in_affiliates_rows(app, owed):
    pay_everyone_due(app)
    bob = rows(signed_in(app, owed.bob).get("/partner/earnings/statement.csv"))
    text = "\n".join(",".join(row) for row in bob)
    assert "bob-order-1" in text
    for other in ("alice-order-1", "carol-order-1", "PP-", "CT-"):
        assert other not in text
    newcomer = rows(signed_in(app, make_affiliate(app)).get("/partner/earnings/statement.csv"))
    assert newcomer == [["date_utc", "type", "description", "currency", "amount", "balance"]]
    assert signed_in(app, make_finance(app)).get("/partner/earnings/statement.csv").status_code == 403
    pending = signed_in(app, make_affiliate(app, status="pending"))
    assert pending.get("/partner/earnings/statement.csv").status_code == 403
    assert app.test_client().get("/partner/earnings/statement.csv").headers["Location"].startswith("/login")
