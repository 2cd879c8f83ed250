"""An affiliate's conversions: their commission on each, reasons they can act on, filters, search, and only theirs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from affiliate.extensions import db
from affiliate.models import Conversion, Program, User, utcnow
from affiliate.services import review
from affiliate.services.conversions import RefundRequest, record_refund
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report, set_plan
from tests.partner.helpers import signed_in

FRAUD = [{"rule": "bot", "action": "reject", "weight": 100, "evidence": "headless UA from 198.51.100.9, score 97 > 80"}]
STAFF_NOTE = "Same IP 198.51.100.9 as affiliate #77 (Mallory)"


def rows(html: str) -> dict[str, str]:
    """Each table row's text, in order, by the order id it shows ("refund of " before a refund's)."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        order = re.search(r"<code>([^<]+)</code>", row)
        if order:
            refund = 'data-label="Type">Refund<' in row
            found[("refund of " if refund else "") + order.group(1)] = " ".join(re.sub(r"<[^>]+>", " ", row).split())
    return found


def orders(client, **query) -> list[str]:
    response = client.get("/partner/conversions/", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return list(rows(response.get_data(as_text=True)))


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture
def world(app, runner):
    """Alice's conversions in Shoe Shop (10%) and Hat Shop, each in a different state; Bob's one sale."""
    admin = make_admin(app)
    shoes = make_program(app, admin, name="Shoe Shop", attribution_window_days=365)
    hats = make_program(app, admin, name="Hat Shop", attribution_window_days=365)
    set_plan(app, shoes.id, percent_bps=1_000)
    alice, bob = make_affiliate(app, name="Alice Archer"), make_affiliate(app, name="Bob Baker")
    report(app, shoes, alice.id, "A-EARNING", 123_400, occurred_at=at("2026-01-10T10:00:00"))
    report(app, shoes, alice.id, "A-REFUNDED", 50_000, occurred_at=at("2026-01-11T10:00:00"))
    report(app, shoes, alice.id, "A-REVIEWED", 30_000, occurred_at=at("2026-01-12T10:00:00"))
    report(app, shoes, alice.id, "A-FLAGGED", 20_000, occurred_at=at("2026-01-13T10:00:00"), status="flagged")
    report(app, shoes, alice.id, "A-BOT", 10_000, occurred_at=at("2026-01-14T10:00:00"), status="rejected")
    report(app, hats, alice.id, "A-SIGNUP", 0, type="signup", occurred_at=at("2026-02-01T10:00:00"))
    report(app, shoes, bob.id, "B-SECRET", 99_900, occurred_at=at("2026-01-10T11:00:00"))
    with app.app_context():
        bot = db.session.scalar(db.select(Conversion).where(Conversion.order_id == "A-BOT"))
        bot.fraud_reasons = json.dumps(FRAUD)
        db.session.commit()
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0
    with app.app_context():
        program = db.session.get(Program, shoes.id)
        record_refund(db.session, program, RefundRequest(order_id="A-REFUNDED"), now=utcnow())
        db.session.commit()
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0
    with app.app_context():
        reviewed = db.session.scalar(db.select(Conversion.id).where(Conversion.order_id == "A-REVIEWED"))
        review.decide(db.session, [reviewed], "reject", actor_id=admin.id, note=STAFF_NOTE, now=utcnow(), reopen=True)
        db.session.commit()
    return alice, bob


def test_each_row_shows_the_commission_and_a_reason_to_act_on(app, world):
    alice, _ = world
    page = signed_in(app, alice).get("/partner/conversions/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    found = rows(html)
    assert found["A-EARNING"].startswith("Jan 10, 2026, 10:00 UTC Shoe Shop Sale A-EARNING $1,234.00 $123.40 Pending")
    assert "In the hold period" in found["A-EARNING"]
    assert found["A-REFUNDED"].endswith("$500.00 $50.00 Reversed Reversed: the order was refunded.")
    assert "The customer was refunded: its share of your commission is taken back." in found["refund of A-REFUNDED"]
    assert "Rejected by review. It earns nothing." in found["A-REVIEWED"]
    assert "On hold for review: it earns once a person approves it." in found["A-FLAGGED"]
    assert "Rejected: the traffic looked automated." in found["A-BOT"]
    assert found["A-SIGNUP"].startswith("Feb 1, 2026, 10:00 UTC Hat Shop Signup A-SIGNUP $0.00 — No commission")
    # Redacted: no staff note, no evidence, no rule internals, nobody else's orders.
    for secret in ("198.51.100.9", "Mallory", "#77", "score 97", "headless", "B-SECRET", "$99.90", "Bob"):
        assert secret not in html, secret
    assert 'href="/partner/conversions/' in html, "each row links to its detail page"


def test_filters_and_order_search_narrow_the_list(app, world):
    alice, _ = world
    client = signed_in(app, alice)
    with app.app_context():
        hats = db.session.scalar(db.select(Program.id).where(Program.name == "Hat Shop"))
    assert orders(client, program=hats) == ["A-SIGNUP"]
    assert orders(client, type="signup") == ["A-SIGNUP"]
    assert orders(client, status="flagged") == ["A-FLAGGED"]
    assert orders(client, status="rejected") == ["A-BOT", "A-REVIEWED"]
    assert orders(client, start="2026-01-11", end="2026-01-12") == ["A-REVIEWED", "A-REFUNDED"]
    assert orders(client, order="refund") == ["refund of A-REFUNDED", "A-REFUNDED"], "part of an order id, any case"
    assert orders(client, order="a-%") == [], "a % is a character, not a wildcard"
    assert orders(client, order="B-SECRET") == [], "another affiliate's order is not found"
    empty = client.get("/partner/conversions/", query_string={"order": "nothing-like-it"}).get_data(as_text=True)
    assert "No conversion matches these filters" in empty


@pytest.mark.parametrize(
    "query, message",
    [
        ({"start": "yesterday"}, "Enter a date as YYYY-MM-DD"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "The end is before the start."),
        ({"end": "9999-01-01"}, "Choose a date between"),
        ({"program": "999999"}, "Choose one of the programs listed."),
        ({"program": "hats"}, "Choose one of the programs listed."),
        ({"status": "paid-twice"}, "Choose one of the status options listed."),
        ({"type": "refund-of-a-refund"}, "Choose one of the type options listed."),
        ({"order": "x" * 200}, "Field cannot be longer than 128 characters."),
    ],
)
def test_bad_filters_are_a_400_with_the_field_named(app, world, query, message):
    response = signed_in(app, world[0]).get("/partner/conversions/", query_string=query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html and "Those filters cannot be used" in html


def test_a_page_number_that_is_not_one_shows_the_first(app, world):
    client = signed_in(app, world[0])
    assert client.get("/partner/conversions/", query_string={"page": "x"}).status_code == 200
    assert client.get("/partner/conversions/", query_string={"page": "99999999999"}).status_code == 200


def test_pages_keep_the_filters(app):
    program = make_program(app, make_admin(app), name="Bulk Shop")
    alice = make_affiliate(app)
    for n in range(51):
        report(app, program, alice.id, f"BULK-{n:02d}", 1_000)
    report(app, program, alice.id, "OTHER-1", 1_000)
    client = signed_in(app, alice)
    first = client.get("/partner/conversions/", query_string={"order": "BULK", "type": "sale"}).get_data(as_text=True)
    assert "51 conversions match these filters" in first
    next_link = re.search(r'<a href="([^"]+)">Next</a>', first).group(1).replace("&amp;", "&")
    assert "order=BULK" in next_link and "type=sale" in next_link and "page=2" in next_link
    second = client.get(next_link).get_data(as_text=True)
    assert list(rows(second)) == ["BULK-00"], "newest first: the oldest is the one left for page 2"


def test_only_active_affiliates_reach_the_list(app, world):
    pending = make_affiliate(app, status="pending")
    assert signed_in(app, pending).get("/partner/conversions/").status_code == 403
    with app.app_context():
        assert db.session.get(User, pending.id).status == "pending"
