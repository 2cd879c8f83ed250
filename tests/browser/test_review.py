"""The fraud engine tried as a new user would, in a real browser, with a screenshot of each step.

Against `make run`'s demo (seeded by `seed-demo`, served by granian as `wsgi:app`, behind one trusted proxy so
each person has an address of their own): an admin sets the demo program's self-referral rule to flag, bots
fetch one of Alice's demo links, two self-referred sales and a stranger's sale go through the demo shop, finance
filters the review queue by rule, reads the evidence, approves one and rejects the other, and the queue, the
fraud report, Alice's dashboard and the audit log show the change. Screenshots go to REVIEW_SCREENSHOTS
(default test-output/review/).
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from affiliate.demo import DEMO_PASSWORD
from affiliate.extensions import db
from affiliate.models import AuditLog, Click, Conversion, FraudRule, Link, Program, User
from tests.browser.conftest import demo_server
from tests.browser.screens import capture
from tests.browser.staff import finish_sign_in
from tests.browser.test_journey import Shots, person, wait_until
from tests.servers import ROOT

SHOTS = Path(os.environ.get("REVIEW_SCREENSHOTS", ROOT / "test-output" / "review"))
ADMIN, FINANCE, ALICE = (f"{name}@demo.clicktrail.example" for name in ("admin", "finance", "alice"))
# Where each person reaches the site from (the one trusted proxy says so in X-Forwarded-For). Different /24s, so
# their device fingerprints differ too.
ALICE_HOME, CAFE, STRANGER = "203.0.113.10", "198.51.100.20", "192.0.2.30"
ADMIN_DESK, FINANCE_DESK = "100.64.0.2", "100.64.0.3"
BOTS = {
    "curl/8.5.0": ("Bot: automation tool", "66.102.0.7"),
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": ("Bot: known bot", "66.249.66.1"),
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)": ("Bot: link preview", "54.209.1.9"),
}
FLAGGED = ("Self-referral", "flagged")  # the fraud report's row for conversions the rule flagged


@pytest.fixture
def demo(database_uri, tmp_path):
    """`make run`'s demo, behind one trusted proxy that passes each client's address on."""
    with demo_server(database_uri, tmp_path, TRUSTED_PROXY_COUNT="1") as server:
        yield server


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    finish_sign_in(page, email)
    assert "/login" not in page.url, page.inner_text("main")[:500]


def table(page, caption: str) -> list[list[str]]:
    """The cells of the table with this caption, row by row (none when the page shows no such table)."""
    rows = page.locator("main table").filter(has=page.locator("caption", has_text=caption)).locator("tbody tr")
    return rows.evaluate_all("rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))")


def fraud_report(page, base: str, program_id: int) -> tuple[dict[str, int], dict[tuple[str, str], tuple[int, int]]]:
    """Open the Fraud flags report for one program; return excluded clicks by reason and conversions by rule."""
    page.goto(f"{base}/admin/reports/fraud")
    page.select_option("#program", str(program_id))
    page.click("main form.filters button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("main h1").inner_text() == "Fraud flags"
    excluded = {reason: number(clicks) for reason, clicks in table(page, "Excluded clicks by reason")}
    flags = {
        (rule, did): (number(n), number(waiting)) for rule, did, n, waiting in table(page, "Conversions per fraud rule")
    }
    return excluded, flags


def number(text: str) -> int:
    """A count as the portal writes it, with thousands separators ("1,234")."""
    return int(text.replace(",", ""))


def bot_click(port: int, path: str, agent: str, ip: str) -> str:
    """One plain HTTP GET as a bot sends it (through the proxy); return the click id the redirect carries."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"User-Agent": agent, "X-Forwarded-For": ip})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 302, (agent, response.status)
    return parse_qs(urlsplit(response.getheader("Location")).query)["ct_click"][0]


def buy(page, base: str, link_path: str, email: str) -> tuple[int, str]:
    """Follow the link into the demo shop and buy the knife; return the conversion id and status it shows."""
    page.goto(f"{base}{link_path}")
    assert urlsplit(page.url).path == "/demo-shop/", page.url
    page.click("#product-knife a.button")
    page.wait_for_url(f"{base}/demo-shop/checkout?product=knife")
    page.wait_for_function("document.querySelector('input[name=click_id]').value !== ''")
    page.fill("#email", email)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    confirmation = page.inner_text("main")
    assert "Order placed." in confirmation and "You came through the partner's link" in confirmation, confirmation
    return int(page.inner_text("#conversion-id").lstrip("#")), page.get_attribute("#conversion-status", "data-status")


def queue_for_rule(page, base: str, rule: str) -> int:
    """Open the review queue, filter it by rule with the page's form, and return the count it shows waiting."""
    page.goto(f"{base}/finance/review/")
    page.select_option("main select[name=rule]", rule)
    page.click("main form.filters button[type=submit]")
    page.wait_for_load_state()
    assert f"rule={rule}" in page.url
    return number(page.inner_text("main h1 .badge").split()[0])


