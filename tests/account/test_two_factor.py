"""Two-factor sign-in with an authenticator app and recovery codes; required of staff; reset by an admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from affiliate.auth.passwords import CLOCK
from affiliate.extensions import db
from affiliate.models import AuditLog, RecoveryCode, User, utcnow
from affiliate.services import user_sessions
from tests.factories import PASSWORD, Auth, csrf_token, make_admin, make_affiliate, make_finance
from tests.mail.smtp import text_of


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app) -> Clock:
    clock = Clock()
    app.extensions[CLOCK] = clock
    return clock


def enrol(client, clock: Clock) -> tuple[str, list[str]]:
    """Set up the app from the setup page as a person would; the secret and the recovery codes shown."""
    page = client.get("/account/two-factor/app").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page, "a QR code to scan"
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page).group(1)
    wrong = client.post("/account/two-factor/app", data={"code": "000000", "csrf_token": csrf_token(page)})
    assert wrong.status_code == 422 and "does not match" in wrong.get_data(as_text=True)
    code = pyotp.TOTP(secret).at(clock.now)
    done = client.post("/account/two-factor/app", data={"code": code, "csrf_token": csrf_token(page)})
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10, done.get_data(as_text=True)[:300]
    return secret, codes


def password_step(client, email: str):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})


def second_step(client, code: str):
    token = csrf_token(client.get("/login/second-factor").get_data(as_text=True))
    return client.post("/login/second-factor", data={"code": code, "csrf_token": token})


def test_an_affiliate_turns_on_app_codes_and_signs_in_with_them_once(app, clock, smtp, deliver):
    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    secret, _ = enrol(client, clock)
    deliver()
    [notice] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert notice["Subject"] == "Two-factor sign-in changed" and "authenticator app was set up" in text_of(notice)
    Auth(client).logout()

    clock.advance(30)
    first = password_step(client, ada.email)
    assert first.headers["Location"].startswith("/login/second-factor")
    assert client.get("/partner/").status_code == 302, "not signed in after the password alone"
    code = pyotp.TOTP(secret).at(clock.now)
    assert second_step(client, "999999").status_code == 422
    assert second_step(client, code).headers["Location"] == "/partner/"
    assert client.get("/partner/").status_code == 200

    thief = app.test_client()
    assert password_step(thief, ada.email).status_code == 302
    replay = second_step(thief, code)
    assert replay.status_code == 422 and "used already" in replay.get_data(as_text=True), "a code works once"
    clock.advance(30)
    assert second_step(thief, pyotp.TOTP(secret).at(clock.now)).status_code == 302, "the next code works"


def test_recovery_codes_work_once_each_and_are_stored_hashed(app, clock):
    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    _, codes = enrol(client, clock)
    with app.app_context():
        stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
        assert len(stored) == 10 and not {code.replace("-", "") for code in codes} & set(stored)
    Auth(client).logout()
    password_step(client, ada.email)
    assert second_step(client, " " + codes[0].upper().replace("-", " ") + " ").status_code == 302
    Auth(client).logout()
    password_step(client, ada.email)
    assert second_step(client, codes[0]).status_code == 422, "spent"
    assert second_step(client, codes[1]).status_code == 302


def test_guessing_codes_is_throttled_per_account(app, clock):
    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    secret, _ = enrol(client, clock)
    Auth(client).logout()
    clock.advance(30)
    password_step(client, ada.email)
    answers = [second_step(client, f"{n:06d}").status_code for n in range(7)]
    assert answers == [422] * 5 + [429] * 2
    assert second_step(client, pyotp.TOTP(secret).at(clock.now)).status_code == 429, "even a right code waits"
    clock.advance(31)
    assert second_step(client, pyotp.TOTP(secret).at(clock.now)).status_code == 302


def test_a_half_finished_sign_in_expires(app, clock):
    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    secret, _ = enrol(client, clock)
    Auth(client).logout()
    password_step(client, ada.email)
    token = csrf_token(client.get("/login/second-factor").get_data(as_text=True))
    clock.advance(app.config["SECOND_FACTOR_PENDING_MINUTES"] * 60 + 30)
    late = client.post("/login/second-factor", data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": token})
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert client.get("/partner/").status_code == 302


def test_a_sign_in_half_way_through_with_the_old_password_ends_when_the_password_changes(app, clock):
    """Someone who knew the old password and reached the second step must start again once the owner resets or
    changes it, and the new password's first step no longer works for them."""
    from argon2 import PasswordHasher

    from affiliate.services.accounts import change_password

    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    secret, _ = enrol(client, clock)
    Auth(client).logout()
    thief = app.test_client()
    assert password_step(thief, ada.email).headers["Location"].startswith("/login/second-factor")
    token = csrf_token(thief.get("/login/second-factor").get_data(as_text=True))
    with app.app_context():
        user = db.session.get(User, ada.id)
        change_password(db.session, user, old_hash=user.password_hash, new_hash=PasswordHasher().hash("n3w-Secret!x"),
                        now=utcnow())  # fmt: skip
        db.session.commit()
    clock.advance(30)
    late = thief.post("/login/second-factor", data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": token})
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert thief.get("/partner/").status_code == 302, "not signed in"


def test_staff_must_set_up_a_second_factor_before_anything_else(app, clock):
    finance = make_finance(app, second_factor=False)
    client = app.test_client()
    assert password_step(client, finance.email).status_code == 302, "no second step yet: nothing to ask for"
    for page in ("/finance/payouts/", "/admin/affiliates/", "/account/", "/account/payout"):
        assert client.get(page).headers["Location"] == "/account/two-factor/", page
    assert "must use two-factor sign-in" in client.get("/account/two-factor/").get_data(as_text=True)
    enrol(client, clock)
    assert client.get("/finance/payouts/").status_code == 200
    page = client.get("/account/two-factor/").get_data(as_text=True)
    removed = client.post("/account/two-factor/app/remove", data={"csrf_token": csrf_token(page)})
    assert removed.status_code == 302
    assert "needs a second factor" in client.get("/account/two-factor/").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, finance.id).totp_secret, "the only factor of a finance user stays"


