"""The conversion rate a page shows is the exact rate rounded once: 4 sales in 19 human clicks is 21.0526...%,
shown as 21.1%, where rounding the CSV's two places (21.05) again to one showed 21.0%."""

from __future__ import annotations

from datetime import timedelta

from affiliate.extensions import db
from affiliate.models import ConversionType, Program, utcnow
from affiliate.services.conversions import ConversionRequest, record_conversion
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.reports.helpers import click_record, store_for
from tests.reports.test_pages import figures, rows, signed_in


def test_the_rate_on_the_page_is_the_exact_rate_rounded_once(app):
    admin = make_admin(app)
    alice = make_affiliate(app)
    program = make_program(app, admin)
    link = make_link(app, alice, program)
    day = (utcnow() - timedelta(days=2)).replace(hour=1, minute=0, second=0, microsecond=0)
    records = [click_record(link, day + timedelta(minutes=5 * n)) for n in range(19)]
    with store_for(app) as store:
        store.insert(records)
    with app.app_context():
        for n in range(4):
            report = ConversionRequest(
                type=ConversionType.SALE,
                order_id=f"O{n}",
                amount_cents=1000,
                currency="USD",
                click_id=records[n]["click_id"],
                occurred_at=day + timedelta(hours=10, minutes=n),
            )
            record_conversion(db.session, db.session.get(Program, program.id), report, now=utcnow())
        db.session.commit()
    client = signed_in(app, alice)
    period = {"start": day.date().isoformat(), "end": day.date().isoformat()}
    assert figures(client.get("/partner/reports/", query_string=period).get_data(as_text=True))["conversion-rate"] == (
        "21.1%"
    )
    [row] = rows(client.get("/partner/reports/day.csv", query_string=period))
    assert row["conversion_rate_percent"] == "21.05"
