"""Fraud end to end: click verdicts at ingest, conversion verdicts, the review queue, per-program rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from affiliate.extensions import db
from affiliate.models import AuditLog, Click, Conversion
from affiliate.services import rollups
from tests.api.helpers import click, world
from tests.factories import Auth, Visitor, csrf_token, make_admin, make_finance
from tests.redirector.helpers import CHROME, NAVIGATION, all_clicks
from tests.reports.helpers import click_record, store_for

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")  # fmt: skip


def database_down(*_) -> None:
    raise OperationalError("INSERT INTO click_rollups ...", {}, Exception("server closed the connection"))


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


def test_safari_taps_are_judged_by_the_other_browsers_on_the_same_link_and_referrer(app, redirector):
    """Safari never says whether the user clicked; Chrome, on the same link from the same page, does."""
    _, _, links = world(app)
    stuffed, clean = links["alice"].code, links["bob"].code
    scripted = {key: value for key, value in NAVIGATION.items() if key != "Sec-Fetch-User"}
    safari_tap = {**scripted, "User-Agent": IPHONE}  # WebKit never sends Sec-Fetch-User
    for n in range(5):  # a coupon page sends every visitor through Alice's link by script; one network each
        Visitor(redirector, ip=f"198.18.{n}.1").get(
            f"/r/{stuffed}", headers={**scripted, "Referer": "https://coupons.example/deals"}
        )
        Visitor(redirector, ip=f"198.18.{n}.2").get(
            f"/r/{clean}", headers={**NAVIGATION, "Referer": "https://blog.example/review"}
        )
    taps = {
        "203.0.113.61": (stuffed, "https://coupons.example/deals"),
        "192.0.2.62": (clean, "https://blog.example/review"),
        "198.51.100.63": (stuffed, "https://blog.example/review"),
    }
    for ip, (code, referrer) in taps.items():
        response = Visitor(redirector, ip=ip).get(f"/r/{code}", headers={**safari_tap, "Referer": referrer})
        assert response.status_code == 302
    clicks = {c.ip: c for c in all_clicks(app)}
    assert all(clicks[f"198.18.{n}.1"].fraud_action == "reject" for n in range(5)), "Chrome says: no click"
    assert all(clicks[f"198.18.{n}.2"].fraud_action is None for n in range(5))
    stuffed_tap = clicks["203.0.113.61"]
    assert stuffed_tap.os == "iOS" and stuffed_tap.fraud_action == "reject"
    (fired,) = json.loads(stuffed_tap.fraud_reasons)
    assert fired["rule"] == "cookie_stuffing" and fired["evidence"] == (
        "Mobile Safari cannot say whether the user clicked; 5 of the 5 navigations through this link from "
        "coupons.example in the last day by browsers that can had no user activation"
    )
    assert clicks["192.0.2.62"].fraud_action is None, "a tap through a clean link and page is a click"
    assert clicks["198.51.100.63"].fraud_action is None, "the same link from another page is judged on its own"


def test_an_admin_sets_the_evidence_a_safari_tap_is_judged_by(app, redirector):
    merchant, _, links = world(app)
    admin = signed_in(app, make_admin(app))
    url = f"/admin/programs/{merchant.program.id}/fraud/"
    page = admin.get(url).get_data(as_text=True)
    assert 'name="cookie_stuffing.min_navigations"' in page and 'name="cookie_stuffing.min_unactivated_share"' in page
    token = csrf_token(page)
    bad = admin.post(url, data={"csrf_token": token, "cookie_stuffing.min_unactivated_share": "80%"})
    assert bad.status_code == 422 and "Enter a share between 0 and 1" in bad.get_data(as_text=True)
    saved = admin.post(url, data={"csrf_token": token, "cookie_stuffing.min_navigations": "6"}, follow_redirects=True)
    assert "1 rule changed" in saved.get_data(as_text=True)
    scripted = {key: value for key, value in NAVIGATION.items() if key != "Sec-Fetch-User"}
    code, coupons = links["alice"].code, {"Referer": "https://coupons.example/deals"}
    for n in range(6):  # one Chrome and one iPhone visitor at a time, each on a network of their own
        Visitor(redirector, ip=f"198.18.{n}.1").get(f"/r/{code}", headers={**scripted, **coupons})
        Visitor(redirector, ip=f"198.19.{n}.1").get(f"/r/{code}", headers={**scripted, **coupons, "User-Agent": IPHONE})
    taps = [c for c in all_clicks(app) if c.os == "iOS"]
    assert [c.fraud_action for c in taps] == [None] * 5 + ["reject"], "judged from the sixth navigation on"
    assert "6 of the 6 navigations through this link from coupons.example" in taps[-1].fraud_reasons


def test_a_batch_the_database_refused_counts_once_when_it_is_stored(app, monkeypatch):
    """The ingester retries a refused batch from the click log; its navigations must not count twice."""
    _, _, links = world(app)
    at = datetime.now(UTC)
    navigation = {
        "link": links["alice"],
        "sec_fetch": "cross-site/navigate/document/",
        "referrer": "https://coupons.example/deals",
    }
    scripted = [
        click_record(**navigation, at=at + timedelta(seconds=n), user_agent=CHROME, os="Windows", browser="Chrome")
        for n in range(4)
    ]
    with store_for(app) as store:
        with monkeypatch.context() as patch:
            patch.setattr(rollups, "upsert", database_down)
            with pytest.raises(OperationalError):
                store.insert(scripted)
        store.insert(scripted)
        tap = click_record(
            **navigation, at=at + timedelta(seconds=5), user_agent=IPHONE, os="iOS", browser="Mobile Safari"
        )
        store.insert([tap])
    stored = {c.click_id: c for c in all_clicks(app)}
    assert [stored[c["click_id"]].fraud_action for c in scripted] == ["reject"] * 4
    assert stored[tap["click_id"]].fraud_action is None, "4 navigations are too few to judge by (5)"


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
    assert "fast-1" in page.get_data(as_text=True) and "Too fast after the click" in page.get_data(as_text=True)
    assert "1 waiting" in page.get_data(as_text=True)
    assert "Fraud verdict: score 40" in finance.get(f"/admin/conversions/{flagged.id}").get_data(as_text=True)
    assert "fast-1" not in finance.get("/finance/review/?rule=self_referral").get_data(as_text=True)
    token = csrf_token(page.get_data(as_text=True))
    refused = finance.post(
        "/finance/review/decide?rule=too_fast", data={"ids": flagged.id, "decision": "reject", "csrf_token": token}
    )
    assert refused.status_code == 422 and conversion(app, "fast-1").status == "flagged", "rejecting needs a note"
    shown_again = refused.get_data(as_text=True)
    assert "Say why" in shown_again
    assert f'value="{flagged.id}" id="pick-{flagged.id}" aria-label="Select fast-1" checked' in shown_again, (
        "the ticked conversion stays ticked"
    )
    assert 'action="/finance/review/decide?rule=too_fast"' in shown_again, "and the filter stays"
    filtered = finance.get("/finance/review/?rule=too_fast").get_data(as_text=True)
    assert 'action="/finance/review/decide?rule=too_fast"' in filtered, "the decision keeps the queue's filter"
    approval = {"ids": flagged.id, "decision": "approve", "note": "known buyer", "csrf_token": token}
    decided = finance.post("/finance/review/decide?rule=too_fast", data=approval)
    assert decided.headers["Location"].endswith("/finance/review/?rule=too_fast"), "back to the filtered queue"
    assert conversion(app, "fast-1").status == "approved"
    assert "0 waiting" in finance.get("/finance/review/").get_data(as_text=True)
    again = finance.post(
        "/finance/review/decide",
        data={"ids": flagged.id, "decision": "reject", "note": "x", "csrf_token": token},
        follow_redirects=True,
    )
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
