"""Staff in the browser: the second sign-in step, and setting up a second factor when an account has none."""

from __future__ import annotations

from urllib.parse import urlsplit

import pyotp

from tests.factories import recovery_codes


def finish_sign_in(page, email: str) -> None:
    """After the password: give a recovery code at the second step, or, for staff who have no second factor
    yet (the demo's), set up an authenticator app as a person would and keep the recovery codes shown."""
    if "/login/second-factor" in page.url:
        page.fill("#code", recovery_codes[email.lower()].pop())
        page.click("main button[type=submit]")
        page.wait_for_load_state()
    elif urlsplit(page.url).path == "/account/two-factor/":
        enrol_app(page, email)


def enrol_app(page, email: str) -> str:
    """Set up an authenticator app from the two-factor page; the secret (the codes go to ``recovery_codes``)."""
    base = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    page.goto(f"{base}/account/two-factor/app")
    secret = page.inner_text("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    codes = [code.strip() for code in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10, page.inner_text("main")[:500]
    recovery_codes[email.lower()] = codes
    return secret