def test_an_admin_resets_a_lost_second_factor(app, clock, smtp, deliver):
    admin = make_admin(app)
    finance = make_finance(app)
    lost = app.test_client()
    Auth(lost).login(finance.email)
    staff = app.test_client()
    Auth(staff).login(admin.email)
    page = staff.get("/admin/people/").get_data(as_text=True)
    assert finance.email in page and "Reset two-factor" in page
    reset = staff.post(f"/admin/people/{finance.id}/reset-second-factor", data={"csrf_token": csrf_token(page)})
    assert reset.status_code == 302 and reset.headers["Location"] == "/admin/people/"
    assert lost.get("/finance/payouts/").status_code == 302, "signed out everywhere"
    deliver()
    [mail] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert mail["To"] == finance.email and "reset your two-factor sign-in" in text_of(mail)
    with app.app_context():
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.second_factor_reset"))
        assert entry.actor_id == admin.id and entry.subject_id == finance.id
    again = app.test_client()
    assert password_step(again, finance.email).headers["Location"] == "/finance/", "no second step"
    assert again.get("/finance/payouts/").headers["Location"] == "/account/two-factor/", "enrols again"
    own = staff.post(f"/admin/people/{admin.id}/reset-second-factor", data={"csrf_token": csrf_token(page)})
    assert own.status_code == 302
    with app.app_context():
        assert db.session.get(User, admin.id).totp_secret, "nobody resets their own"


def test_only_admins_reset_second_factors(app):
    finance = make_finance(app)
    other = make_finance(app)
    client = app.test_client()
    Auth(client).login(finance.email)
    token = csrf_token(client.get("/account/two-factor/").get_data(as_text=True))
    assert client.post(f"/admin/people/{other.id}/reset-second-factor", data={"csrf_token": token}).status_code == 403
    with app.app_context():
        assert db.session.get(User, other.id).totp_secret


