"""Changing where the money goes needs the password typed recently, as approving a payout does."""

from __future__ import annotations

from affiliate.extensions import db
from affiliate.models import User
from tests.factories import PASSWORD, Auth, csrf_token, make_affiliate

BANK = {"method": "bank", "account_name": "Mallory M", "iban": "GB82 WEST 1234 5698 7654 32"}


def signed_in(app):
    alice = make_affiliate(app)
    client = app.test_client()
    assert Auth(client).login(alice.email).status_code == 302
    return alice, client


def post_payout(client, token: str):
    return client.post("/account/payout", data={**BANK, "csrf_token": token})


def payout_method(app, user_id: int) -> str | None:
    with app.app_context():
        return db.session.get(User, user_id).payout_method


def age_login(client, minutes: int) -> None:
    with client.session_transaction() as session:
        session["password_at"] -= minutes * 60


def test_a_stale_login_is_asked_for_the_password_before_payout_details_change(app):
    alice, client = signed_in(app)
    token = csrf_token(client.get("/account/payout").get_data(as_text=True))
    age_login(client, 16)
    refused = post_payout(client, token)
    assert refused.status_code == 303 and refused.headers["Location"] == "/reauth?next=/account/payout"
    assert payout_method(app, alice.id) is None
    assert client.get("/account/payout").headers["Location"] == "/reauth?next=/account/payout"
    asked = client.get("/reauth?next=/account/payout").get_data(as_text=True)
    assert "Your payout details were not saved" in asked, "the person knows to enter them again"
    reauth = csrf_token(asked)
    wrong = client.post("/reauth?next=/account/payout", data={"password": "not my password!", "csrf_token": reauth})
    assert wrong.status_code == 422
    back = client.post("/reauth?next=/account/payout", data={"password": PASSWORD, "csrf_token": reauth})
    assert back.status_code == 302 and back.headers["Location"] == "/account/payout"
    assert post_payout(client, token).status_code == 302
    assert payout_method(app, alice.id) == "bank"


def test_a_login_restored_from_a_remember_cookie_cannot_change_payout_details(app):
    alice, client = signed_in(app)
    token = csrf_token(client.get("/account/payout").get_data(as_text=True))
    with client.session_transaction() as session:
        session["_fresh"] = False  # what Flask-Login records when a remember cookie signs someone in
    assert post_payout(client, token).headers["Location"] == "/reauth?next=/account/payout"
    assert payout_method(app, alice.id) is None


def test_a_fresh_login_changes_payout_details_directly(app):
    alice, client = signed_in(app)
    age_login(client, 14)
    token = csrf_token(client.get("/account/payout").get_data(as_text=True))
    assert post_payout(client, token).status_code == 302
    assert payout_method(app, alice.id) == "bank"


def test_a_payout_address_a_spreadsheet_would_run_is_a_form_error(app):
    """It could not go into a payout file as it is (docs/payouts.md), so it is refused where it is typed."""
    alice, client = signed_in(app)
    token = csrf_token(client.get("/account/payout").get_data(as_text=True))
    refused = client.post(
        "/account/payout", data={"method": "paypal", "email": "-sales@example.com", "csrf_token": token}
    )
    assert refused.status_code == 200 and "cannot go into a payout file" in refused.get_data(as_text=True)
    assert payout_method(app, alice.id) is None
