"""Every page of the browser journeys, checked with axe-core at 1280 and 390 pixels wide, a screenshot of each.

The demo is seeded and served as `make run` does it (tests/browser/conftest.py demo_server); each role signs in
once (staff set up their second factor as the journeys do), then one test per role and width visits that role's
pages, runs axe-core (pinned, from the npm registry: tests/browser/axe.py) with the WCAG 2.0/2.1 A and AA rules,
saves a full-page screenshot to test-output/screenshots/<role>-<page>-<width>.png, and fails listing every serious
or critical violation (page, rule, impact, element) once all of the role's pages were checked. At 390 px the
phone menu is also opened and checked. The full axe results go to test-output/accessibility/<role>-<width>.json.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from affiliate.demo import DEMO_PASSWORD
from affiliate.extensions import db
from affiliate.models import Conversion, PayoutBatch, Program, User
from tests.browser import axe, screens
from tests.browser.conftest import demo_server
from tests.browser.staff import finish_sign_in
from tests.browser.test_loop import CHROMIUM, sync_api
from tests.conftest import build_app, dispose
from tests.redirector.helpers import CHROME
from tests.servers import ROOT

REPORTS = ROOT / "test-output" / "accessibility"
DEMO = "{}@demo.clicktrail.example".format
MEMBER_EMAIL, MEMBER_PASSWORD = "mo.member@example.com", "a long enough password"
ROLES = ("anonymous", "affiliate", "applicant", "member", "admin", "finance")


@pytest.fixture(scope="module")
def axe_script() -> str:
    """axe.min.js; a missing file that cannot be fetched fails the test with the reason (never a skip)."""
    try:
        return axe.source()
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def chromium():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo(template_database, postgres, tmp_path_factory):
    """`make run`'s demo, shared by this module's tests (they only read, once the setup below is done)."""
    folder = tmp_path_factory.mktemp("accessibility")
    if postgres is None:
        target = folder / "clicktrail.db"
        shutil.copyfile(make_url(template_database).database, target)
        uri, name = f"sqlite:///{target}", None
    else:
        name = f"ct_a11y_{os.getpid()}"
        uri = postgres.create(name, template=make_url(template_database).database)
    with demo_server(uri, folder) as server:
        yield server, uri
    if name:
        postgres.drop(name)


def sign_in(browser, base: str, email: str, password: str = DEMO_PASSWORD):
    context = browser.new_context(user_agent=CHROME)
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    finish_sign_in(page, email)
    assert "/login" not in page.url, page.inner_text("main")[:500]
    return context, page


@pytest.fixture(scope="module")
def site(demo, chromium):
    """The base URL, each role's signed-in browser state, and the pages each role visits."""
    server, uri = demo
    base = server.url
    app = build_app(uri)
    with app.app_context():
        program = db.session.scalar(select(Program).where(Program.name == "Demo Store"))
        alice = db.session.scalar(select(User).where(User.email == DEMO("alice")))
        program_id, alice_id = program.id, alice.id
        alice_conversion = db.session.scalar(
            select(Conversion.id).where(Conversion.affiliate_id == alice_id).order_by(Conversion.id.desc()).limit(1)
        )
    states: dict[str, dict] = {}

    # A shopper signs up on the hosted page and becomes a member.
    context = chromium.new_context(user_agent=CHROME)
    page = context.new_page()
    page.goto(f"{base}/signup?program={program_id}")
    page.fill("#name", "Mo Member")
    page.fill("#email", MEMBER_EMAIL)
    page.fill("#password", MEMBER_PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/member/")
    states["member"] = context.storage_state()
    context.close()

    for role, email in (("affiliate", DEMO("alice")), ("applicant", DEMO("carol")), ("admin", DEMO("admin"))):
        context, page = sign_in(chromium, base, email)
        states[role] = context.storage_state()
        context.close()
    # Finance builds a payout batch from the demo's approved commissions, so there is a batch to look at.
    context, page = sign_in(chromium, base, DEMO("finance"))
    page.goto(f"{base}/finance/payouts/")
    page.click("main form[action$='/build'] button[type=submit]")
    page.wait_for_load_state()
    states["finance"] = context.storage_state()
    context.close()
    with app.app_context():
        batch_id = db.session.scalar(select(PayoutBatch.id).order_by(PayoutBatch.id.desc()).limit(1))
    dispose(app)
    assert batch_id is not None, "the demo has approved commissions to pay out"

    program = f"/admin/programs/{program_id}"
    pages = {
        "anonymous": {
            "landing": "/",
            "sign-in": "/login",
            "apply": "/apply",
            "sign-up": f"/signup?program={program_id}",
            "forgot-password": "/forgot-password",
            "snippet-example": "/examples/landing",
            "demo-shop": "/demo-shop/",
            "demo-shop-checkout": "/demo-shop/checkout?product=knife",
        },
        "affiliate": {
            "home": "/partner/",
            "links": "/partner/links/",
            "new-link": "/partner/links/new",
            "conversions": "/partner/conversions/",
            "conversion": f"/partner/conversions/{alice_conversion}",
            "earnings": "/partner/earnings/",
            "recruits": "/partner/recruits",
            "reports": "/partner/reports/",
            "reports-by-link": "/partner/reports/link",
            "coupons": "/partner/coupons/",
            "postbacks": "/partner/postbacks/",
            "payout-details": "/account/payout",
            "account": "/account/",
            "password": "/account/password",
            "sessions": "/account/sessions",
            "two-factor": "/account/two-factor/",
            "notifications": "/account/notifications",
        },
        "applicant": {"application": "/account/application", "account": "/account/"},
        "member": {"home": "/member/", "account": "/account/"},
        "admin": {
            "dashboard": "/admin/",
            "programs": "/admin/programs/",
            "new-program": "/admin/programs/new",
            "program": f"{program}/edit",
            "plan": f"{program}/plan/",
            "groups": f"{program}/groups/",
            "fraud-rules": f"{program}/fraud/",
            "webhooks": f"{program}/webhooks/",
            "enrollment": f"{program}/enrollment/",
            "api-keys": f"{program}/keys/",
            "coupons": f"{program}/coupons/",
            "affiliates": "/admin/affiliates/",
            "affiliate": f"/admin/affiliates/{alice_id}",
            "conversions": "/admin/conversions/",
            "conversion": f"/admin/conversions/{alice_conversion}",
            "reports": "/admin/reports/",
            "fraud-report": "/admin/reports/fraud",
            "affiliate-report": f"/admin/reports/affiliates/{alice_id}",
        },
        "finance": {
            "home": "/finance/",
            "affiliates": "/admin/affiliates/",
            "review": "/finance/review/",
            "commissions": "/finance/commissions/",
            "payouts": "/finance/payouts/",
            "batch": f"/finance/payouts/{batch_id}",
            "adjustments": "/finance/adjustments/",
            "audit-log": "/finance/audit/",
            "payouts-report": "/admin/reports/payouts",
            "reports": "/admin/reports/",
        },
    }
    return base, states, pages


@pytest.mark.parametrize("width", sorted(screens.WIDTHS, reverse=True))
@pytest.mark.parametrize("role", ROLES)
def test_no_serious_or_critical_violations(site, chromium, axe_script, role, width):
    base, states, pages = site
    context = chromium.new_context(
        user_agent=CHROME,
        viewport={"width": width, "height": screens.WIDTHS[width]},
        bypass_csp=True,  # axe is injected as an inline script, which the portal's CSP rightly refuses
        storage_state=states.get(role),
    )
    page = context.new_page()
    found: list[str] = []
    results: dict[str, list[dict]] = {}
    scrolls: list[str] = []

    def check(name: str) -> None:
        violations = axe.run(page, axe_script)
        results[name] = violations
        found.extend(axe.severe(violations, f"{role} {name} ({page.url.removeprefix(base)}) at {width}px"))
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if wide > 0:
            scrolls.append(f"{role} {name} at {width}px scrolls sideways by {wide}px")
        page.screenshot(path=str(screens.path(f"{role}-{name}", width)), full_page=True)

    for name, path in pages[role].items():
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 200, (role, path, response and response.status)
        page.wait_for_load_state("load")
        check(name)
        if width == 390 and name == next(iter(pages[role])):
            # The phone menu, open.
            page.click(".menu-button")
            assert page.get_attribute(".menu-button", "aria-expanded") == "true"
            assert page.locator("#main-nav").is_visible()
            check(f"{name}-menu-open")

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{role}-{width}.json").write_text(json.dumps(results, indent=1))
    context.close()
    problems = [f"{len(found)} serious or critical accessibility violations:", *found] if found else []
    assert not (problems or scrolls), "\n".join(problems + scrolls)
