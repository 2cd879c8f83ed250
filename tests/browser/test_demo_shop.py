"""`make run`'s demo in a real browser: a demo link lands in the demo shop, the shopper buys, the sale is credited.

The database is seeded by `seed-demo` as `make run` does (PUBLIC_BASE_URL on 127.0.0.1 and
ALLOW_HTTP_LOOPBACK_DESTINATIONS on), then Clicktrail runs under granian (`wsgi:app`) and headless
Chromium clicks one of Alice's demo links. Screenshots go to DEMO_SHOP_SCREENSHOTS (default
test-output/demo-shop/).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from affiliate.demo import DEMO_PASSWORD
from affiliate.extensions import db
from affiliate.models import Conversion, Link, User
from tests.browser.conftest import demo_server
from tests.redirector.helpers import CHROME, wait_for_click
from tests.servers import ROOT

SHOTS = Path(os.environ.get("DEMO_SHOP_SCREENSHOTS", ROOT / "test-output" / "demo-shop"))
ALICE = "alice@demo.clicktrail.example"


@pytest.fixture
def demo(database_uri, tmp_path):
    """A database seeded as `make run` seeds it, served as `make run` serves it."""
    with demo_server(database_uri, tmp_path) as server:
        yield server


def signed_in(browser, base: str, email: str):
    """A demo affiliate's browser, signed in with the demo password."""
    page = browser.new_context(user_agent=CHROME).new_page()
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", DEMO_PASSWORD)
    page.click("main button[type=submit]")
    return page


def shoot(page, name: str, count: list[int]) -> None:
    count[0] += 1
    page.screenshot(path=str(SHOTS / f"{count[0]:02d}-{name}.png"), full_page=True)


def test_a_demo_link_lands_in_the_demo_shop_and_its_sale_is_credited(app, demo, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    shots = [0]
    base = demo.url
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.email == ALICE))
        code = db.session.scalar(select(Link.code).where(Link.affiliate_id == alice.id, Link.campaign == "Newsletter"))
        alice_id = alice.id
    # Headless Chromium says so in its user agent, and the redirector rightly records that as a bot.
    context = browser.new_context(user_agent=CHROME)
    page = context.new_page()

    # 1. A shopper clicks Alice's newsletter link and lands in the demo shop, one 302 later.
    page.goto(f"{base}/r/{code}")
    landed = urlsplit(page.url)
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == f"{base}/demo-shop/"
    click_id = parse_qs(landed.query)["ct_click"][0]
    assert "Demo merchant." in page.inner_text(".demo-banner")
    page.wait_for_function("window.Clicktrail && Clicktrail.clickId()")
    assert page.evaluate("Clicktrail.clickId()") == click_id == page.input_value("#click-id")
    cookie = next(c for c in context.cookies(base) if c["name"] == "ct_click")
    assert cookie["value"] == click_id and cookie["sameSite"] == "Lax"
    shoot(page, "shop-landing", shots)

    # 2. They choose the knife and check out; the URL no longer carries the click, the snippet's cookie does.
    page.click("#product-knife a.button")
    page.wait_for_url(f"{base}/demo-shop/checkout?product=knife")
    page.wait_for_function("document.querySelector('input[name=click_id]').value !== ''")
    assert page.input_value("input[name=click_id]") == click_id
    page.fill("#email", "sam@example.com")
    shoot(page, "shop-checkout", shots)
    # A shopper takes seconds to buy; a loaded machine's redirector may take as long to store the click, and a
    # sale naming a click not stored within the conversion API's patience is not attributed (docs/input-safety.md).
    wait_for_click(app, click_id)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    confirmation = page.inner_text("main")
    assert "Order placed." in confirmation, confirmation
    assert "You came through the partner's link" in confirmation and "affiliate #" not in confirmation
    order_id = page.inner_text("#order-id")
    shoot(page, "shop-confirmation", shots)
    with app.app_context():
        sale = db.session.scalar(select(Conversion).where(Conversion.order_id == order_id))
        assert (sale.type, sale.amount_cents, sale.affiliate_id) == ("sale", 8900, alice_id)

    # 3. Back in the shop they create an account on the hosted signup, the click going with them.
    page.goto(f"{base}/demo-shop/")
    page.click("#signup")
    assert f"ct_click={click_id}" in page.url
    page.fill("#name", "Sam Shopper")
    page.fill("#email", "sam@example.com")
    page.fill("#password", "a long enough password")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/member/")
    context.close()

    # 4. Alice signs in and sees the sale among her conversions.
    alice_page = signed_in(browser, base, ALICE)
    alice_page.goto(f"{base}/partner/conversions/")
    listing = alice_page.inner_text("main")
    assert order_id in listing and re.search(r"\$89\.00", listing), listing[:2000]
    shoot(alice_page, "affiliate-conversions", shots)


BOB = "bob@demo.clicktrail.example"


def test_a_shopper_with_bobs_coupon_and_no_click_buys_and_bob_sees_the_sale(app, demo, browser):
    base = demo.url
    with app.app_context():
        bob_id = db.session.scalar(select(User.id).where(User.email == BOB))
    # A podcast listener: straight to the shop, no link clicked, the code typed at checkout.
    page = browser.new_context(user_agent=CHROME).new_page()
    page.goto(f"{base}/demo-shop/checkout?product=knife")
    assert page.input_value("input[name=click_id]") == ""
    page.fill("#email", "listener@example.com")
    page.fill("#coupon", "bobsblog")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    confirmation = page.inner_text("main")
    assert "You used the coupon of the partner who referred you" in confirmation, confirmation
    assert "BOBSBLOG" in confirmation
    order_id = page.inner_text("#order-id")
    with app.app_context():
        sale = db.session.scalar(select(Conversion).where(Conversion.order_id == order_id))
        assert (sale.affiliate_id, sale.click_id, sale.coupon_id is not None) == (bob_id, None, True)

    bob_page = signed_in(browser, base, BOB)
    bob_page.goto(f"{base}/partner/conversions/")
    assert order_id in bob_page.inner_text("main")
    bob_page.goto(f"{base}/partner/coupons/")
    assert "BOBSBLOG" in bob_page.inner_text("main") and "10% off your first order" in bob_page.inner_text("main")
