"""The signed-in devices page: a person sees where their account is signed in and signs the others out."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from affiliate.extensions import db
from affiliate.models import AuditLog, UserSession, utcnow
from tests.factories import Auth, make_affiliate, make_finance

LAPTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.1 Mobile/15E148 Safari/604.1")  # fmt: skip


def signed_in(app, email: str, user_agent: str) -> Auth:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    auth = Auth(client)
    assert auth.login(email).status_code == 302
    return auth


def reaches_account(auth: Auth) -> bool:
    return auth.client.get("/account/").status_code == 200


def test_each_device_is_listed_with_this_one_marked(app):
    alice = make_affiliate(app)
    laptop, phone = signed_in(app, alice.email, LAPTOP), signed_in(app, alice.email, PHONE)
    page = laptop.client.get("/account/sessions").get_data(as_text=True)
    assert "Chrome 120 on Windows 10" in page and "Mobile Safari 17.1 on iOS 17.1" in page
    assert re.search(r"Chrome 120 on Windows 10 <span class=\"badge badge-active\">this device</span>", page)
    assert page.count("this device") == 1
    assert page.count('class="danger">Sign out</button>') == 1, "only the other device has a button"
    assert "Mobile Safari 17.1 on iOS 17.1 <span" not in phone.client.get("/account/").get_data(as_text=True)


def test_signing_out_one_device_ends_it_and_keeps_this_one(app):
    alice = make_affiliate(app)
    laptop, phone = signed_in(app, alice.email, LAPTOP), signed_in(app, alice.email, PHONE)
    with app.app_context():
        phone_id = db.session.scalar(select(UserSession.id).where(UserSession.user_agent == PHONE))
    ended = laptop.post(f"/account/sessions/{phone_id}/end", {}, token_from="/account/sessions")
    assert ended.status_code == 302
    page = laptop.client.get("/account/sessions").get_data(as_text=True)
    assert "That device is signed out." in page and "iOS" not in page
    assert not reaches_account(phone) and reaches_account(laptop)
    with app.app_context():
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sessions_ended"))
        assert entry.actor_id == alice.id


def test_signing_out_all_others_leaves_only_this_device(app):
    alice = make_affiliate(app)
    here = signed_in(app, alice.email, LAPTOP)
    others = [signed_in(app, alice.email, PHONE) for _ in range(3)]
    answer = here.post("/account/sessions/end-others", {}, token_from="/account/sessions")
    assert answer.status_code == 302
    assert "Signed out 3 other devices." in here.client.get("/account/sessions").get_data(as_text=True)
    assert reaches_account(here) and not any(reaches_account(other) for other in others)


def test_nobody_signs_out_another_persons_device_or_their_own_current_one(app):
    alice, bob = make_affiliate(app), make_finance(app)
    mallory = signed_in(app, alice.email, LAPTOP)
    victim = signed_in(app, bob.email, PHONE)
    with app.app_context():
        bob_session = db.session.scalar(select(UserSession.id).where(UserSession.user_id == bob.id))
        own = db.session.scalar(select(UserSession.id).where(UserSession.user_id == alice.id))
    assert mallory.post(f"/account/sessions/{bob_session}/end", {}, token_from="/account/sessions").status_code == 404
    assert reaches_account(victim)
    assert mallory.post(f"/account/sessions/{own}/end", {}, token_from="/account/sessions").status_code == 404
    assert reaches_account(mallory)
    refused = mallory.client.post("/account/sessions/end-others", data={})
    assert refused.status_code in (302, 400) and reaches_account(mallory)


def test_expired_and_signed_out_logins_are_not_listed(app):
    alice = make_affiliate(app)
    here = signed_in(app, alice.email, LAPTOP)
    signed_in(app, alice.email, PHONE)
    old = signed_in(app, alice.email, "OldBrowser/1.0")
    old.logout()
    with app.app_context():
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_agent == PHONE)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
    page = here.client.get("/account/sessions").get_data(as_text=True)
    assert "iOS" not in page and "OldBrowser" not in page
    assert "Sign out all other devices" not in page, "nothing else to sign out"
