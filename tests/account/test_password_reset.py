"""Forgotten passwords: a signed, single-use, expiring link mailed through SMTP; the same answer for any email."""

from __future__ import annotations

import re

import itsdangerous
from sqlalchemy import select

from affiliate.auth.passwords import CLOCK
from affiliate.extensions import db
from affiliate.models import AuditLog, User, UserSession, utcnow
from tests.factories import PASSWORD, Auth, csrf_token, make_affiliate
from tests.mail.smtp import html_of, text_of

NEW_PASSWORD = "a brand new long password"


def ask_for_reset(client, email: str):
    token = csrf_token(client.get("/forgot-password").get_data(as_text=True))
    return client.post("/forgot-password", data={"email": email, "csrf_token": token})


def link_in(message) -> str:
    found = re.search(r"http://portal\.test(/reset-password/[^\s]+)", text_of(message))
    assert found, text_of(message)
    return found.group(1)


def choose(client, path: str, password: str = NEW_PASSWORD):
    page = client.get(path)
    if page.status_code != 200:
        return page
    token = csrf_token(page.get_data(as_text=True))
    return client.post(path, data={"password": password, "confirm": password, "csrf_token": token})


def test_a_forgotten_password_is_reset_through_the_mailed_link_once(app, smtp, deliver):
    ada = make_affiliate(app, email="ada@example.com")
    other_device = app.test_client()
    assert Auth(other_device).login(ada.email).status_code == 302
    client = app.test_client()
    sent = ask_for_reset(client, "ADA@example.com ")
    assert sent.status_code == 200 and "If ADA@example.com" in sent.get_data(as_text=True)
    deliver()
    [mail] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert mail["To"] == "ada@example.com" and "Reset your Clicktrail password" in mail["Subject"]
    path = link_in(mail)
    assert path in html_of(mail)
    assert "List-Unsubscribe" not in mail, "a security mail cannot be turned off"

    done = choose(client, path)
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    assert Auth(client).login(ada.email, PASSWORD).status_code == 200, "the old password no longer works"
    assert Auth(client).login(ada.email, NEW_PASSWORD).status_code == 302
    assert other_device.get("/account/").status_code == 302, "the reset signed out every other device"
    again = choose(app.test_client(), path, "yet another long password")
    assert again.status_code == 404 and "no longer works" in again.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "user.password_reset"))
        assert db.session.get(User, ada.id).email_verified_at is not None, "following the link proves the address"
        live = db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
        assert len(live) == 1
    deliver()
    notice = smtp.inbox.wait_for(lambda got: len(got) == 2)[1]
    assert notice["Subject"] == "Your Clicktrail password was changed" and "reset with a link" in text_of(notice)


def test_the_answer_is_the_same_for_an_unknown_email_and_nothing_is_sent(app, smtp, deliver):
    make_affiliate(app, email="known@example.com")
    known = ask_for_reset(app.test_client(), "known@example.com")
    unknown = ask_for_reset(app.test_client(), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True).replace("known", "X") == unknown.get_data(as_text=True).replace("nobody", "X")
    deliver()
    smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert [m["To"] for m in smtp.inbox.messages] == ["known@example.com"]


def test_a_link_expires(app, smtp, deliver, monkeypatch):
    make_affiliate(app, email="late@example.com")
    ask_for_reset(app.test_client(), "late@example.com")
    deliver()
    path = link_in(smtp.inbox.wait_for(lambda got: len(got) == 1)[0])
    assert app.test_client().get(path).status_code == 200
    # The link's signature carries when it was made; itsdangerous compares that with its own clock.
    later = int(utcnow().timestamp()) + app.config["PASSWORD_RESET_MINUTES"] * 60 + 5
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda signer: later)
    assert app.test_client().get(path).status_code == 404


def test_forged_or_altered_links_do_nothing(app, client):
    ada = make_affiliate(app)
    for path in ("/reset-password/forged", "/reset-password/" + "x" * 600, "/reset-password/e30.aaaa.bbbb"):
        assert choose(client, path).status_code == 404, path
    assert Auth(client).login(ada.email, PASSWORD).status_code == 302


def test_a_weak_new_password_is_a_form_error_and_keeps_the_link_alive(app, smtp, deliver):
    make_affiliate(app, email="weak@example.com")
    ask_for_reset(app.test_client(), "weak@example.com")
    deliver()
    path = link_in(smtp.inbox.wait_for(lambda got: len(got) == 1)[0])
    client = app.test_client()
    short = choose(client, path, "short")
    assert short.status_code == 400 and "at least" in short.get_data(as_text=True)
    assert choose(client, path).status_code == 302


def test_reset_requests_are_rate_limited_per_email_and_per_address(app, smtp, deliver):
    clock = {"now": utcnow()}
    app.extensions[CLOCK] = lambda: clock["now"]
    make_affiliate(app, email="target@example.com")
    client = app.test_client()
    answers = [ask_for_reset(client, "target@example.com").status_code for _ in range(5)]
    assert answers == [200] * 3 + [429] * 2, "a person's inbox is not flooded"
    assert ask_for_reset(client, "someone-else@example.com").status_code == 200
    deliver()
    smtp.inbox.wait_for(lambda got: len(got) == 3)
    assert len(smtp.inbox.to("target@example.com")) == 3
    for n in range(6):
        ask_for_reset(client, f"spray{n}@example.com")
    assert ask_for_reset(client, "another@example.com").status_code == 429, "one address cannot spray resets"
