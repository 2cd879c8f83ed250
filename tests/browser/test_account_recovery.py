"""Mail, email confirmation, password reset and two-factor sign-in in a real browser, a screenshot of each step.

Against `make run`'s demo (seeded by `seed-demo`, served by granian as `wsgi:app`) at http://localhost, its own
background sender handing mail to a real SMTP server on loopback: a newcomer applies and confirms their address from
the mailed link; the admin, made to set up two-factor sign-in first, sets up an authenticator app and approves them;
the newcomer forgets their password and chooses a new one from the mailed link; a finance user sets up an app and a
security key (Chromium's virtual authenticator) and signs in with the key, an app code and a recovery code; the other
finance user builds a payout batch, and the first approves it after confirming it is them with password and key.
Screenshots go to RECOVERY_SCREENSHOTS (default test-output/recovery/).
"""

from __future__ import annotations

import os
import re
import time
from email.message import EmailMessage
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from affiliate.demo import DEMO_PASSWORD
from config import Config
from tests.browser.conftest import demo_server
from tests.browser.test_journey import Shots
from tests.browser.test_loop import CHROMIUM, sync_api
from tests.mail.smtp import Inbox, SmtpServer, text_of
from tests.servers import ROOT

SHOTS = Path(os.environ.get("RECOVERY_SCREENSHOTS", ROOT / "test-output" / "recovery"))
SECRET_KEY = "account-recovery-test"
ADMIN, FIONA, FELIX = (f"{name}@demo.clicktrail.example" for name in ("admin", "finance", "finance2"))
NEWCOMER, OLD_PASSWORD, NEW_PASSWORD = "nina@example.com", "nina's first long password", "nina's second long password"
WAIT_MS = 15_000


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def demo(database_uri, tmp_path, smtp):
    """`make run`'s demo named http://localhost:<port>, its background sender mailing through ``smtp``."""
    settings = {name: str(value) for name, value in smtp.settings.items()}
    with demo_server(
        database_uri, tmp_path, host="localhost", MAIL_SENDER_SECONDS="1", SECRET_KEY=SECRET_KEY, **settings
    ) as server:
        yield server


