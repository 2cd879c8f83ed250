"""A merchant sets up a program alone, in a real browser, with a screenshot of each page.

An admin creates a private program from nothing in the portal, gives it a plan with revenue tiers and a VIP
group with a better one, makes an invitation into the VIP group and an API key. An approved affiliate opens
the invitation, joins and creates a link; a shopper clicks it; the merchant's server posts the sale through the
API. The money job pays it by the VIP plan's tier, the conversion's page shows the commission with the plan
version and group that paid it and the attribution trace, and the affiliate's home shows their tier progress.
Clicktrail runs under granian as `make run` starts it, its money jobs on a one-second round. Screenshots go to
PROGRAM_SETUP_SCREENSHOTS (default test-output/program-setup/).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Commission, Conversion, Program
from affiliate.services.ledger import check
from tests.api.helpers import sign
from tests.browser.screens import capture
from tests.browser.test_journey import Shots, person, portal, sign_in, wait_until  # noqa: F401 - fixture
from tests.browser.test_loop import CHROMIUM, MERCHANT_PAGE, MerchantSite, launch  # noqa: F401 - fixture
from tests.factories import PASSWORD, make_admin, make_affiliate
from tests.redirector.helpers import wait_for_click
from tests.servers import ROOT

SHOTS = Path(os.environ.get("PROGRAM_SETUP_SCREENSHOTS", ROOT / "test-output" / "program-setup"))
assert CHROMIUM


def save_plan(page, base: str, url: str, percent: str, tiers: list[tuple[str, str]]) -> None:
    page.goto(f"{base}{url}")
    page.fill("#percent", percent)
    page.select_option("#tier_basis", "revenue")
    page.select_option("#tier_scope", "whole_period")
    for n, (threshold, rate) in enumerate(tiers):
        page.fill(f"#tiers-{n}-threshold", threshold)
        page.fill(f"#tiers-{n}-percent", rate)
    page.fill("#preview_amount", "150.00")
    page.fill("#preview_revenue", "0.00")
    page.click("#preview")
    page.wait_for_load_state()
    page.click("#save")
    page.wait_for_load_state()
    assert "saved" in page.inner_text("main"), page.inner_text("main")[:800]


def test_a_merchant_sets_up_a_program_and_an_invited_affiliate_earns_by_its_vip_tiers(app, portal, launch, tmp_path):  # noqa: F811
    shots = Shots(SHOTS)
    admin = make_admin(app, name="Mia Merchant")
    vince = make_affiliate(app, name="Vince VIP")
    shop = MerchantSite(tmp_path, MERCHANT_PAGE.format(base=portal.url, program=0))
    browser = launch(shop.port)
    base = portal.url

    # 1. The admin creates a private program from nothing.
    staff = sign_in(browser, base, admin.email, PASSWORD, "198.51.100.2")
    staff.goto(f"{base}/admin/")
    capture(staff, "program-setup-admin-dashboard")
    staff.goto(f"{base}/admin/programs/new")
    staff.fill("#name", "Kitchen Club")
    staff.fill("#description", "Cookware for people who cook every day.")
    staff.fill("#destination_url", "https://shop.example.com/welcome")
    staff.fill("#hold_days", "0")
    staff.select_option("#enrollment", "private")
    shots.take(staff, "new-program")
    staff.click("main button[type=submit]")
    staff.wait_for_load_state()
    with app.app_context():
        program_id = db.session.scalar(select(Program.id).where(Program.name == "Kitchen Club"))
    assert program_id is not None, staff.inner_text("main")[:800]

    # 2. Its plan: 10%, 12% from 100.00 of sales in a month, 15% from 1,000.00; the preview comes first.
    save_plan(staff, base, f"/admin/programs/{program_id}/plan/", "10", [("100.00", "12"), ("1000.00", "15")])
    shots.take(staff, "program-plan")
    capture(staff, "program-setup-plan-editor")

    # 3. A VIP group with a better plan: 15%, 20% from 100.00, 25% from 1,000.00.
    staff.goto(f"{base}/admin/programs/{program_id}/groups/")
    staff.fill("#group-name", "VIP")
    staff.click("main form button:has-text('Create group')")
    staff.wait_for_load_state()
    staff.click("main a:has-text('Edit plan') >> nth=1")
    staff.wait_for_load_state()
    group_plan_url = urlsplit(staff.url)
    assert "group=" in group_plan_url.query, staff.url
    save_plan(staff, base, f"{group_plan_url.path}?{group_plan_url.query}", "15", [("100.00", "20"), ("1000.00", "25")])
    shots.take(staff, "vip-plan")
    staff.goto(f"{base}/admin/programs/{program_id}/groups/")
    assert "15% of each sale" in staff.inner_text("main")
    shots.take(staff, "groups")

    # 4. An invitation into the VIP group, and an API key for the merchant's checkout server.
    staff.goto(f"{base}/admin/programs/{program_id}/enrollment/")
    staff.select_option("#invite-group", label="VIP")
    staff.click("main button:has-text('Make an invitation link')")
    staff.wait_for_load_state()
    invitation = staff.inner_text("#invitation").strip()
    shots.take(staff, "invitation")
    staff.goto(f"{base}/admin/programs/{program_id}/keys/")
    staff.fill("#name", "checkout server")
    staff.click("main button:has-text('Issue key')")
    staff.wait_for_load_state()
    token, secret = (staff.inner_text(f"main dl.facts dd:nth-of-type({n}) code").strip() for n in (1, 2))
    assert token.startswith("ct_") and secret.startswith("whsec_")

    # 5. Vince opens the invitation, joins, and creates a link for the program.
    partner = sign_in(browser, base, vince.email, PASSWORD, "203.0.113.9")
    partner.goto(invitation)
    shots.take(partner, "join")
    partner.click("main button:has-text('Join the program')")
    partner.wait_for_load_state()
    assert "You joined Kitchen Club in the VIP group" in partner.inner_text("main")
    home = partner.inner_text("main")
    assert "15% of each sale" in home, home
    partner.goto(f"{base}/partner/links/new")
    partner.select_option("#program_id", str(program_id))
    partner.fill("#campaign", "Autumn newsletter")
    partner.click("main button[type=submit]")
    partner.wait_for_load_state()
    link = partner.input_value("input.copy-source")
    shots.take(partner, "link-created")

    # The merchant's server reports the sale the moment the click lands, sooner than a person buys, which the
    # default "too fast" rule flags for review; this merchant's shop reports at once, so it turns the rule off.
    staff.goto(f"{base}/admin/programs/{program_id}/fraud/")
    staff.select_option("select[name='too_fast.action']", "off")
    staff.click("main button[type=submit]")
    staff.wait_for_load_state()

    # 6. A shopper clicks the link and lands on the shop; the merchant's server reports a 150.00 sale.
    shopper = person(browser, "192.0.2.77", ignore_https_errors=True)
    shopper.goto(f"{base}{urlsplit(link).path}")
    landed = urlsplit(shopper.url)
    assert landed.netloc == "shop.example.com" and landed.path == "/welcome"
    click_id = parse_qs(landed.query)["ct_click"][0]
    wait_for_click(app, click_id)
    body = json.dumps(
        {"type": "sale", "order_id": "KC-1001", "amount": 15_000, "currency": "USD", "click_id": click_id}
    ).encode()
    stamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the loopback test server
        f"{base}/api/v1/conversions",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Clicktrail-Request-Id": "kc-1001",
            "Clicktrail-Timestamp": str(stamp),
            "Clicktrail-Signature": f"v1={sign(secret, 'kc-1001', stamp, body)}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the loopback test server
        assert response.status == 201
        answer = json.load(response)["conversion"]
    assert answer["attribution"]["affiliate_id"] == vince.id and answer["status"] == "pending", answer

    # 7. The money job pays it by the VIP plan: 150.00 of sales this month is in the 20% tier, so 30.00.
    def paid() -> Commission | None:
        with app.app_context():
            found = db.session.scalar(select(Commission).where(Commission.conversion_id == answer["id"]))
            if found is not None:
                db.session.expunge(found)
            return found

    wait_until(lambda: paid() is not None, what="the sale's commission")
    commission = paid()
    assert (commission.affiliate_id, commission.amount_cents, commission.kind) == (vince.id, 3_000, "earning")
    assert commission.rule.startswith("tier from $100.00 of revenue: 20.00% of the sale"), commission.rule
    assert "group VIP" in commission.rule, commission.rule

    # 8. The conversion's page shows the commission, the plan version and group that paid it, and the trace.
    staff.goto(f"{base}/admin/conversions/{answer['id']}")
    page = staff.inner_text("main")
    assert "$30.00" in page and "group VIP" in page and "plan version" in page, page
    assert "won" in page and "Vince VIP" in page
    shots.take(staff, "conversion-and-commission")
    capture(staff, "program-setup-admin-conversion")

    # 9. Vince's home: what the program pays him, and his progress towards the 25% tier.
    partner.goto(f"{base}/partner/")
    home = partner.inner_text("main")
    assert "This month: $150.00, in the tier from $100.00 (20%); $850.00 to reach 25%" in home, home
    shots.take(partner, "affiliate-tier-progress")
    capture(partner, "program-setup-affiliate-home")
    partner.goto(f"{base}/partner/earnings/")
    assert "$30.00" in partner.inner_text("main")
    shots.take(partner, "affiliate-earnings")

    with app.app_context():
        assert check(db.session) == []
        assert db.session.get(Conversion, answer["id"]).affiliate_id == vince.id
    assert len(shots.names) == 10, shots.names
    shop.close()