def decide(page, conversion_id: int, decision: str, note: str) -> str:
    page.check(f"#pick-{conversion_id}")
    page.fill("#note", note)
    page.click(f"main button[name=decision][value={decision}]")
    page.wait_for_load_state()
    return page.inner_text("main .flash")


def test_bots_and_self_referrals_are_flagged_reviewed_and_counted(app, demo, browser):
    shots = Shots(SHOTS)
    base = demo.url
    with app.app_context():
        program = db.session.scalar(select(Program).where(Program.name == "Demo Store"))
        alice = db.session.scalar(select(User).where(User.email == ALICE))
        code = db.session.scalar(select(Link.code).where(Link.affiliate_id == alice.id, Link.campaign == "Newsletter"))
        finance_id = db.session.scalar(select(User.id).where(User.email == FINANCE))
        program_id = program.id
    link_path = f"/r/{code}"

    # 1. The admin opens the demo program's fraud rules from the programs page and sets self-referral to flag:
    # by default it rejects, and a rejected sale never reaches a person.
    admin = person(browser, ADMIN_DESK)
    log_in(admin, base, ADMIN)
    capture(admin, "review-admin-dashboard")
    admin.goto(f"{base}/admin/programs/")
    admin.locator("main tr", has_text="Demo Store").get_by_role("link", name="fraud rules").click()
    admin.wait_for_url(f"{base}/admin/programs/{program_id}/fraud/")
    assert admin.input_value("select[name='self_referral.action']") == "reject"
    admin.select_option("select[name='self_referral.action']", "flag")
    admin.click("main button[type=submit]")
    admin.wait_for_load_state()
    assert "1 rule changed." in admin.inner_text("main .flash")
    assert admin.input_value("select[name='self_referral.action']") == "flag"
    shots.take(admin, "admin-sets-self-referral-to-flag")
    with app.app_context():
        rule = db.session.scalar(
            select(FraudRule).where(FraudRule.program_id == program_id, FraudRule.rule == "self_referral")
        )
        assert rule.action == "flag"

    # What the people look at before any of it: the fraud report, finance's queue, Alice's dashboard.
    excluded_before, flags_before = fraud_report(admin, base, program_id)
    assert FLAGGED not in flags_before, flags_before  # the seed's self-referrals were all rejected
    shots.take(admin, "fraud-report-before")
    finance = person(browser, FINANCE_DESK)
    log_in(finance, base, FINANCE)
    capture(finance, "review-finance-home")
    assert queue_for_rule(finance, base, "self_referral") == 0
    assert "No flagged conversion matches these filters." in finance.inner_text("main")

    # Alice checks at home that her newsletter link lands in the shop, then signs in from the same browser: her
    # home IP and that browser's visitor cookie are now known as hers.
    alice_page = person(browser, ALICE_HOME)
    alice_page.goto(f"{base}{link_path}")
    assert urlsplit(alice_page.url).path == "/demo-shop/"
    log_in(alice_page, base, ALICE)
    alice_page.goto(f"{base}/partner/reports/")
    alice_excluded_before = number(alice_page.inner_text("[data-figure=excluded]"))

    # 2a. Bots fetch her link over plain HTTP, as bots do: they still get their redirect.
    bot_clicks = [bot_click(demo.port, link_path, agent, ip) for agent, (_, ip) in BOTS.items()]

    # 2b. Self-referral: someone on Alice's home network buys through her link in a browser of their own...
    flatmate = person(browser, ALICE_HOME)
    shared_ip, status = buy(flatmate, base, link_path, "sam.flatmate@example.com")
    assert status == "flagged"
    shots.take(flatmate, "shop-confirmation-flagged")
    # ...and Alice, in her own browser but on the café's network, buys through her own link under another address.
    alice_page.context.set_extra_http_headers({"X-Forwarded-For": CAFE})
    own_purchase, status = buy(alice_page, base, link_path, "a.shopper@example.com")
    assert status == "flagged"
    # A stranger's sale through the same link is no self-referral.
    stranger, _ = buy(person(browser, STRANGER), base, link_path, "pat@example.com")

    # 3. The ingester stores the bot clicks within seconds, recorded as bots and left out.
    def bots_stored() -> bool:
        with app.app_context():
            stored = db.session.scalars(select(Click.is_bot).where(Click.click_id.in_(bot_clicks))).all()
        return len(stored) == len(BOTS) and all(stored)

    wait_until(bots_stored, timeout=20, what="the bot clicks to be stored")

    # 4. Finance filters the queue by rule and sees the two sales with the evidence; the stranger's is not there.
    assert queue_for_rule(finance, base, "self_referral") == 2
    rows = {
        conversion_id: finance.locator("main tbody tr", has=finance.locator(f"#pick-{conversion_id}")).inner_text()
        for conversion_id in (shared_ip, own_purchase)
    }
    evidence = {
        shared_ip: "the customer shares an IP with the affiliate",
        own_purchase: "the customer shares a visitor cookie with the affiliate",
    }
    for conversion_id, why in evidence.items():
        assert f"Self-referral (flagged): {why}" in rows[conversion_id], rows[conversion_id]
        assert "Alice Affiliate" in rows[conversion_id], rows[conversion_id]
    assert finance.locator(f"#pick-{stranger}").count() == 0
    # The header box ticks every row on the page, says how many, and clears them again.
    everything = finance.locator("main [data-select-all]")
    rows_boxes = finance.locator("main input[name=ids]:not([data-select-all])")
    everything.check()
    assert all(box.is_checked() for box in rows_boxes.all()) and rows_boxes.count() >= 2
    assert f"{rows_boxes.count()} selected" in finance.inner_text("main [data-selected-count]")
    everything.uncheck()
    assert not any(box.is_checked() for box in rows_boxes.all())
    shots.take(finance, "review-queue-self-referral")
    capture(finance, "review-finance-queue")
    with app.app_context():
        reasons = json.loads(db.session.get(Conversion, stranger).fraud_reasons or "[]")
        assert "self_referral" not in {reason["rule"] for reason in reasons}, reasons

    # The fraud report counts both as flagged by the rule and still waiting.
    _, flags_waiting = fraud_report(admin, base, program_id)
    assert flags_waiting.get(FLAGGED) == (2, 2), flags_waiting

    # Finance approves the flatmate's sale and rejects Alice's own purchase, each with a note.
    approve_note = "Her flatmate, a real customer on the shared home Wi-Fi."
    assert decide(finance, shared_ip, "approve", approve_note) == "1 conversion approved."
    shots.take(finance, "review-approved")
    assert queue_for_rule(finance, base, "self_referral") == 1
    reject_note = "Alice bought through her own link."
    assert decide(finance, own_purchase, "reject", reject_note) == "1 conversion rejected."
    shots.take(finance, "review-rejected")

    # 5. The counts change: the queue for the rule is empty again, the conversions say what finance decided...
    assert queue_for_rule(finance, base, "self_referral") == 0
    with app.app_context():
        assert db.session.get(Conversion, shared_ip).status == "approved"
        assert db.session.get(Conversion, own_purchase).status == "rejected"
        decisions = db.session.execute(
            select(AuditLog.subject_id, AuditLog.action, AuditLog.actor_id, AuditLog.note).where(
                AuditLog.subject_type == "conversion", AuditLog.subject_id.in_((shared_ip, own_purchase))
            )
        ).all()
    assert sorted(decisions) == sorted(
        [
            (shared_ip, "conversion.approve", finance_id, approve_note),
            (own_purchase, "conversion.reject", finance_id, reject_note),
        ]
    )

    # ...the audit log shows both decisions, by whom and why...
    finance.goto(f"{base}/finance/audit/")
    finance.get_by_role("link", name="Conversion", exact=True).click()
    finance.wait_for_url("**/finance/audit/?subject=conversion")
    for conversion_id, sentence, note in (
        (shared_ip, "Approved sale", approve_note),
        (own_purchase, "Rejected sale", reject_note),
    ):
        subject = finance.locator(f"a[href$='/admin/conversions/{conversion_id}']")
        entry = finance.locator("main tbody tr", has=subject).inner_text()
        assert sentence in entry and note in entry and FINANCE in entry, entry
        assert "Status: flagged → " in entry, entry
    shots.take(finance, "audit-log")
    capture(finance, "review-finance-audit-log")

    # ...the fraud report counts the decided sales as no longer waiting and each bot under its reason...
    excluded_after, flags_after = fraud_report(admin, base, program_id)
    assert flags_after.get(FLAGGED) == (2, 0), flags_after
    grew = {
        reason: excluded_after.get(reason, 0) - excluded_before.get(reason, 0)
        for reason in excluded_before | excluded_after
    }
    assert {reason: n for reason, n in grew.items() if n} == {label: 1 for label, _ in BOTS.values()}, (
        excluded_before,
        excluded_after,
    )
    shots.take(admin, "fraud-report-after")
    capture(admin, "review-admin-fraud-report")

    # ...and Alice's dashboard counts the three bot fetches as excluded clicks, and nothing else.
    alice_page.goto(f"{base}/partner/reports/")
    assert number(alice_page.inner_text("[data-figure=excluded]")) == alice_excluded_before + len(BOTS)
    shots.take(alice_page, "affiliate-dashboard")
    alice_page.goto(f"{base}/partner/")
    capture(alice_page, "review-affiliate-home")
    assert len(shots.names) == 9
