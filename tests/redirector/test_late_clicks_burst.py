"""Under a burst, sales naming clicks still in the click log are attributed to them once the ingester stores them."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from sqlalchemy import create_engine, func, select, update

from affiliate.extensions import db
from affiliate.jobs import accrue_all
from affiliate.models import Click, Commission, CommissionPlan, Conversion, FraudRule, Link
from affiliate.services import conversions
from affiliate.services.fraud import DEFAULT_RULES
from tests.api.helpers import make_merchant
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.redirector.load import Load
from tests.redirector.test_durability import STORE_DEADLINE_SECONDS, stored_click_ids
from tests.servers import Server

CLICKS = 3000
LATE_SALES = 30  # sales sent while their clicks wait in the log
AMOUNT = 12_340


def test_sales_naming_clicks_in_the_log_are_attributed_once_the_burst_is_stored(
    app, database_uri, tmp_path, monkeypatch
):
    # The API's short wait would only slow the test: these clicks wait far longer than it.
    monkeypatch.setattr(conversions, "CLICK_PATIENCE", timedelta(0))
    admin = make_admin(app)
    program = make_program(app, admin, destination_url="https://shop.example.com/signup")
    with app.app_context():
        db.session.execute(
            update(CommissionPlan).where(CommissionPlan.program_id == program.id).values(percent_bps=1_000)
        )
        # Every click of the burst comes from one address and device: screening would flag all but the first sales.
        db.session.add_all(
            FraudRule(program_id=program.id, rule=name, action="off", weight=0, settings="{}") for name in DEFAULT_RULES
        )
        db.session.commit()
    affiliates = [make_affiliate(app, name=f"Partner {n}") for n in range(3)]
    codes = [make_link(app, affiliate, program).code for affiliate in affiliates for _ in range(3)]
    merchant = make_merchant(app, program, admin)

    server = Server(database_uri, tmp_path, CLICK_INGESTER="process")
    engine = create_engine(database_uri)
    app_clicks = engine.connect()
    sales: dict[str, int] = {}  # click id -> conversion id, for sales answered "waiting_for_click"
    try:
        load = Load(server.port, codes)
        burst = threading.Thread(target=load.run, args=(CLICKS,), kwargs={"deadline_s": 120.0})
        burst.start()
        tried: set[str] = set()
        while len(sales) < LATE_SALES and burst.is_alive():
            with load._lock:
                newest = sorted(load.acknowledged - tried)[-5:]  # ids sort as issued: these are likeliest unstored
            tried.update(newest)
            stored = set(app_clicks.execute(select(Click.click_id).where(Click.click_id.in_(newest))).scalars())
            app_clicks.rollback()
            for click_id in [click_id for click_id in newest if click_id not in stored]:
                answer = merchant.sale(f"late-{click_id}", AMOUNT, click_id=click_id)
                assert answer.status_code == 201, answer.json
                if answer.json["conversion"]["attribution"]["status"] == "waiting_for_click":
                    sales[click_id] = answer.json["conversion"]["id"]
            time.sleep(0.02)
        burst.join()
        assert set(load.statuses) == {302} and len(load.acknowledged) == CLICKS, load.statuses
        assert len(sales) >= LATE_SALES // 2, f"only {len(sales)} sales named a click still in the log"
        deadline = time.monotonic() + STORE_DEADLINE_SECONDS
        while load.acknowledged - stored_click_ids(database_uri) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert load.acknowledged <= stored_click_ids(database_uri), "the ingester caught up"
        # It attributes a batch's waiting conversions just after the batch commits.
        while waiting_for_stored_clicks(engine) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        app_clicks.close()
        engine.dispose()
        server.stop()
    # A sale naming a stored click of the same burst, attributed on the spot: what each late sale should earn.
    on_time = sorted(load.acknowledged - set(sales))[0]
    control = merchant.sale("on-time", AMOUNT, click_id=on_time).json["conversion"]
    assert control["attribution"]["status"] == "attributed"

    with app.app_context():
        waiting = db.session.scalar(select(func.count()).where(Conversion.waiting_for_click.is_not(None)))
        accrue_all()
        clicks = {
            row.click_id: row
            for row in db.session.execute(
                select(Click.click_id, Click.id, Link.affiliate_id).join(Link, Link.id == Click.link_id)
            )
        }
        rows = {row.id: row for row in db.session.scalars(select(Conversion).where(Conversion.id.in_(sales.values())))}
        earned = db.session.execute(
            select(Commission.conversion_id, Commission.affiliate_id, Commission.amount_cents)
        ).all()
    assert waiting == 0, f"{waiting} of {len(sales)} were left for the sweep: the ingester attributes every one"
    for click_id, conversion_id in sales.items():
        row, clicked = rows[conversion_id], clicks[click_id]
        trace = json.loads(row.decision_trace)
        assert row.waiting_for_click is None
        assert (row.affiliate_id, row.click_id) == (clicked.affiliate_id, clicked.id), click_id
        assert trace["waited_for_click"]["click_stored"] is True
        assert "still in a redirector's click log" in trace["summary"]
    paid = {conversion_id: (affiliate_id, cents) for conversion_id, affiliate_id, cents in earned}
    assert len(earned) == len(sales) + 1 and set(paid) == {*sales.values(), control["id"]}, "one commission each"
    expected = paid[control["id"]][1]
    assert expected == AMOUNT // 10
    for conversion_id in sales.values():
        assert paid[conversion_id] == (rows[conversion_id].affiliate_id, expected), "as a sale attributed on the spot"


def waiting_for_stored_clicks(engine) -> int:
    """How many conversions still wait for a click that is stored by now."""
    query = (
        select(func.count())
        .select_from(Conversion)
        .join(Click, Click.click_id == Conversion.waiting_for_click)
        .where(Conversion.waiting_for_click.is_not(None))
    )
    with engine.connect() as connection:
        return connection.execute(query).scalar()
