"""The people's journey in a real browser, with a screenshot of each page.

An applicant applies and is approved, creates a link, a shopper clicks it and signs up on the hosted
page, the affiliate sees the signup and the chart and exports CSV, finance approves the commission,
one finance user builds a batch, another approves (after entering their password again), exports and
pays it, and the affiliate sees it paid. Clicktrail runs under granian as `make run` starts it, its
money jobs on a one-second round. Screenshots go to JOURNEY_SCREENSHOTS (default test-output/journey/).
"""

from __future__ import annotations

import csv
import io
import os
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from affiliate.extensions import db
from affiliate.models import Commission, Conversion, User, utcnow
from tests.browser.screens import capture
from tests.browser.staff import finish_sign_in
from tests.browser.test_loop import CHROMIUM, MERCHANT_PAGE, MerchantSite, launch  # noqa: F401 - fixture
from tests.factories import PASSWORD as STAFF_PASSWORD
from tests.factories import make_admin, make_finance, make_program, recovery_codes
from tests.money.test_accrual import set_plan
from tests.redirector.helpers import CHROME
from tests.servers import ROOT, Server

PASSWORD = "a long enough password"
SHOTS = Path(os.environ.get("JOURNEY_SCREENSHOTS", ROOT / "test-output" / "journey"))
assert CHROMIUM


@pytest.fixture
def portal(app, database_uri, tmp_path):
    server = Server(
        database_uri,
        tmp_path,
        workers=1,
        interface="wsgi",
        target="wsgi:app",
        MONEY_JOBS_SECONDS="1",
        TRUSTED_PROXY_COUNT="1",
    )
    yield server
    server.stop()


class Shots:
    """Numbered full-page screenshots, so the folder reads in the journey's order."""

    def __init__(self, folder: Path = SHOTS) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        self.folder = folder
        self.count = 0
        self.names: list[str] = []

    def take(self, page, name: str) -> None:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.names.append(path.name)


def person(browser, ip: str, **options):
    """A browser context of its own, reaching the server from ``ip`` (through the one trusted proxy)."""
    return browser.new_context(user_agent=CHROME, extra_http_headers={"X-Forwarded-For": ip}, **options).new_page()


def sign_in(browser, base: str, email: str, password: str, ip: str):
    page = person(browser, ip)
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    finish_sign_in(page, email)
    assert "/login" not in page.url, page.content()[:500]
    return page


