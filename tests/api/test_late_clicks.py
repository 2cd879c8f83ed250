"""A conversion naming a click still in a click log waits for it, and is attributed once the click is stored."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text, update

from affiliate import outbound
from affiliate.extensions import db
from affiliate.ids import new_id
from affiliate.jobs import accrue_all
from affiliate.models import (
    Click,
    Commission,
    CommissionPlan,
    Conversion,
    ConversionType,
    Delivery,
    FraudRule,
    Program,
    Referral,
    Role,
    User,
    utcnow,
)
from affiliate.services import conversions, late_clicks, webhooks
from affiliate.services.signups import Signup, sign_up
from tests.api.helpers import click, world
from tests.factories import Visitor
from tests.redirector.helpers import clicks_held


@pytest.fixture(autouse=True)
def no_patience(monkeypatch):
    """The API's short wait for a click issued moments ago would only slow these tests down."""
    monkeypatch.setattr(conversions, "CLICK_PATIENCE", timedelta(0))


def paying(app, program) -> None:
    """10 % of every sale, no flag for a sale moments after its click, and a webhook endpoint for every event."""
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.role == Role.ADMIN)).first()
        db.session.execute(
            update(CommissionPlan).where(CommissionPlan.program_id == program.id).values(percent_bps=1_000)
        )
        db.session.add(FraudRule(program_id=program.id, rule="too_fast", action="off", weight=0, settings="{}"))
        webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings("https://hooks.example.com/", ("*",)),
            actor=admin,
            now=utcnow(),
            check_url=outbound.check_url,
        )
        db.session.commit()


def stored(app, conversion_id: int) -> Conversion:
    with app.app_context():
        row = db.session.get(Conversion, conversion_id)
        db.session.expunge(row)
        return row


def events_of(app, conversion_id: int) -> list[str]:
    """The webhook events written about one conversion (or a refund of it), in order."""
    with app.app_context():
        deliveries = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
    found = []
    for delivery in deliveries:
        data = json.loads(delivery.body)["data"]
        if delivery.event.startswith(("conversion.", "refund.")) and conversion_id in (
            data["id"],
            data.get("refund_of"),
        ):
            found.append(delivery.event)
    return found


def test_a_sale_naming_a_click_still_in_the_log_is_attributed_once_the_click_is_stored(app, redirector):
    merchant, people, links = world(app)
    paying(app, merchant.program)
    shopper = Visitor(redirector)
    with clicks_held(redirector):  # logged, not stored until flush()
        late = click(shopper, links["alice"].code)
        with app.app_context():
            assert db.session.scalar(select(Click.id).where(Click.click_id == late)) is None

        first = merchant.sale("late-1", 20_000, click_id=late, customer={"external_id": "cus_late"})
        assert first.status_code == 201, first.json
        answer = first.json["conversion"]
        assert answer["attribution"]["status"] == "waiting_for_click"
        assert answer["attribution"]["attributed"] is False and answer["attribution"]["affiliate_id"] is None
        replay = merchant.sale("late-1", 20_000, click_id=late, customer={"external_id": "cus_late"})
        assert replay.headers["Idempotent-Replayed"] == "true" and replay.json == first.json
        refund = merchant.post("/api/v1/refunds", {"order_id": "late-1", "amount": 5_000})
        assert refund.status_code == 201 and refund.json["conversion"]["attribution"]["affiliate_id"] is None
        conversion_id = answer["id"]
        with app.app_context():
            tally = accrue_all()
        assert tally.commissions == 0 and tally.reversed_cents == 0, "neither the sale nor its refund is evaluated yet"
        assert events_of(app, conversion_id) == [], "announced once attributed, not before"
        waiting = stored(app, conversion_id)
        assert waiting.waiting_for_click == late
        assert "Waiting for its click" in json.loads(waiting.decision_trace)["summary"]

    assert redirector.recorder.flush(), "the ingester stores the click and attributes what waited for it"
    row = stored(app, conversion_id)
    trace = json.loads(row.decision_trace)
    assert row.affiliate_id == people["alice"].id and row.click_id is not None
    assert row.waiting_for_click is None and row.waiting_report is None
    assert trace["matched_by"] == "click_id" and trace["waited_for_click"]["click_stored"] is True
    assert "still in a redirector's click log" in trace["summary"]
    assert "attributed when the click was stored" in trace["summary"]
    again = merchant.sale("late-1", 20_000, click_id=late, customer={"external_id": "cus_late"}).json["conversion"]
    assert again["attribution"]["status"] == "attributed" and again["attribution"]["click_id"] == late
    assert events_of(app, conversion_id) == ["conversion.created", "refund.created"]

    # A sale attributed on the spot, for comparison: the late one earns exactly what it does.
    on_time = click(Visitor(redirector, ip="198.51.100.9"), links["alice"].code)
    redirector.recorder.flush()
    direct = merchant.sale("direct-1", 20_000, click_id=on_time, customer={"external_id": "cus_direct"})
    assert direct.json["conversion"]["attribution"]["status"] == "attributed"
    with app.app_context():
        tally = accrue_all()
        earned = dict(
            db.session.execute(select(Commission.conversion_id, Commission.amount_cents).order_by(Commission.id)).all()
        )
    assert earned == {conversion_id: 2_000, direct.json["conversion"]["id"]: 2_000}
    assert tally.reversed_cents == 500, "the refund that waited with its sale is reversed after it"
    with app.app_context():
        assert late_clicks.sweep(db.session, now=utcnow()) == late_clicks.Swept(0, 0), "nothing is attributed twice"


