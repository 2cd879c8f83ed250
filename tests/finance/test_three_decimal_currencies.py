"""Dinars (KWD, BHD) have three decimals: programs, the conversion API, payout pages and files use fils."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Conversion, Program, User, utcnow
from affiliate.services.ledger import Leg, post
from tests.admin.test_programs import VALID
from tests.api.helpers import make_merchant
from tests.factories import Auth, make_admin, make_affiliate, make_finance, make_program
from tests.finance.conftest import set_details
from tests.finance.test_payout_pages import build, export, post_on_batch, rows, signed_in


def test_an_admin_runs_a_program_in_kuwaiti_or_bahraini_dinars(app, client):
    auth = Auth(client)
    auth.login(make_admin(app).email)
    refused = auth.post("/admin/programs/new", {**VALID, "currency": "KWD", "minimum_payout": "25.1255"})
    assert refused.status_code == 200 and "at most 3 decimal places" in refused.get_data(as_text=True)
    assert auth.post("/admin/programs/new", {**VALID, "currency": "KWD", "minimum_payout": "25.125"}).status_code == 302
    created = auth.post("/admin/programs/new", {**VALID, "name": "Manama", "currency": "BHD", "minimum_payout": "10.5"})
    assert created.status_code == 302
    with app.app_context():
        programs = db.session.execute(select(Program.currency, Program.minimum_payout_cents).order_by(Program.id)).all()
        assert [tuple(p) for p in programs] == [("KWD", 25_125), ("BHD", 10_500)]
        kuwait = db.session.scalar(select(Program.id).order_by(Program.id))
    assert 'value="25.125"' in client.get(f"/admin/programs/{kuwait}/edit").get_data(as_text=True)


def test_the_conversion_api_takes_a_sale_in_fils(app):
    merchant = make_merchant(app, make_program(app, make_admin(app), currency="KWD"))
    response = merchant.sale("order-kwd-1", 12_345)
    assert response.status_code == 201, response.json
    with app.app_context():
        stored = db.session.scalar(select(Conversion).where(Conversion.order_id == "order-kwd-1"))
        assert (stored.amount_cents, stored.currency) == (12_345, "KWD")


def test_a_dinar_batch_shows_and_exports_three_decimals(app):
    admin = make_admin(app)
    make_program(app, admin, currency="KWD", minimum_payout_cents=5_000)
    layla = make_affiliate(app, name="Layla")
    set_details(app, layla, "paypal", email="layla@example.com")
    with app.app_context():
        # Approved earnings of 60.125 KWD, as accrual and approval post them.
        post(
            db.session,
            "accrual",
            "kwd-earning",
            [Leg("commission_expense", 60_125, "KWD"), Leg(f"affiliate_payable:{layla.id}", -60_125, "KWD", layla.id)],
            now=utcnow(),
        )
        db.session.commit()
    making, checking = signed_in(app, make_finance(app)), signed_in(app, make_finance(app))
    built = build(making, "KWD")
    batch_id = int(built.headers["Location"].rsplit("/", 1)[1])
    assert "KWD60.125" in making.get(built.headers["Location"]).get_data(as_text=True)
    assert post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert "KWD60.125" in page
    paypal = rows(export(checking, batch_id, "paypal"))
    assert paypal[0][1:3] == ["60.125", "KWD"] and Decimal(paypal[0][1]) * 1000 == 60_125
    with app.app_context():
        assert db.session.get(User, layla.id).name == "Layla"