def download(page, selector: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.click(selector)
    item = info.value
    return item.suggested_filename, Path(item.path()).read_text()


def wait_until(check, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_apply_link_click_sign_up_see_it_and_get_paid(app, portal, launch, tmp_path):  # noqa: F811 - fixture
    shots = Shots()
    admin = make_admin(app)
    maker, checker = make_finance(app, name="Fran Maker"), make_finance(app, name="Chris Checker")
    program = make_program(app, admin, cookie_days=30, hold_days=30, minimum_payout_cents=100)
    set_plan(app, program.id, flat_cents=500, percent_bps=0)  # $5.00 per signup
    shop = MerchantSite(tmp_path, MERCHANT_PAGE.format(base=portal.url, program=program.id))
    browser = launch(shop.port)
    base = portal.url

    # 1. Someone applies to become an affiliate.
    applicant = person(browser, "203.0.113.7")
    applicant.goto(f"{base}/apply")
    applicant.fill("#name", "Ada Applicant")
    applicant.fill("#email", "ada@example.com")
    applicant.fill("#password", PASSWORD)
    applicant.fill("#confirm", PASSWORD)
    applicant.fill("#website", "https://ada.example.com")
    applicant.fill("#promotion", "A weekly newsletter about tools.")
    shots.take(applicant, "apply")
    applicant.click("main button[type=submit]")
    applicant.wait_for_load_state()
    assert "review" in applicant.content().lower()
    capture(applicant, "journey-applicant-application")
    with app.app_context():
        ada = db.session.scalar(select(User).where(User.email == "ada@example.com"))
        assert ada.status == "pending"
        ada_id = ada.id

    # 2. An admin approves her.
    admin_page = sign_in(browser, base, admin.email, STAFF_PASSWORD, "198.51.100.2")
    admin_page.goto(f"{base}/admin/")
    capture(admin_page, "journey-admin-dashboard")
    admin_page.goto(f"{base}/admin/affiliates/{ada_id}")
    shots.take(admin_page, "admin-reviews-applicant")
    admin_page.click("main button[value=approve]")
    admin_page.wait_for_load_state()
    with app.app_context():
        assert db.session.get(User, ada_id).status == "active"
    # The merchant's CRM will hear of every event: the admin adds a webhook endpoint and sees its signing secret.
    admin_page.goto(f"{base}/admin/programs/{program.id}/webhooks/")
    admin_page.fill("#url", "https://hooks.example.com/clicktrail")
    admin_page.check("main input[name=events][value='*']")
    admin_page.click("main form[action$='/webhooks/'] button[type=submit]")
    admin_page.wait_for_load_state()
    assert "whsec_" in admin_page.inner_text("main"), "the new endpoint's page shows its secret"
    shots.take(admin_page, "admin-webhook-endpoint")

    # 3. Ada creates a campaign link.
    ada_page = sign_in(browser, base, "ada@example.com", PASSWORD, "203.0.113.7")
    capture(ada_page, "journey-affiliate-home")
    ada_page.goto(f"{base}/partner/links/new")
    ada_page.select_option("#program_id", str(program.id))
    ada_page.fill("#campaign", "Launch")
    ada_page.fill("#sub1", "newsletter")
    shots.take(ada_page, "create-link")
    ada_page.click("main button[type=submit]")
    ada_page.wait_for_load_state()
    link_url = ada_page.input_value("input.copy-source")
    assert urlsplit(link_url).path.startswith("/r/")
    shots.take(ada_page, "links")
    # Her own tracker wants a postback when a conversion of hers is recorded.
    ada_page.goto(f"{base}/partner/postbacks/")
    ada_page.select_option("#program", str(program.id))
    ada_page.fill("#url_template", "https://track.example.net/pb?cid={sub1}&payout={commission}")
    ada_page.check("main input[name=events][value='conversion.recorded']")
    ada_page.click("main button[type=submit]")
    ada_page.wait_for_load_state()
    assert "track.example.net" in ada_page.inner_text("main"), "her postback is listed"
    shots.take(ada_page, "partner-postback")

    # 4. A shopper clicks it, lands on the merchant, and signs up on the hosted page.
    shopper = person(browser, "192.0.2.44", ignore_https_errors=True)
    shopper.goto(f"{base}{urlsplit(link_url).path}")
    assert urlsplit(shopper.url).netloc == "shop.example.com"
    shots.take(shopper, "merchant-landing")
    shopper.click("#signup")
    shopper.fill("#name", "Sam Shopper")
    shopper.fill("#email", "sam@example.com")
    shopper.fill("#password", PASSWORD)
    shots.take(shopper, "hosted-signup")
    shopper.click("main button[type=submit]")
    shopper.wait_for_url(f"{base}/member/")
    shots.take(shopper, "member-home")
    capture(shopper, "journey-member-home")

    # 5. The signup is recorded for Ada; it came seconds after its click, so screening flags it and it earns
    # nothing until finance's review approves it (docs/money.md).
    def recorded() -> bool:
        with app.app_context():
            return db.session.scalar(select(Conversion.status).where(Conversion.affiliate_id == ada_id)) == "flagged"

    def accrued() -> bool:
        with app.app_context():
            return db.session.scalar(select(Commission.id).where(Commission.affiliate_id == ada_id)) is not None

    wait_until(recorded, what="the flagged signup")
    assert not accrued()

    # 6. Ada sees the click and the signup on her dashboard, with the daily chart, and exports them as CSV.
    def on_dashboard() -> bool:
        ada_page.goto(f"{base}/partner/reports/")
        text = ada_page.inner_text("main")
        return "Raw clicks\n1" in text and "Signups\n1" in text and ada_page.locator("main svg[role=img]").count() > 0

    wait_until(on_dashboard, what="the click and signup on the dashboard")
    assert "Earned\n$5.00" not in ada_page.inner_text("main"), "a flagged signup earns nothing before review"
    shots.take(ada_page, "dashboard")
    capture(ada_page, "journey-affiliate-reports")
    ada_page.goto(f"{base}/partner/reports/link")
    shots.take(ada_page, "breakdown-by-link")
    name, text = download(ada_page, "main a[download]")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert name.endswith(".csv") and len(rows) == 1, rows
    assert "Launch" in " ".join(rows[0].values()), rows[0]

    # 7. Ada gives her payout details; the cooling-off after a change is let pass.
    ada_page.goto(f"{base}/account/payout")
    if "/reauth" in ada_page.url:  # payout details ask for the password again unless it was typed just now
        ada_page.fill("#password", PASSWORD)
        ada_page.click("main button[type=submit]")
        ada_page.wait_for_url(f"{base}/account/payout")
    ada_page.select_option("#method", "paypal")
    ada_page.fill("#email", "ada-pay@example.com")
    ada_page.click("main button[type=submit]")
    ada_page.wait_for_load_state()
    with app.app_context():
        db.session.execute(
            update(User).where(User.id == ada_id).values(payout_details_changed_at=utcnow() - timedelta(days=4))
        )
        db.session.commit()

    # 8. The signup came seconds after the click, so fraud screening flagged it: finance reviews and approves it,
    # then approves the pending commission.
    fran = sign_in(browser, base, maker.email, STAFF_PASSWORD, "198.51.100.3")
    capture(fran, "journey-finance-home")
    fran.goto(f"{base}/finance/review/")
    assert "Too fast after the click" in fran.content()
    fran.check("main input[name=ids]")
    shots.take(fran, "review-queue")
    capture(fran, "journey-finance-review-queue")
    fran.click("main button[value=approve]")
    fran.wait_for_load_state()
    wait_until(accrued, what="the signup's commission once review approved it")
    fran.goto(f"{base}/finance/commissions/?status=pending")
    fran.check("main input[name=ids]")
    shots.take(fran, "finance-commissions")
    fran.click("main button[value=approve]")
    fran.wait_for_load_state()
    with app.app_context():
        assert db.session.scalar(select(Commission.status).where(Commission.affiliate_id == ada_id)) == "approved"

    # 9. Fran builds a batch; she cannot approve her own.
    fran.goto(f"{base}/finance/payouts/")
    fran.click("main form[action$='/build'] button[type=submit]")
    fran.wait_for_load_state()
    assert "Batch #" in fran.content() and "$5.00" in fran.content()
    batch_url = fran.url
    shots.take(fran, "batch-built")
    capture(fran, "journey-finance-batch")

    # 10. Chris approves it, entering his password again, exports the PayPal file and marks it paid.
    chris = sign_in(browser, base, checker.email, STAFF_PASSWORD, "198.51.100.4")
    chris.goto(batch_url)
    chris.click("main form[action$='/approve'] button[type=submit]")
    chris.wait_for_load_state()
    if "/reauth" in chris.url:
        chris.fill("#password", STAFF_PASSWORD)
        chris.fill("#code", recovery_codes[checker.email].pop())
        chris.click("main button[type=submit]")
        chris.wait_for_load_state()
        chris.click("main form[action$='/approve'] button[type=submit]")
        chris.wait_for_load_state()
    assert "approved" in chris.content()
    name, text = download(chris, "main form[action$='/export/paypal'] button[type=submit]")
    assert name.endswith("-paypal.csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["ada-pay@example.com", "5.00", "USD", rows[0][3], rows[0][4], "PAYPAL"]], rows
    shots.take(chris, "batch-approved")
    chris.fill("main form[action*='/payout/'][action$='/paid'] input[name=reference]", "PAYPAL-BATCH-1")
    chris.click("main form[action*='/payout/'][action$='/paid'] button[type=submit]")
    chris.wait_for_load_state()
    assert "marked paid" in chris.content()
    shots.take(chris, "payout-paid")

    # 11. Ada sees it paid.
    ada_page.goto(f"{base}/partner/earnings/")
    earnings = ada_page.inner_text("body")
    assert "PAYPAL-BATCH-1" in earnings and "paid" in earnings.lower()
    shots.take(ada_page, "earnings-paid")
    capture(ada_page, "journey-affiliate-earnings")
    assert len(shots.names) >= 12
    shop.close()
