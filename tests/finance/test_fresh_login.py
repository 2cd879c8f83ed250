"""Approving a payout batch needs a password typed in the last FRESH_LOGIN_MINUTES."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import PayoutBatch, Throttle
from tests.factories import PASSWORD, Auth, csrf_token, make_finance, recovery_codes
from tests.finance.test_payout_pages import build, post_on_batch, signed_in


def draft_batch(app) -> int:
    maker = signed_in(app, make_finance(app))
    return int(build(maker).headers["Location"].rsplit("/", 1)[1])


def status_of(app, batch_id: int) -> str:
    with app.app_context():
        return db.session.get(PayoutBatch, batch_id).status


def age_login(client, minutes: int) -> None:
    with client.session_transaction() as session:
        session["password_at"] -= minutes * 60


def reauth(client, next_: str, password: str = PASSWORD, code: str | None = None):
    url = f"/reauth?next={quote(next_)}"
    token = csrf_token(client.get(url).get_data(as_text=True))
    return client.post(url, data={"password": password, "csrf_token": token, **({"code": code} if code else {})})


def test_a_stale_login_is_sent_to_reauthenticate_then_approves(app, owed):
    batch_id = draft_batch(app)
    finance = make_finance(app)
    checker = signed_in(app, finance)
    age_login(checker, 16)
    refused = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 303
    assert refused.headers["Location"] == f"/reauth?next=/finance/payouts/{batch_id}"
    assert status_of(app, batch_id) == "draft"
    back = reauth(checker, f"/finance/payouts/{batch_id}", code=recovery_codes[finance.email].pop())
    assert back.status_code == 302 and back.headers["Location"] == f"/finance/payouts/{batch_id}"
    assert post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    assert status_of(app, batch_id) == "approved"


def test_a_login_restored_from_a_remember_cookie_is_not_fresh(app, owed):
    batch_id = draft_batch(app)
    checker = signed_in(app, make_finance(app))
    with checker.session_transaction() as session:
        session["_fresh"] = False  # what Flask-Login records when a remember cookie signs someone in
    refused = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/reauth?")
    assert status_of(app, batch_id) == "draft"


def test_a_login_within_the_window_approves_directly(app, owed):
    batch_id = draft_batch(app)
    checker = signed_in(app, make_finance(app))
    age_login(checker, 14)
    assert post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    assert status_of(app, batch_id) == "approved"


def test_a_wrong_password_at_reauth_is_refused_and_counted(app, owed):
    batch_id = draft_batch(app)
    checker = signed_in(app, make_finance(app))
    age_login(checker, 60)
    wrong = reauth(checker, f"/finance/payouts/{batch_id}", password="not the password at all")
    assert wrong.status_code == 422 and "That is not your password." in wrong.get_data(as_text=True)
    with app.app_context():
        counted = db.session.scalars(select(Throttle.failures).where(Throttle.scope == "login_account")).all()
        assert counted == [1], "counts towards throttling"
    again = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert again.status_code == 303 and again.headers["Location"].startswith("/reauth?")
    assert status_of(app, batch_id) == "draft"


def age_second_factor(client, minutes: int) -> None:
    with client.session_transaction() as session:
        session["second_factor_at"] -= minutes * 60


def test_the_password_alone_does_not_approve_a_batch(app, owed):
    """Re-authenticating with the right password but no second factor leaves the batch unapproved."""
    batch_id = draft_batch(app)
    finance = make_finance(app)
    checker = signed_in(app, finance)
    age_login(checker, 16)
    age_second_factor(checker, 16)
    refused = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/reauth?")
    password_only = reauth(checker, f"/finance/payouts/{batch_id}")
    assert password_only.status_code == 422 and "recovery code" in password_only.get_data(as_text=True)
    wrong_code = reauth(checker, f"/finance/payouts/{batch_id}", code="123456")
    assert wrong_code.status_code == 422
    still = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert still.status_code == 303 and still.headers["Location"].startswith("/reauth?")
    assert status_of(app, batch_id) == "draft"


def test_a_recent_password_with_a_stale_second_factor_is_sent_to_reauthenticate(app, owed):
    batch_id = draft_batch(app)
    checker = signed_in(app, make_finance(app))
    age_second_factor(checker, 16)
    refused = post_on_batch(checker, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/reauth?")
    assert status_of(app, batch_id) == "draft"


def test_finance_without_a_second_factor_is_sent_to_set_one_up_and_cannot_approve(app, owed):
    batch_id = draft_batch(app)
    finance = make_finance(app, second_factor=False)
    client = app.test_client()
    assert Auth(client).login(finance.email).status_code == 302
    assert client.get(f"/finance/payouts/{batch_id}").headers["Location"] == "/account/two-factor/"
    token = csrf_token(client.get("/account/two-factor/").get_data(as_text=True))
    refused = client.post(f"/finance/payouts/{batch_id}/approve", data={"csrf_token": token})
    assert refused.status_code == 302 and refused.headers["Location"] == "/account/two-factor/"
    assert status_of(app, batch_id) == "draft"