def test_a_sign_in_from_a_new_device_is_mailed_to_the_owner(app, smtp, deliver):
    ada = make_affiliate(app)
    Auth(app.test_client()).login(ada.email)
    Auth(app.test_client()).login(ada.email)  # the same browser signature: not new
    deliver()
    assert smtp.inbox.messages == []
    phone = app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1"
    )
    Auth(phone).login(ada.email)
    deliver()
    [mail] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert mail["Subject"] == "New sign-in to your Clicktrail account" and "Mobile Safari 17.1 on iOS" in text_of(mail)


def test_changing_payout_details_asks_for_the_second_factor_and_is_mailed(app, clock, smtp, deliver):
    ada = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(ada.email)
    secret, _ = enrol(client, clock)
    with client.session_transaction() as session:
        session["second_factor_at"] -= 3600
    assert client.get("/account/payout").headers["Location"] == "/reauth?next=/account/payout"
    page = client.get("/reauth?next=/account/payout").get_data(as_text=True)
    password_only = client.post(
        "/reauth?next=/account/payout", data={"password": PASSWORD, "csrf_token": csrf_token(page)}
    )
    assert password_only.status_code == 422
    clock.advance(30)
    both = client.post(
        "/reauth?next=/account/payout",
        data={"password": PASSWORD, "csrf_token": csrf_token(page), "code": pyotp.TOTP(secret).at(clock.now)},
    )
    assert both.headers["Location"] == "/account/payout"
    form = client.get("/account/payout").get_data(as_text=True)
    saved = client.post(
        "/account/payout", data={"method": "paypal", "email": "new-wallet@example.com", "csrf_token": csrf_token(form)}
    )
    assert saved.status_code == 302
    deliver()
    mails = smtp.inbox.wait_for(lambda got: any("payout details" in m["Subject"] for m in got))
    [notice] = [m for m in mails if "payout details" in m["Subject"]]
    assert "new-wallet@example.com" in text_of(notice)


@pytest.mark.parametrize("leaves", ["signs-out", "session-ends-without-signing-out"])
def test_a_secret_being_set_up_is_never_offered_to_the_next_person_on_the_browser(app, leaves):
    """A shared computer: whoever saw a secret on the setup page must not get the next account's codes."""
    mallory, victim = make_affiliate(app, name="Mallory"), make_affiliate(app, name="Victim")
    client = app.test_client()
    auth = Auth(client)
    auth.login(mallory.email)
    seen = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', client.get("/account/two-factor/app").text)[1]
    if leaves == "signs-out":
        auth.logout()
    else:  # ended elsewhere (another device's "sign out everywhere", an expiry): the cookie stays as it was
        with app.app_context():
            user_sessions.end_all_sessions(db.session, db.session.get(User, mallory.id), now=utcnow())
            db.session.commit()
    assert auth.login(victim.email).status_code == 302
    offered = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', client.get("/account/two-factor/app").text)[1]
    assert offered != seen


def test_a_portal_reached_at_an_ip_address_says_why_it_cannot_add_security_keys(app):
    """Browsers make keys only for a domain name: `make run` serves 127.0.0.1, where adding one always failed."""
    alice = make_affiliate(app)
    client = app.test_client()
    Auth(client).login(alice.email)
    assert 'data-security-key="create"' in client.get("/account/two-factor/").text
    app.config["PUBLIC_BASE_URL"], app.config["WEBAUTHN_RP_ID"] = "http://127.0.0.1:5000", None
    page = client.get("/account/two-factor/").text
    assert 'id="keys-need-a-name"' in page and 'data-security-key="create"' not in page
    app.config["WEBAUTHN_RP_ID"] = "localhost"
    assert 'data-security-key="create"' in client.get("/account/two-factor/").text