def test_a_conversion_whose_click_never_arrives_is_attributed_without_it_after_the_bound(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click(shopper, links["bob"].code)
    redirector.recorder.flush()
    lost = new_id()  # issued, but its click log never reaches the database
    sale = merchant.sale("lost-1", 5_000, click_id=lost, visitor_id=shopper.get_cookie("ct_vid").value)
    assert sale.json["conversion"]["attribution"]["status"] == "waiting_for_click"
    conversion_id = sale.json["conversion"]["id"]
    start = stored(app, conversion_id).waiting_since
    with app.app_context():
        nearly = late_clicks.sweep(db.session, now=start + late_clicks.GIVE_UP_AFTER - timedelta(seconds=1))
        db.session.commit()
    assert nearly == late_clicks.Swept(0, 0) and stored(app, conversion_id).waiting_for_click == lost
    with app.app_context():
        swept = late_clicks.sweep(db.session, now=start + late_clicks.GIVE_UP_AFTER + timedelta(seconds=1))
        db.session.commit()
    assert swept == late_clicks.Swept(0, 1)
    row = stored(app, conversion_id)
    trace = json.loads(row.decision_trace)
    assert row.waiting_for_click is None and row.affiliate_id == people["bob"].id
    assert trace["matched_by"] == "visitor" and trace["waited_for_click"]["click_stored"] is False
    assert trace["summary"].startswith(f"The click it names ({lost}) was not stored within 24 h")


def test_a_sale_hours_after_a_click_a_stopped_node_still_holds_waits_for_it(app, redirector):
    """A node that crashed keeps its clicks in its log until it is restarted, hours later: a shopper who bought
    meanwhile, naming such a click, is credited once the node's log is stored."""
    merchant, people, links = world(app)
    with clicks_held(redirector):
        held = click(Visitor(redirector), links["alice"].code)
        three_hours_on = utcnow() + timedelta(hours=3)
        with app.app_context():
            report = sale_of(held, "after-restart")
            program = db.session.get(Program, merchant.program.id)
            recorded = conversions.record_conversion(db.session, program, report, now=three_hours_on)
            db.session.commit()
            conversion_id = recorded.conversion.id
        assert stored(app, conversion_id).waiting_for_click == held
    assert redirector.recorder.flush()
    row = stored(app, conversion_id)
    assert row.waiting_for_click is None and row.affiliate_id == people["alice"].id


def sale_of(click_id: str, order_id: str) -> conversions.ConversionRequest:
    return conversions.ConversionRequest(
        type=ConversionType.SALE, order_id=order_id, amount_cents=5_000, currency="USD", click_id=click_id
    )


def test_a_sale_whose_click_is_stored_while_it_is_prepared_is_attributed_when_stored(app, redirector):
    """The API prepares a sale in one transaction and stores it in the next; the ingester may commit between."""
    _, people, links = world(app)
    with clicks_held(redirector):
        late = click(Visitor(redirector), links["alice"].code)
        with app.app_context():
            program = db.session.get(Program, links["alice"].program_id)
            prepared = conversions.prepare_conversion(db.session, program, sale_of(late, "between-1"), now=utcnow())
            db.session.commit()
            assert prepared.waiting_for_click == late
    assert redirector.recorder.flush(), "the batch commits, and no conversion waited for its click then"
    with app.app_context():
        recorded = conversions.store_conversion(db.session, prepared)
        db.session.commit()
    row = stored(app, recorded.conversion.id)
    assert row.waiting_for_click is None and row.affiliate_id == people["alice"].id
    assert json.loads(row.decision_trace)["matched_by"] == "click_id"
    with app.app_context():
        assert late_clicks.sweep(db.session, now=utcnow()) == late_clicks.Swept(0, 0), "nothing left to the sweep"


def test_a_sale_stored_while_its_clicks_batch_is_being_stored_is_attributed(app, redirector, database_uri, monkeypatch):
    """The batch has looked up the waiting conversions and not yet committed: the sale waits its turn."""
    _, people, links = world(app)
    looked_up, go = threading.Event(), threading.Event()
    lookup = late_clicks.waiting_for

    def pausing(connection, click_ids):
        found = lookup(connection, click_ids)
        looked_up.set()
        assert go.wait(30), "the test lets the batch commit"
        return found

    monkeypatch.setattr(late_clicks, "waiting_for", pausing)
    with clicks_held(redirector):
        late = click(Visitor(redirector), links["alice"].code)
        with app.app_context():
            program = db.session.get(Program, links["alice"].program_id)
            prepared = conversions.prepare_conversion(db.session, program, sale_of(late, "during-1"), now=utcnow())
            db.session.commit()
    storing = threading.Thread(target=redirector.recorder.flush)
    storing.start()
    assert looked_up.wait(30), "the batch reached its lookup"
    recorded = []

    def store() -> None:
        with app.app_context():
            recorded.append(conversions.store_conversion(db.session, prepared))
            db.session.commit()

    saving = threading.Thread(target=store)
    saving.start()
    if database_uri.startswith("postgresql"):
        watcher = create_engine(database_uri)
        deadline = time.monotonic() + 30
        with watcher.connect() as connection:
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            while connection.execute(text(held)).scalar() == 0 and time.monotonic() < deadline:
                connection.rollback()
                time.sleep(0.02)
            assert connection.execute(text(held)).scalar() == 1, "the sale waits for the batch's turn"
        watcher.dispose()
    go.set()
    storing.join(30)
    saving.join(30)
    row = stored(app, recorded[0].conversion.id)
    assert row.waiting_for_click is None and row.affiliate_id == people["alice"].id


def test_the_sweep_attributes_a_conversion_whose_click_was_stored_before_it_was(app, redirector, monkeypatch):
    """The ingester attributes after its batch commits; a crash in between leaves the conversion to the money jobs."""
    merchant, people, links = world(app)
    with clicks_held(redirector):
        late = click(Visitor(redirector), links["alice"].code)
        sale = merchant.sale("race-1", 5_000, click_id=late)
    assert sale.json["conversion"]["attribution"]["status"] == "waiting_for_click"
    monkeypatch.setattr(late_clicks, "waiting_for", lambda connection, click_ids: [])
    redirector.recorder.flush()
    conversion_id = sale.json["conversion"]["id"]
    assert stored(app, conversion_id).waiting_for_click == late
    result = app.test_cli_runner().invoke(args=["attribute-waiting"])
    assert "Attributed 1 conversions whose click was stored" in result.output, result.output
    assert stored(app, conversion_id).affiliate_id == people["alice"].id


def test_a_hosted_signup_naming_a_click_in_the_log_credits_its_affiliate_once_stored(app, redirector):
    _, people, links = world(app)
    shopper = Visitor(redirector)
    late = click(shopper, links["bob"].code)
    with app.app_context():
        result = sign_up(
            db.session,
            Signup(name="Bea", email="bea@example.com", password="a long enough pass phrase", click_id=late),
            password_hash="x",
            min_password_length=8,
            now=utcnow(),
        )
        db.session.commit()
        member_id, conversion_id = result.member.id, result.conversion.id
        assert result.conversion.waiting_for_click == late and result.referral is None
    redirector.recorder.flush()
    with app.app_context():
        member = db.session.get(User, member_id)
        assert member.referred_by_id == people["bob"].id, "the click's affiliate referred the member"
        assert db.session.get(Conversion, conversion_id).affiliate_id == people["bob"].id
        referral = db.session.scalars(select(Referral)).one()
        assert referral.referrer_id == people["bob"].id and referral.referred_id == member_id


@pytest.mark.parametrize("paused_at_arrival", [True, False], ids=["reported-while-paused", "paused-after"])
def test_a_sale_that_waited_for_its_click_is_judged_as_the_program_stood_when_it_arrived(
    app, redirector, paused_at_arrival
):
    """Reported while the program was paused, it credits nobody, though the program is active again when its click
    is stored; reported while active, the program paused before the click is stored takes nothing from it."""
    merchant, people, links = world(app)

    def set_status(status: str) -> None:
        with app.app_context():
            db.session.execute(update(Program).where(Program.id == merchant.program.id).values(status=status))
            db.session.commit()

    with clicks_held(redirector):
        held = click(Visitor(redirector), links["alice"].code)
        if paused_at_arrival:
            set_status("paused")
        answer = merchant.sale("late-pause-1", 20_000, click_id=held)
        assert answer.json["conversion"]["attribution"]["status"] == "waiting_for_click"
        set_status("active" if paused_at_arrival else "paused")
    redirector.recorder.flush()
    with app.app_context():
        stored = db.session.get(Conversion, answer.json["conversion"]["id"])
        trace = json.loads(stored.decision_trace)
    if paused_at_arrival:
        assert stored.affiliate_id is None and "The program is paused" in trace["summary"]
    else:
        assert stored.affiliate_id == people["alice"].id and "paused" not in trace["summary"]
