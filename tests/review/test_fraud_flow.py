"""Fraud end to end: click verdicts at ingest, conversion verdicts, the review queue, per-program rules."""

from __future__ import annotations

import json

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import AuditLog, Click, Conversion
from tests.api.helpers import click, world
from tests.factories import Auth, Visitor, csrf_token, make_admin, make_finance
from tests.redirector.helpers import CHROME, all_clicks

NAVIGATION = {"User-Agent": CHROME, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
              "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}  # fmt: skip
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")  # fmt: skip


def conversion(app, order_id: str) -> Conversion:
    with app.app_context():
        row = db.session.scalar(select(Conversion).where(Conversion.order_id == order_id))
        db.session.expunge(row)
        return row


def signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def test_click_verdicts_at_ingest(app, redirector):
    _, _, links = world(app)
    code = links["alice"].code
    shopper = Visitor(redirector, ip="198.51.100.10")
    for _ in range(7):
        assert shopper.get(f"/r/{code}", headers=NAVIGATION).status_code == 302
    Visitor(redirector, ip="192.0.2.11").get(f"/r/{code}", headers={**NAVIGATION, "Sec-Fetch-Dest": "image"})
    Visitor(redirector, ip="203.0.113.12").get(f"/r/{code}?gclid=abc", headers=NAVIGATION)
    safari_tap = {**NAVIGATION, "User-Agent": IPHONE}
    del safari_tap["Sec-Fetch-User"]  # WebKit never sends it
    Visitor(redirector, ip="203.0.113.13").get(f"/r/{code}", headers=safari_tap)
    Visitor(redirector, ip="203.0.113.14").get(f"/r/{code}", headers={**safari_tap, "User-Agent": CHROME})
    clicks = all_clicks(app)
    flood = [c for c in clicks if c.ip == "198.51.100.10"]
    assert [c.fraud_action for c in flood[:5]] == [None] + ["allow"] * 4, "repeats are recorded as duplicates only"
    assert [c.fraud_action for c in flood[5:]] == ["reject", "reject"]
    assert "click_flooding" in flood[5].fraud_reasons
    stuffed = next(c for c in clicks if c.ip == "192.0.2.11")
    assert stuffed.fraud_action == "reject" and "cookie_stuffing" in stuffed.fraud_reasons
    paid = next(c for c in clicks if c.ip == "203.0.113.12")
    assert paid.paid_click == "gclid" and paid.fraud_action is None, "ad traffic is allowed unless a program forbids it"
    safari = next(c for c in clicks if c.ip == "203.0.113.13")
    assert safari.fraud_action is None and safari.os == "iOS", "a tap in Safari is a human click"
    scripted = next(c for c in clicks if c.ip == "203.0.113.14")
    assert scripted.fraud_action == "reject" and "without user activation" in scripted.fraud_reasons


def test_flagged_conversion_waits_for_finance_and_is_decided_once(app, redirector):
    merchant, _, links = world(app)
    click_id = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    assert merchant.sale("fast-1", 1000, click_id=click_id).status_code == 201  # seconds after the click
    flagged = conversion(app, "fast-1")
    assert flagged.status == "flagged"
    assert [r["rule"] for r in json.loads(flagged.fraud_reasons)] == ["too_fast"]

    finance = signed_in(app, make_finance(app))
    page = finance.get("/finance/review/")
    assert "fast-1" in page.get_data(as_text=True) and "too fast" in page.get_data(as_text=True)
    assert "1 waiting" in page.get_data(as_text=True)
    assert "Fraud verdict: score 40" in finance.get(f"/admin/conversions/{flagged.id}").get_data(as_text=True)
    assert "fast-1" not in finance.get("/finance/review/?rule=self_referral").get_data(as_text=True)
    token = csrf_token(page.get_data(as_text=True))
    refused = finance.post(
        "/finance/review/decide", data={"ids": flagged.id, "decision": "reject", "csrf_token": token}
    )
    assert refused.status_code == 302 and conversion(app, "fast-1").status == "flagged", "rejecting needs a note"
    finance.post("/finance/review/decide", data={"ids": flagged.id, "decision": "approve", "note": "known buyer",
                                                 "csrf_token": token})  # fmt: skip
    assert conversion(app, "fast-1").status == "approved"
    assert "0 waiting" in finance.get("/finance/review/").get_data(as_text=True)
    again = finance.post("/finance/review/decide", data={"ids": flagged.id, "decision": "reject", "note": "x",
                                                         "csrf_token": token}, follow_redirects=True)  # fmt: skip
    assert "already been decided" in again.get_data(as_text=True)
    assert conversion(app, "fast-1").status == "approved"
    with app.app_context():
        entries = db.session.scalars(select(AuditLog).where(AuditLog.subject_type == "conversion")).all()
        assert [(e.action, e.note) for e in entries] == [("conversion.approve", "known buyer")]


def test_self_referral_is_rejected(app, redirector):
    merchant, people, links = world(app)
    alice_browser_ip = "192.0.2.55"
    alice = app.test_client()
    Auth(alice).client.environ_base["REMOTE_ADDR"] = alice_browser_ip
    assert Auth(alice).login(people["alice"].email).status_code == 302
    click_id = click(Visitor(redirector, ip=alice_browser_ip), links["alice"].code)
    redirector.recorder.flush()
    merchant.sale("self-1", 1000, click_id=click_id, occurred_at=None)
    rejected = conversion(app, "self-1")
    assert rejected.status == "rejected"
    assert "self_referral" in rejected.fraud_reasons and "shares an IP" in rejected.fraud_reasons


def test_gmail_aliases_of_the_affiliate_count_as_self_referral(app, redirector):
    merchant, people, links = world(app)
    with app.app_context():
        user = db.session.get(type(people["alice"]), people["alice"].id)
        user.email = "alice.smith@gmail.com"
        db.session.commit()
    click_id = click(Visitor(redirector, ip="203.0.113.99"), links["alice"].code)
    redirector.recorder.flush()
    merchant.sale("own-1", 1000, click_id=click_id, customer={"email": "Alice.Smith+deals@googlemail.com"})
    own = conversion(app, "own-1")
    assert own.affiliate_id == people["alice"].id and own.status == "rejected"
    assert "the customer's email is the affiliate's" in own.fraud_reasons


def test_admin_changes_a_rule_for_new_traffic_only(app, redirector):
    merchant, _, links = world(app)
    first = click(Visitor(redirector, ip="198.51.100.20"), links["alice"].code)
    redirector.recorder.flush()
    merchant.sale("before", 1000, click_id=first)
    admin = signed_in(app, make_admin(app))
    url = f"/admin/programs/{merchant.program.id}/fraud/"
    page = admin.get(url).get_data(as_text=True)
    token = csrf_token(page)
    bad = admin.post(url, data={"csrf_token": token, "too_fast.action": "off", "too_fast.weight": "500"})
    assert bad.status_code == 422 and "whole number from 0 to 100" in bad.get_data(as_text=True)
    saved = admin.post(url, data={"csrf_token": token, "too_fast.action": "off"}, follow_redirects=True)
    assert "1 rule changed" in saved.get_data(as_text=True)
    second = click(Visitor(redirector, ip="198.51.100.21"), links["alice"].code)
    redirector.recorder.flush()
    merchant.sale("after", 1000, click_id=second)
    assert conversion(app, "before").status == "flagged", "verdicts already given stay"
    assert conversion(app, "after").status == "pending"
    with app.app_context():
        (entry,) = db.session.scalars(select(AuditLog).where(AuditLog.action == "fraud_rule.update")).all()
        assert json.loads(entry.after)["action"] == "off" and json.loads(entry.before)["action"] == "flag"


def test_rejected_clicks_never_win_attribution(app, redirector):
    merchant, _, links = world(app)
    shopper = Visitor(redirector, ip="198.51.100.30")
    stuffed = shopper.get(f"/r/{links['bob'].code}", headers={**NAVIGATION, "Sec-Fetch-Dest": "iframe"})
    assert stuffed.status_code == 302
    redirector.recorder.flush()
    with app.app_context():
        (row,) = db.session.scalars(select(Click)).all()
        assert row.fraud_action == "reject"
    merchant.sale("stuffed-1", 1000, visitor_id=shopper.get_cookie("ct_vid").value)
    assert conversion(app, "stuffed-1").affiliate_id is None
