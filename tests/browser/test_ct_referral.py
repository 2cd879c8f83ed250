"""ct.js keeps an affiliate's referral code (?ref= or ?via=) beside the click id, in real Chromium.

The merchant's site (https://shop.example.com) loads the app's /static/ct.js as a merchant would; the newest
landing wins, so a click id and a code are never kept together, and Clicktrail.referral() is what the merchant
passes to Stripe as client_reference_id.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from tests.browser.test_loop import MerchantSite, launch, site  # noqa: F401 - fixtures

SHOP = "https://shop.example.com"
PAGE = """<!doctype html><html><head><title>Shop</title>
<script src="{base}/static/ct.js" data-cookie-days="30" defer></script></head>
<body><h1>Shop</h1><form action="/checkout" method="post">
<input id="click" data-clicktrail="click_id"><input id="referral" name="referral" data-clicktrail="referral">
</form></body></html>"""


def visit(page, path: str) -> None:
    page.goto(f"{SHOP}{path}")
    page.wait_for_function("window.Clicktrail !== undefined")


def kept(page) -> dict[str, str | None]:
    """What the snippet answers on this page, and what the filled referral input holds."""
    return {
        "clickId": page.evaluate("Clicktrail.clickId()"),
        "referralCode": page.evaluate("Clicktrail.referralCode()"),
        "referral": page.evaluate("Clicktrail.referral()"),
        "input": page.input_value("#referral") or None,
    }


def cookies(context) -> dict[str, dict]:
    return {cookie["name"]: cookie for cookie in context.cookies(SHOP)}


def test_a_code_is_kept_until_a_tracked_click_replaces_it_and_back(site, launch, tmp_path):  # noqa: F811 - fixtures
    shop = MerchantSite(tmp_path, PAGE.format(base=site.url))
    context = launch(shop.port).new_context(ignore_https_errors=True)
    page = context.new_page()

    # 1. A shopper lands through an affiliate's ?via= link: the code is kept in a first-party cookie.
    visit(page, "/?via=ada-2024_SPRING")
    assert kept(page) == {
        "clickId": None,
        "referralCode": "ada-2024_SPRING",
        "referral": "ada-2024_SPRING",
        "input": "ada-2024_SPRING",
    }
    jar = cookies(context)
    assert jar["ct_ref"]["value"] == "ada-2024_SPRING" and "ct_click" not in jar
    assert jar["ct_ref"]["sameSite"] == "Lax" and jar["ct_ref"]["secure"]
    lifetime = datetime.fromtimestamp(jar["ct_ref"]["expires"], UTC) - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    visit(page, "/pricing")  # browsing on, without the parameter
    assert page.evaluate("Clicktrail.referral()") == "ada-2024_SPRING" == page.input_value("#referral")

    # 2. Later they come back through a tracked link: the click id is newer, so it replaces the code.
    click_id = secrets.token_urlsafe(24)
    visit(page, f"/?ct_click={click_id}")
    assert kept(page) == {"clickId": click_id, "referralCode": None, "referral": click_id, "input": click_id}
    assert page.input_value("#click") == click_id
    jar = cookies(context)
    assert jar["ct_click"]["value"] == click_id and "ct_ref" not in jar
    visit(page, "/checkout")
    assert kept(page) == {"clickId": click_id, "referralCode": None, "referral": click_id, "input": click_id}

    # 3. And a still later ?ref= landing replaces the click id in turn.
    visit(page, "/?ref=BOB")
    assert kept(page) == {"clickId": None, "referralCode": "BOB", "referral": "BOB", "input": "BOB"}
    assert page.input_value("#click") == ""
    jar = cookies(context)
    assert jar["ct_ref"]["value"] == "BOB" and "ct_click" not in jar
    context.close()
    shop.close()


def test_a_click_id_beside_a_code_in_one_url_wins(site, launch, tmp_path):  # noqa: F811 - fixtures
    shop = MerchantSite(tmp_path, PAGE.format(base=site.url))
    context = launch(shop.port).new_context(ignore_https_errors=True)
    page = context.new_page()
    click_id = secrets.token_urlsafe(16)
    visit(page, f"/?ref=ADA&ct_click={click_id}")
    assert kept(page) == {"clickId": click_id, "referralCode": None, "referral": click_id, "input": click_id}
    assert set(cookies(context)) == {"ct_click"}
    context.close()
    shop.close()


def test_hostile_or_malformed_values_are_never_kept(site, launch, tmp_path):  # noqa: F811 - fixtures
    shop = MerchantSite(tmp_path, PAGE.format(base=site.url))
    context = launch(shop.port).new_context(ignore_https_errors=True)
    page = context.new_page()
    hostile = [
        "/?ref=" + quote("<script>alert(1)</script>"),
        "/?via=" + quote('"><img src=x onerror=alert(1)>'),
        "/?ref=" + "a" * 65,
        "/?ref=a;b=c",
        "/?via=" + quote("a;b=c"),
        "/?ref=" + quote("a b"),
        "/?ref=",
        "/?ct_click=" + "x" * 33,
        "/?ct_click=tooshort",
    ]

    # A first visit with nothing valid keeps nothing and fills nothing.
    for path in hostile:
        visit(page, path)
        assert kept(page) == {"clickId": None, "referralCode": None, "referral": None, "input": None}, path
        assert cookies(context) == {}, path

    # With a code kept, a hostile landing neither replaces nor clears it.
    visit(page, "/?via=ADA")
    for path in hostile:
        visit(page, path)
        assert kept(page) == {"clickId": None, "referralCode": "ADA", "referral": "ADA", "input": "ADA"}, path
        assert {name: cookie["value"] for name, cookie in cookies(context).items()} == {"ct_ref": "ADA"}, path

    # The longest code accepted is 64 characters.
    visit(page, "/?ref=" + "b" * 64)
    assert page.evaluate("Clicktrail.referral()") == "b" * 64
    context.close()
    shop.close()


def test_the_code_cookie_can_be_named_on_the_script_tag(site, launch, tmp_path):  # noqa: F811 - fixtures
    page_html = PAGE.format(base=site.url).replace("defer>", 'data-ref-cookie="shop_aff" defer>')
    shop = MerchantSite(tmp_path, page_html)
    context = launch(shop.port).new_context(ignore_https_errors=True)
    page = context.new_page()
    visit(page, "/?ref=ADA")
    assert {name: cookie["value"] for name, cookie in cookies(context).items()} == {"shop_aff": "ADA"}
    visit(page, "/welcome")
    assert page.evaluate("Clicktrail.referral()") == "ADA"
    context.close()
    shop.close()
