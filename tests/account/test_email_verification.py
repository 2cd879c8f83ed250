"""New affiliates and members confirm their address through a mailed link; admins see who has not."""

from __future__ import annotations

import re

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import User
from tests.factories import PASSWORD, Auth, csrf_token, make_admin
from tests.mail.smtp import text_of


def apply(client, email: str):
    token = csrf_token(client.get("/apply").get_data(as_text=True))
    form = {
        "name": "Pat Partner",
        "email": email,
        "password": PASSWORD,
        "confirm": PASSWORD,
        "promotion": "A cooking blog",
        "csrf_token": token,
    }
    return client.post("/apply", data=form)


def confirmation_link(message) -> str:
    found = re.search(r"http://portal\.test(/verify-email/[^\s]+)", text_of(message))
    assert found, text_of(message)
    return found.group(1)


def verified(app, email: str) -> bool:
    with app.app_context():
        return db.session.scalar(select(User.email_verified_at).where(User.email == email)) is not None


def test_an_applicant_confirms_their_address_and_the_admin_sees_it(app, smtp, deliver):
    admin = make_admin(app)
    client = app.test_client()
    assert apply(client, "pat@example.com").status_code == 302
    deliver()
    [mail] = [
        m for m in smtp.inbox.wait_for(lambda got: smtp.inbox.to("pat@example.com")) if m["To"] == "pat@example.com"
    ]
    assert mail["Subject"] == "Confirm your email address"
    path = confirmation_link(mail)
    assert not verified(app, "pat@example.com")

    staff = app.test_client()
    Auth(staff).login(admin.email)
    with app.app_context():
        pat_id = db.session.scalar(select(User.id).where(User.email == "pat@example.com"))
    assert "not confirmed" in staff.get(f"/admin/affiliates/{pat_id}").get_data(as_text=True)

    page = client.get(path)
    assert page.status_code == 200 and not verified(app, "pat@example.com"), "opening the link only asks"
    done = client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200 and "is confirmed" in done.get_data(as_text=True)
    assert verified(app, "pat@example.com")
    assert "confirmed" in staff.get(f"/admin/affiliates/{pat_id}").get_data(as_text=True)
    assert "not confirmed" not in staff.get(f"/admin/affiliates/{pat_id}").get_data(as_text=True)


def test_a_member_signing_up_gets_a_confirmation_link(app, smtp, deliver):
    client = app.test_client()
    token = csrf_token(client.get("/signup").get_data(as_text=True))
    signed_up = client.post(
        "/signup",
        data={
            "name": "Mo Member",
            "email": "mo@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
            "csrf_token": token,
        },
    )
    assert signed_up.status_code == 302
    deliver()
    [mail] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert mail["To"] == "mo@example.com" and confirmation_link(mail)


def test_the_profile_offers_a_new_link_and_a_forged_one_confirms_nothing(app, smtp, deliver):
    client = app.test_client()
    apply(client, "sam@example.com")
    page = client.get("/account/").get_data(as_text=True)
    assert "not confirmed" in page
    resent = client.post("/verify-email/resend", data={"csrf_token": csrf_token(page)})
    assert resent.status_code == 302
    deliver()
    mails = smtp.inbox.wait_for(lambda got: len(got) == 2)
    assert all(m["To"] == "sam@example.com" for m in mails)
    forged = app.test_client().get("/verify-email/not-a-real-token")
    assert forged.status_code == 404
    assert not verified(app, "sam@example.com")
    # Either link works; once confirmed, a second click just says so.
    for mail in mails:
        path = confirmation_link(mail)
        page = client.get(path)
        client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
        assert verified(app, "sam@example.com")
