"""A small known world for report tests: two affiliates, three links, clicks around UTC midnights, conversions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Click, CommissionPlan, ConversionType, Link, Program, User
from affiliate.services import accrual
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from tests.factories import make_admin, make_affiliate, make_finance, make_link, make_program
from tests.reports.helpers import click_record, store_for

FORMULA = '=HYPERLINK("http://evil.test")'
NOW = datetime(2026, 11, 20, tzinfo=UTC)


@dataclass
class World:
    admin: User
    finance: User
    alice: User
    bob: User
    program: Program
    spring: Link  # alice's, campaign "spring", sub1 a spreadsheet formula
    plain: Link  # alice's, no campaign
    bobs: Link
    clicks: dict[str, str]  # name -> click id


@pytest.fixture
def world(app) -> World:
    """Alice's clicks on 2026-11-10..12 (UTC) and around those days' edges; her sales, signup, refund; Bob's traffic.

    In 2026-11-10..12 Alice has 6 clicks: 5 human (one bot), 4 unique (one repeat); 1 signup and
    2 sales (a third, rejected for self-referral, does not count) for 70.00 less a 10.00 refund; 10%
    commissions: 7.00 pending.
    """
    admin, finance = make_admin(app), make_finance(app)
    alice = make_affiliate(app, name="Alice Example", email="alice@example.com")
    bob = make_affiliate(app, name="Bob Other", email="bob@example.com")
    program = make_program(app, admin, name="Shop")
    spring = make_link(app, alice, program, campaign="spring", subs=(FORMULA, None, None, None, None))
    plain = make_link(app, alice, program)
    bobs = make_link(app, bob, program, campaign="Bob secret campaign", subs=("bob-sub", None, None, None, None))
    specs = {
        # name: (link, time, fields)
        "first": (
            spring,
            "2026-11-10T00:00:00",
            {"country": "US", "referrer": "https://t.co/abc", "visitor_id": "V" * 32},
        ),
        "gb": (spring, "2026-11-10T10:00:00", {"country": "GB", "referrer": "https://www.youtube.com/watch?v=1"}),
        "bot": (
            spring,
            "2026-11-11T12:00:00",
            {"country": "DE", "is_bot": True, "bot_reason": "known_bot", "device_type": "bot"},
        ),
        "last": (spring, "2026-11-12T23:59:59.999000", {"country": "US", "visitor_id": "V" * 32}),
        "new_york_late": (spring, "2026-11-12T23:30:00-05:00", {"country": "US"}),  # 2026-11-13 04:30 UTC
        "before": (spring, "2026-11-09T23:59:59.999999", {"country": "US"}),
        "after": (spring, "2026-11-13T00:00:00", {"country": "US"}),
        "plain1": (plain, "2026-11-11T08:00:00", {"visitor_id": "W" * 32}),
        "plain2": (plain, "2026-11-11T08:10:00", {"visitor_id": "W" * 32}),  # a repeat: human, not unique
        "bob1": (bobs, "2026-11-11T09:00:00", {"country": "FR", "sub1": "bob-sub"}),
        "bob2": (bobs, "2026-11-11T09:30:00", {"country": "FR", "sub1": "bob-sub"}),
    }
    records = {}
    for name, (link, when, fields) in specs.items():
        moment = datetime.fromisoformat(when)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        extra = {"sub1": FORMULA} if link.id == spring.id else {}
        records[name] = click_record(link, moment, **{"device_type": "desktop", "browser": "Chrome", **extra, **fields})
    with store_for(app) as store:
        store.insert(sorted(records.values(), key=lambda r: r["clicked_at"]))
    ids = {name: record["click_id"] for name, record in records.items()}
    with app.app_context():
        shop = db.session.get(Program, program.id)
        db.session.scalar(select(CommissionPlan).where(CommissionPlan.program_id == shop.id)).percent_bps = 1000
        db.session.commit()

        def sale(order, click, when, cents, kind=ConversionType.SALE, email=None):
            report = ConversionRequest(
                type=kind,
                order_id=order,
                amount_cents=cents,
                currency="USD",
                customer_email=email or f"{order}@customers.example",
                click_id=ids[click],
                occurred_at=datetime.fromisoformat(when).replace(tzinfo=UTC),
            )
            return record_conversion(db.session, shop, report, now=NOW).conversion

        sale("S1", "first", "2026-11-10T01:00:00", 5000)
        sale("SG1", "gb", "2026-11-10T12:00:00", 0, kind=ConversionType.SIGNUP)
        sale("S3", "gb", "2026-11-12T23:59:59.999999", 2000)
        sale("S2", "plain1", "2026-11-13T00:00:00", 3000)  # the day after the range
        rejected = sale("SELF", "first", "2026-11-11T00:00:00", 7000, email="alice@example.com")
        assert rejected.status == "rejected", "self-referral"
        sale("B1", "bob1", "2026-11-11T10:00:00", 9900)
        db.session.commit()
        refund = RefundRequest(
            order_id="S1", refund_id="R1", amount_cents=1000, occurred_at=datetime(2026, 11, 12, 9, tzinfo=UTC)
        )
        record_refund(db.session, shop, refund, now=NOW)
        db.session.commit()
        for conversion in accrual.conversions_to_evaluate(db.session, now=NOW):
            accrual.evaluate_conversion(db.session, conversion, now=NOW)
        for refund in accrual.refunds_to_reverse(db.session):
            accrual.reverse_for_refund(db.session, refund, now=NOW)
        db.session.commit()
        assert db.session.scalar(select(db.func.count()).select_from(Click)) == len(specs)
    return World(admin, finance, alice, bob, program, spring, plain, bobs, ids)


RANGE = {"start": "2026-11-10", "end": "2026-11-12"}
