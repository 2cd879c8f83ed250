"""The whole loop in a real browser: click a link, land on the merchant with ct.js, sign up, buy, see it credited.

Chromium from Debian's package (headless). The merchant's site (https://shop.example.com) is
served to the browser by Playwright's router, so no request leaves this machine; Clicktrail runs
under granian exactly as `make run` starts it (`wsgi:app`, portal and redirector together).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.helpers import make_merchant, sign
from tests.browser.screens import capture
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.redirector.helpers import CHROME, wait_for_click
from tests.servers import Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("REQUIRE_BROWSER"):
        raise RuntimeError("browser tests need Debian's chromium package (apt-get install chromium)")
    pytest.skip("chromium is not installed", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
PASSWORD = "a long enough password"
MERCHANT_PAGE = """<!doctype html><html><head><title>Shop</title>
<script src="{base}/static/ct.js" data-cookie-days="30"></script></head>
<body><h1>Shop</h1><form><input id="click" data-clicktrail="click_id"></form>
<a id="signup" href="{base}/signup?program={program}">Create an account</a></body></html>"""


@pytest.fixture
def site(app, database_uri, tmp_path):
    server = Server(database_uri, tmp_path, workers=1, interface="wsgi", target="wsgi:app")
    yield server
    server.stop()


class MerchantSite:
    """https://shop.example.com on a loopback port with a throwaway certificate: the page a link lands on."""

    def __init__(self, tmp_path, page: str) -> None:
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "1",
                "-subj",
                "/CN=shop.example.com",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def launch():
    """Start Chromium whose shop.example.com resolves to the given loopback port."""
    with sync_api.sync_playwright() as playwright:
        browsers = []

        def start(merchant_port: int):
            rules = f"--host-resolver-rules=MAP shop.example.com:443 127.0.0.1:{merchant_port}"
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", rules])
            browsers.append(browser)
            return browser

        yield start
        for browser in browsers:
            browser.close()


def test_click_land_sign_up_buy_and_see_it_credited(app, site, launch, tmp_path):
    admin = make_admin(app)
    program = make_program(app, admin, cookie_days=30)
    alice = make_affiliate(app, name="Alice Affiliate")
    link = make_link(app, alice, program, campaign="Spring")
    merchant = make_merchant(app, program, admin)
    shop = MerchantSite(tmp_path, MERCHANT_PAGE.format(base=site.url, program=program.id))
    browser = launch(shop.port)
    # Headless Chromium says so in its user agent, and the redirector rightly records that as a bot.
    context = browser.new_context(ignore_https_errors=True, user_agent=CHROME)
    page = context.new_page()

    # 1. The shopper clicks the affiliate's link and lands on the merchant, one 302 later.
    page.goto(f"{site.url}/r/{link.code}")
    landed = urlsplit(page.url)
    assert landed.netloc == "shop.example.com"
    click_id = parse_qs(landed.query)["ct_click"][0]

    # 2. ct.js keeps the click id in a first-party cookie for the program's cookie lifetime.
    page.wait_for_function("window.Clicktrail && Clicktrail.clickId()")
    assert page.evaluate("Clicktrail.clickId()") == click_id
    assert page.input_value("#click") == click_id
    cookie = next(c for c in context.cookies("https://shop.example.com") if c["name"] == "ct_click")
    assert cookie["value"] == click_id and cookie["sameSite"] == "Lax" and cookie["secure"]
    lifetime = datetime.fromtimestamp(cookie["expires"], UTC) - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    page.goto("https://shop.example.com/pricing")  # browsing on, without the parameter
    page.wait_for_function("window.Clicktrail !== undefined")
    assert page.evaluate("Clicktrail.clickId()") == click_id

    # 3. The merchant's back end sends the signed sale with that click id (once the ingester has stored it).
    wait_for_click(app, click_id)
    body = json.dumps(
        {
            "type": "sale",
            "order_id": "browser-1",
            "amount": 4_999,
            "currency": "USD",
            "click_id": page.evaluate("Clicktrail.clickId()"),
        }
    ).encode()
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the loopback test server
        f"{site.url}/api/v1/conversions",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {merchant.token}",
            "Content-Type": "application/json",
            "Clicktrail-Request-Id": "browser-1",
            "Clicktrail-Timestamp": str(timestamp),
            "Clicktrail-Signature": f"v1={sign(merchant.secret, 'browser-1', timestamp, body)}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the loopback test server
        assert response.status == 201
        answer = json.load(response)
    assert answer["conversion"]["attribution"] == {
        "status": "attributed",
        "attributed": True,
        "affiliate_id": alice.id,
        "click_id": click_id,
        "matched_by": "click_id",
        "coupon": None,
        "reasons": [],
    }
    order_id = answer["conversion"]["order_id"]

    # 4. The shopper signs up on the hosted page; the click cookie set by the redirector carries the attribution.
    page.goto("https://shop.example.com/welcome")
    page.click("#signup")
    page.fill("#name", "Sam Shopper")
    page.fill("#email", "sam@example.com")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/member/")
    assert "Your referral link" in page.content()
    capture(page, "loop-member-home")

    # 5. Alice signs in and sees the sale and the signup, each with why it was credited to her.
    alice_page = browser.new_context().new_page()
    alice_page.goto(f"{site.url}/login")
    alice_page.fill("#email", alice.email)
    alice_page.fill("#password", FACTORY_PASSWORD)
    alice_page.click("button[type=submit]")
    alice_page.wait_for_url(f"{site.url}/partner/")
    alice_page.goto(f"{site.url}/partner/conversions/")
    listing = alice_page.content()
    assert order_id in listing and "signup" in listing
    alice_page.click(f"text={order_id}")
    alice_page.wait_for_url(re.compile(r".*/partner/conversions/\d+$"))
    detail = alice_page.content()
    assert "click id" in detail and "won" in detail
    context.close()
    shop.close()