@pytest.fixture
def chromium():
    """Chromium that finds localhost at 127.0.0.1, where the server listens."""
    with sync_api.sync_playwright() as playwright:
        args = ["--no-sandbox", "--host-resolver-rules=MAP localhost 127.0.0.1"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


class Screens(Shots):
    """Numbered screenshots named recovery-NN-<step>.png."""

    def take(self, page, name: str) -> None:
        self.count += 1
        path = self.folder / f"recovery-{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.names.append(path.name)


class Authenticator:
    """An authenticator app holding one secret.

    The server takes each 30-second code once, and a code of the step after the current one too (clock drift), so
    when this step's code was used already the app gives the next step's, as a person would after waiting for it.
    """

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = -1

    def code(self) -> str:
        self.last_step = max(int(time.time()) // 30, self.last_step + 1)
        return self.totp.at(self.last_step * 30)


def new_page(browser):
    page = browser.new_context().new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def submit(page, selector: str = "main button[type=submit]") -> None:
    page.click(selector)
    page.wait_for_load_state()


def main_text(page) -> str:
    return page.inner_text("main")


def enter_password(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    submit(page)


def sign_out(page) -> None:
    submit(page, "header form[action$='/logout'] button")
    assert "You are signed out." in main_text(page)


def mail(inbox: Inbox, address: str, subject: str, saying: str = "") -> EmailMessage:
    """The latest mail to ``address`` with ``subject`` in its subject (and ``saying`` in its text), once it is in."""

    def matching(messages: list[EmailMessage]) -> list[EmailMessage]:
        return [
            m
            for m in messages
            if address in m["To"] and subject.lower() in m["Subject"].lower() and saying in text_of(m)
        ]

    return matching(inbox.wait_for(matching, timeout=30))[-1]


def link_in(message: EmailMessage, base: str, path: str) -> str:
    found = re.search(rf"{re.escape(base)}{path}[^\s<>\"]+", text_of(message))
    assert found, text_of(message)
    return found.group(0)


def set_up_app(page, shots: Screens, who: str) -> tuple[Authenticator, list[str]]:
    """From the two-factor page: add the authenticator app by its key, turn it on, and keep the recovery codes."""
    page.click("main a:has-text('Set up an authenticator app')")
    page.wait_for_load_state()
    secret = page.inner_text("#totp-secret").strip()
    assert page.locator("main img[alt='QR code for your authenticator app']").count() == 1
    shots.take(page, f"{who}-app-setup")
    app = Authenticator(secret)
    page.fill("#code", app.code())
    submit(page)
    assert "Two-factor sign-in with your authenticator app is on." in main_text(page), main_text(page)
    codes = [code.strip() for code in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    shots.take(page, f"{who}-recovery-codes")
    submit(page, "main a:has-text('I have saved them')")
    assert "Signing in needs your password and one of the" in main_text(page)
    return app, codes


def forced_to_two_factor(page, base: str, email: str) -> None:
    """Staff without a second factor land on the two-factor page after the password, whatever they open."""
    enter_password(page, base, email, DEMO_PASSWORD)
    assert page.url == f"{base}/account/two-factor/", page.url
    text = main_text(page)
    assert "Your account moves money, so it needs two-factor sign-in. Set it up to continue." in text
    page.goto(f"{base}/finance/payouts/")
    assert page.url == f"{base}/account/two-factor/", "staff reach no other page before setting up a second factor"


def age_sign_in(page, base: str, minutes: int) -> None:
    """Make this browser's sign-in ``minutes`` old, as if the person had left the tab open that long."""
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies(base)}
    signer = Flask(__name__)
    signer.secret_key = SECRET_KEY
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    session = serializer.loads(cookies[Config.SESSION_COOKIE_NAME]["value"])
    for key in ("password_at", "second_factor_at"):
        session[key] -= minutes * 60
    page.context.add_cookies([{"name": Config.SESSION_COOKIE_NAME, "value": serializer.dumps(session), "url": base}])


def test_confirm_reset_and_two_factor_sign_in_with_mail_through_smtp(demo, smtp, chromium):
    shots = Screens(SHOTS)
    base = f"http://localhost:{demo.port}"
    inbox = smtp.inbox

    # 1. Nina applies; the confirmation mail comes through SMTP, and its link asks her to confirm with a click.
    nina = new_page(chromium)
    nina.goto(f"{base}/apply")
    nina.fill("#name", "Nina Newcomer")
    nina.fill("#email", NEWCOMER)
    nina.fill("#password", OLD_PASSWORD)
    nina.fill("#confirm", OLD_PASSWORD)
    nina.fill("#website", "https://nina.example.com")
    nina.fill("#promotion", "Reviews of kitchen tools on my blog.")
    submit(nina)
    assert "We mailed you a link to confirm your email address" in main_text(nina), main_text(nina)
    assert "not confirmed" in main_text(nina)
    shots.take(nina, "applied")
    confirmation = mail(inbox, NEWCOMER, "Confirm your email address")
    assert NEWCOMER in confirmation["To"]
    nina.goto(link_in(confirmation, base, "/verify-email/"))
    assert f"Confirm that {NEWCOMER} is the address of Nina Newcomer" in main_text(nina)
    shots.take(nina, "confirm-address")
    submit(nina)
    assert f"Thank you: {NEWCOMER} is confirmed." in main_text(nina)
    shots.take(nina, "address-confirmed")

    # 2. The admin signs in, must set up two-factor sign-in first, does so with an app, then approves Nina; she is
    # told by mail.
    admin = new_page(chromium)
    forced_to_two_factor(admin, base, ADMIN)
    shots.take(admin, "admin-must-set-up-two-factor")
    set_up_app(admin, shots, "admin")
    admin.goto(f"{base}/admin/affiliates/")
    submit(admin, "main a:has-text('Nina Newcomer')")
    assert "confirmed" in admin.inner_text("main dl")
    submit(admin, "main button[value=approve]")
    assert "Nina Newcomer is now active." in main_text(admin)
    shots.take(admin, "admin-approved-applicant")
    assert NEWCOMER in mail(inbox, NEWCOMER, "approved")["To"]

    # 3. Nina forgot her password: the reset mail's link lets her choose a new one; the old one stops working.
    nina = new_page(chromium)
    nina.goto(f"{base}/login")
    submit(nina, "main a:has-text('Forgot your password?')")
    nina.fill("#email", NEWCOMER)
    submit(nina)
    assert f"If {NEWCOMER} belongs to an account, a link to choose a new password is on its way." in main_text(nina)
    shots.take(nina, "reset-mailed")
    reset = mail(inbox, NEWCOMER, "Reset your Clicktrail password")
    nina.goto(link_in(reset, base, "/reset-password/"))
    assert f"For {NEWCOMER}." in main_text(nina)
    nina.fill("#password", NEW_PASSWORD)
    nina.fill("#confirm", NEW_PASSWORD)
    shots.take(nina, "choose-new-password")
    submit(nina)
    assert "Your password is changed and every device was signed out." in main_text(nina)
    mail(inbox, NEWCOMER, "Your Clicktrail password was changed", "reset with a link mailed to you")
    enter_password(nina, base, NEWCOMER, OLD_PASSWORD)
    assert "Email or password is incorrect." in main_text(nina)
    enter_password(nina, base, NEWCOMER, NEW_PASSWORD)
    assert nina.url == f"{base}/partner/", nina.url
    shots.take(nina, "signed-in-with-new-password")
    nina.goto(link_in(reset, base, "/reset-password/"))
    assert "This link no longer works" in main_text(nina), "a reset link works once"

    # 4. Fiona of finance must set up two-factor sign-in: an app, then a security key too. She signs in with the key,
    # then with an app code, then with a recovery code.
    fiona = new_page(chromium)
    cdp = fiona.context.new_cdp_session(fiona)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": False,
                "hasUserVerification": False,
                "automaticPresenceSimulation": True,
            }
        },
    )
    forced_to_two_factor(fiona, base, FIONA)
    shots.take(fiona, "finance-must-set-up-two-factor")
    fiona_app, fiona_codes = set_up_app(fiona, shots, "finance")
    fiona.fill("#name", "Fiona's desk key")
    with fiona.expect_navigation():
        fiona.click("[data-security-key=create]")
    assert "Security key “Fiona's desk key” added." in main_text(fiona), main_text(fiona)
    assert "Fiona's desk key" in fiona.inner_text("main table")
    mail(inbox, FIONA, "Two-factor sign-in changed", "A security key (Fiona's desk key) was added")
    shots.take(fiona, "finance-security-key-added")

    sign_out(fiona)
    enter_password(fiona, base, FIONA, DEMO_PASSWORD)
    assert "/login/second-factor" in fiona.url
    assert "use your security key or enter the 6-digit code from your authenticator app" in main_text(fiona)
    shots.take(fiona, "second-step")
    fiona.click("[data-security-key=get]")
    fiona.wait_for_url(f"{base}/finance/")
    shots.take(fiona, "signed-in-with-security-key")

    sign_out(fiona)
    enter_password(fiona, base, FIONA, DEMO_PASSWORD)
    fiona.fill("#code", fiona_app.code())
    submit(fiona)
    assert fiona.url == f"{base}/finance/", main_text(fiona)
    shots.take(fiona, "signed-in-with-app-code")

    sign_out(fiona)
    enter_password(fiona, base, FIONA, DEMO_PASSWORD)
    fiona.fill("#code", fiona_codes[0])
    submit(fiona)
    assert "You signed in with a recovery code; 9 left." in main_text(fiona), main_text(fiona)
    shots.take(fiona, "signed-in-with-recovery-code")

    # 5. Felix, the other finance user, sets up his app and builds a payout batch (Alice is owed); he cannot approve it.
    felix = new_page(chromium)
    forced_to_two_factor(felix, base, FELIX)
    set_up_app(felix, shots, "second-finance")
    felix.goto(f"{base}/finance/payouts/")
    submit(felix, "main form[action$='/build'] button[type=submit]")
    batch_url = felix.url
    assert re.fullmatch(rf"{re.escape(base)}/finance/payouts/\d+", batch_url), batch_url
    assert "alice.payouts@example.com" in felix.inner_text("main table"), "Alice is owed and has payout details"
    assert "You built this batch, so a second finance user must approve it." in main_text(felix)
    shots.take(felix, "batch-built")

    # 6. Fiona left her tab open past the fresh-sign-in window: approving asks her to confirm it is her, with her
    # password and her second factor (the password alone is not enough), then the batch is approved.
    fiona.goto(batch_url)
    age_sign_in(fiona, base, Config.FRESH_LOGIN_MINUTES + 1)
    submit(fiona, "main form[action$='/approve'] button[type=submit]")
    assert "/reauth" in fiona.url, fiona.url
    text = main_text(fiona)
    assert "Approving a batch needs a recent sign-in." in text and "and give your second factor" in text, text
    assert fiona.locator("[data-security-key=get]").count() == 1 and fiona.locator("#code").count() == 1
    fiona.fill("#password", DEMO_PASSWORD)
    submit(fiona)
    assert "Give a code from your authenticator app, a recovery code or your security key." in main_text(fiona)
    shots.take(fiona, "reauth-asks-for-second-factor")
    fiona.fill("#password", DEMO_PASSWORD)
    fiona.click("[data-security-key=get]")
    fiona.wait_for_url(batch_url)
    submit(fiona, "main form[action$='/approve'] button[type=submit]")
    assert fiona.url == batch_url, fiona.url
    assert re.search(r"Batch #\d+ approved\.", main_text(fiona)), main_text(fiona)
    assert fiona.inner_text("main h1 .badge") == "approved"
    assert "by Fiona Finance" in main_text(fiona)
    shots.take(fiona, "batch-approved")
