"""The earnings page: the summary cards first, then commissions that say when each is or was paid, a page at a time."""

from __future__ import annotations

import re

from babel.dates import format_date

from affiliate.extensions import db
from affiliate.models import Commission, utcnow
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report, set_plan
from tests.partner.helpers import cards, history, signed_in


def commission_rows(html: str) -> dict[str, str]:
    """The commissions table's rows as text, by order id."""
    table = html[html.index("<h2>Commissions</h2>") : html.index("<h2>Latest payouts</h2>")]
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        order = re.search(r"<code>([^<]+)</code>", row)
        if order:
            found[order.group(1)] = " ".join(re.sub(r"<[^>]+>", " ", row).split())
    return found


def test_the_summary_comes_first_and_each_commission_says_when_it_is_paid(app):
    h = history(app)
    html = signed_in(app, h.alice).get("/partner/earnings/").get_data(as_text=True)
    assert html.index('data-card="pending"') < html.index("<h2>Commissions</h2>"), "the summary is at the top"
    found = cards(html)
    assert found["pending"].startswith("Pending $10.00") and found["approved"].startswith("Approved $20.00")
    assert found["paid"].startswith("Paid $60.00") and found["next"].startswith("Next payout $30.00 to go")

    assert '<th scope="col">Recorded</th>' in html and ">Earned<" not in html
    today = format_date(utcnow(), format="medium", locale="en_US")
    with app.app_context():
        pending = db.session.scalar(db.select(Commission).where(Commission.amount_cents == 1_000))
        due = format_date(pending.available_at, format="medium", locale="en_US")
    rows = commission_rows(html)
    assert rows["A-PAID"].startswith(f"{today} A-PAID")
    assert rows["A-PAID"].endswith(f"$60.00 paid Paid {today} reference PP-1001"), rows["A-PAID"]
    assert "Available from" not in rows["A-PAID"], "a paid commission is not waiting for anything"
    assert rows["A-APPROVED"].endswith("$20.00 approved With your next payout")
    assert rows["A-PENDING"].endswith(f"$10.00 pending Available from {due}")
    assert "B-1" not in html and "$70.00" not in html, "Bob's commissions are his"
    assert "PP-1001" in html[html.index("<h2>Latest payouts</h2>") :]


def test_commissions_come_a_page_at_a_time(app, runner):
    program = make_program(app, make_admin(app), name="Busy Shop")
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(52):
        report(app, program, alice.id, f"ORDER-{n:02d}", 10_000)
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0
    client = signed_in(app, alice)
    first = client.get("/partner/earnings/").get_data(as_text=True)
    assert len(commission_rows(first)) == 50 and "Page 1 of 2" in first
    assert cards(first)["pending"].startswith("Pending $520.00"), "the cards count every commission, not one page"
    second = client.get("/partner/earnings/?page=2").get_data(as_text=True)
    assert len(commission_rows(second)) == 2
    assert client.get("/partner/earnings/?page=nope").status_code == 200


def test_a_newcomer_is_told_what_to_do(app):
    make_program(app, make_admin(app), name="Quiet Shop")
    html = signed_in(app, make_affiliate(app)).get("/partner/earnings/").get_data(as_text=True)
    assert "No commissions yet" in html and 'href="/partner/links/"' in html
    assert cards(html)["approved"].startswith("Approved $0.00")


def test_paid_is_what_was_sent_even_after_the_paid_sale_is_refunded(app, runner):
    """The refund after the payout is a clawback in the balance; the money sent stays sent."""
    from affiliate.models import Program
    from affiliate.services.conversions import RefundRequest, record_refund

    h = history(app)
    with app.app_context():
        program = db.session.get(Program, h.program.id)
        record_refund(db.session, program, RefundRequest(order_id="A-PAID", refund_id="R-1", amount_cents=60_000),
                      now=utcnow())  # fmt: skip
        db.session.commit()
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0
    found = cards(signed_in(app, h.alice).get("/partner/earnings/").get_data(as_text=True))
    assert found["paid"].startswith("Paid $60.00"), found["paid"]
