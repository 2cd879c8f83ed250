"""Figures in several currencies are never mixed: a currency's EPC is its earnings over the human clicks of the
programs that pay in it, in the totals, per day and per program, on the page and in the CSV."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from affiliate.extensions import db
from affiliate.models import CommissionPlan, ConversionType, Program, utcnow
from affiliate.services import accrual
from affiliate.services.conversions import ConversionRequest, record_conversion
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.reports.helpers import click_record, store_for
from tests.reports.test_pages import figures, rows, signed_in


def test_each_currencys_epc_divides_by_the_clicks_of_the_programs_paying_in_it(app):
    admin = make_admin(app)
    alice = make_affiliate(app, name="Alice")
    programs = {cur: make_program(app, admin, name=f"{cur} shop", currency=cur) for cur in ("USD", "EUR")}
    day = (utcnow() - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    clicks = {
        cur: [click_record(make_link(app, alice, program), day + timedelta(minutes=n)) for n in range(10)]
        for cur, program in programs.items()
    }
    clicks["EUR"] += [
        click_record(make_link(app, alice, programs["EUR"]), day + timedelta(minutes=30 + n)) for n in range(10)
    ]
    with store_for(app) as store:
        store.insert(clicks["USD"] + clicks["EUR"])
    with app.app_context():
        db.session.execute(update(CommissionPlan).values(percent_bps=1_000))
        for cur, program in programs.items():
            report = ConversionRequest(
                type=ConversionType.SALE,
                order_id=f"O-{cur}",
                amount_cents=10_000,
                currency=cur,
                click_id=clicks[cur][0]["click_id"],
                occurred_at=day + timedelta(hours=2),
            )
            record_conversion(db.session, db.session.get(Program, program.id), report, now=utcnow())
        db.session.commit()
        accrual.run(db.session, now=utcnow())
        db.session.commit()
    client = signed_in(app, alice)
    period = {"start": (day - timedelta(days=1)).date().isoformat(), "end": utcnow().date().isoformat()}
    shown = figures(client.get("/partner/reports/", query_string=period).get_data(as_text=True))
    # 10.00 USD over the USD program's 10 human clicks; 10.00 EUR over the EUR program's 20.
    assert "$1.00" in shown["epc"] and "€0.50" in shown["epc"], shown["epc"]
    [clicked_day] = [
        row for row in rows(client.get("/partner/reports/day.csv", query_string=period)) if row["human_clicks"] != "0"
    ]
    assert (clicked_day["epc_USD"], clicked_day["epc_EUR"]) == ("1.0000", "0.5000")
    by_program = {row["program"]: row for row in rows(client.get("/partner/reports/program.csv", query_string=period))}
    assert by_program["USD shop"]["epc_USD"] == "1.0000" and by_program["EUR shop"]["epc_EUR"] == "0.5000"
    assert by_program["USD shop"]["epc_EUR"] == "", "no EUR figure where no program pays in EUR"
