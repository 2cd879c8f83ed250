"""A pending, rejected or suspended affiliate lands on one focused page about their application."""

from __future__ import annotations

import re

from affiliate.extensions import db
from affiliate.models import User
from tests.factories import Auth, make_affiliate
from tests.partner.helpers import signed_in

APPLICATION = {
    "name": "Pat Partner",
    "email": "pat@example.com",
    "password": "correct horse battery",
    "confirm": "correct horse battery",
    "website": "https://pat.example.com",
    "promotion": "A newsletter on running shoes, 12k readers",
}


def with_reason(app, user: User, reason: str) -> User:
    with app.app_context():
        db.session.get(User, user.id).status_reason = reason
        db.session.commit()
    return user


def main(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def test_a_pending_applicant_signing_in_lands_on_their_application(app, client):
    assert Auth(client).post("/apply", APPLICATION).status_code == 302
    Auth(client).logout()
    signed = Auth(client).login("pat@example.com")
    assert signed.headers["Location"] == "/account/application"
    page = client.get("/account/application")
    assert page.status_code == 200
    content = main(page.get_data(as_text=True))
    assert "Your application is being reviewed" in content
    assert "there is no fixed time" in content, "no promise the product cannot keep"
    assert "https://pat.example.com/" in content and "A newsletter on running shoes, 12k readers" in content
    assert "Confirm your email address" in content, "the one thing they can do to be reviewed"
    assert 'href="/account/"' in content and 'href="/account/payout"' in content
    assert not re.search(r'href="/partner', content), "no link in the page leads to a page they cannot open"


def test_a_rejected_applicant_reads_why_and_what_they_can_do(app):
    rejected = with_reason(app, make_affiliate(app, status="rejected"), "No website or channel to promote on")
    page = signed_in(app, rejected).get("/account/application")
    assert page.status_code == 200
    content = main(page.get_data(as_text=True))
    assert "Your application was not approved" in content
    assert "The reason given: No website or channel to promote on" in content
    assert "update your profile below and reply to the mail" in content
    assert "What happens next" not in content


def test_a_suspended_affiliate_reads_the_reason(app):
    suspended = with_reason(app, make_affiliate(app, status="suspended"), "Traffic from a blocked country")
    content = main(signed_in(app, suspended).get("/account/application").get_data(as_text=True))
    assert "Your partner account is suspended" in content and "Traffic from a blocked country" in content
    assert "payouts to you are held" in content


def test_partner_pages_send_them_to_their_application_and_an_approved_affiliate_goes_home(app):
    pending = signed_in(app, make_affiliate(app, status="pending"))
    blocked = pending.get("/partner/links/")
    assert blocked.status_code == 403
    assert 'href="/account/application"' in main(blocked.get_data(as_text=True))
    active = make_affiliate(app)
    assert signed_in(app, active).get("/account/application").headers["Location"] == "/partner/"
    with app.app_context():
        assert db.session.get(User, active.id).status == "active"
