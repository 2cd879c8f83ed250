"""The hosted signup and refer-a-friend: members, referrers, referrals and the signup conversion."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Conversion, Referral, User
from tests.api.helpers import click
from tests.factories import Auth, Visitor, csrf_token, make_admin, make_affiliate, make_link, make_program, make_user

PASSWORD = "a long enough password"


def sign_up(client, query: str = "", email: str = "friend@example.com", name: str = "Fran Friend"):
    page = client.get(f"/signup{query}")
    assert page.status_code == 200
    return client.post(
        f"/signup{query}",
        data={
            "name": name,
            "email": email,
            "password": PASSWORD,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
        },
    )


def member(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(user)
        return user


def referrals(app) -> list[tuple[int, int, int | None]]:
    with app.app_context():
        return [(r.referrer_id, r.referred_id, r.click_id) for r in db.session.scalars(select(Referral))]


def signup_conversion(app, user: User) -> Conversion:
    with app.app_context():
        conversion = db.session.scalar(select(Conversion).where(Conversion.customer_user_id == user.id))
        db.session.expunge(conversion)
        return conversion


def test_signup_with_a_referral_code_credits_the_affiliate(app, client):
    program = make_program(app, make_admin(app))
    alice = make_affiliate(app, name="Alice Affiliate")
    assert "Alice Affiliate invited you" in client.get(f"/signup?ref={alice.referral_code}").get_data(as_text=True)
    response = sign_up(client, f"?ref={alice.referral_code}")
    assert response.status_code == 302 and response.headers["Location"] == "/member/"
    friend = member(app, "friend@example.com")
    assert friend.role == "member" and friend.status == "active" and friend.referred_by_id == alice.id
    assert friend.referral_code and friend.referral_code != alice.referral_code
    assert referrals(app) == [(alice.id, friend.id, None)]
    conversion = signup_conversion(app, friend)
    assert conversion.type == "signup" and conversion.program_id == program.id and conversion.affiliate_id == alice.id
    assert json.loads(conversion.decision_trace)["matched_by"] == "referral_code"
    home = client.get("/member/").get_data(as_text=True)
    assert f"ref={friend.referral_code}" in home


def test_a_signup_credited_by_referral_code_is_screened_like_any_other(app, client):
    """Attribution screens while no one is credited; the code's owner is credited after, and screened then."""
    make_program(app, make_admin(app))
    alice = make_affiliate(app, email="alice@gmail.com")
    assert sign_up(client, f"?ref={alice.referral_code}", email="a.lice+2@gmail.com").status_code == 302
    conversion = signup_conversion(app, member(app, "a.lice+2@gmail.com"))
    assert conversion.affiliate_id == alice.id
    assert json.loads(conversion.decision_trace)["matched_by"] == "referral_code"
    assert conversion.status == "rejected", "her own address under a Gmail alias is self-referral"
    assert "self_referral" in conversion.fraud_reasons


def test_a_referral_code_of_an_affiliate_removed_from_the_program_credits_no_one(app, client):
    """The person still signs up (and is the affiliate's referral), but the program's signup earns the affiliate
    nothing, as their links and coupons earn nothing there since the removal."""
    from affiliate.models import Program, utcnow
    from affiliate.services.enrollment import decide

    admin = make_admin(app)
    program = make_program(app, admin)
    alice = make_affiliate(app)
    with app.app_context():
        decide(db.session, db.session.get(Program, program.id), alice.id, "remove", actor_id=admin.id, reason="Spam",
               now=utcnow())  # fmt: skip
        db.session.commit()
    assert sign_up(client, f"?ref={alice.referral_code}").status_code == 302
    conversion = signup_conversion(app, member(app, "friend@example.com"))
    assert conversion.affiliate_id is None


def test_signup_after_a_tracked_click_is_attributed_to_the_click(app, redirector):
    admin = make_admin(app)
    program = make_program(app, admin)
    bob = make_affiliate(app, name="Bob")
    link = make_link(app, bob, program)
    browser = Visitor(redirector)
    click_id = click(browser, link.code)
    redirector.recorder.flush()
    portal = app.test_client()
    response = sign_up(portal, f"?program={program.id}&ct_click={click_id}")
    assert response.status_code == 302
    friend = member(app, "friend@example.com")
    assert friend.referred_by_id == bob.id
    conversion = signup_conversion(app, friend)
    assert conversion.affiliate_id == bob.id and json.loads(conversion.decision_trace)["matched_by"] == "click_id"
    ((referrer, referred, referral_click),) = referrals(app)
    assert (referrer, referred) == (bob.id, friend.id) and referral_click == conversion.click_id
    # Bob sees it in his portal, with the trace.
    Auth(bob_client := app.test_client()).login(bob.email)
    home = bob_client.get("/partner/").get_data(as_text=True)
    assert "<dd>1 (" in home and "Fran," in home
    listing = bob_client.get("/partner/conversions/").get_data(as_text=True)
    assert f"member-{friend.id}" in listing
    detail = bob_client.get(f"/partner/conversions/{conversion.id}").get_data(as_text=True)
    assert "click id" in detail and "won" in detail


def test_the_click_cookie_counts_when_the_url_has_no_click_id(app, redirector):
    program = make_program(app, make_admin(app))
    carol = make_affiliate(app)
    click_id = click(Visitor(redirector), make_link(app, carol, program).code)
    redirector.recorder.flush()
    portal = app.test_client()
    portal.set_cookie(f"ct_{program.id}", click_id)
    sign_up(portal, f"?program={program.id}")
    assert member(app, "friend@example.com").referred_by_id == carol.id


@pytest.mark.parametrize("ref", ["UNKNOWN123", "<script>", "x" * 500, "%00", ""])
def test_unknown_or_malformed_codes_still_sign_up_without_attribution(app, client, ref):
    make_program(app, make_admin(app))
    page = client.get("/signup", query_string={"ref": ref}).get_data(as_text=True)
    assert "invited you" not in page and "<script>" not in page
    response = client.post(
        "/signup",
        query_string={"ref": ref},
        data={"name": "Fran", "email": "friend@example.com", "password": PASSWORD, "csrf_token": csrf_token(page)},
    )
    assert response.status_code == 302
    assert member(app, "friend@example.com").referred_by_id is None
    assert referrals(app) == []


def test_an_own_code_or_a_suspended_referrers_code_attributes_nothing(app, client):
    make_program(app, make_admin(app))
    suspended = make_affiliate(app, status="suspended")
    sign_up(client, f"?ref={suspended.referral_code}")
    assert member(app, "friend@example.com").referred_by_id is None
    own = make_affiliate(app, email="self@example.com")
    other = app.test_client()
    response = sign_up(other, f"?ref={own.referral_code}", email="self@example.com")
    assert response.status_code == 200 and "already exists" in response.get_data(as_text=True)
    assert referrals(app) == []


def test_members_refer_friends_and_see_them(app, client):
    make_program(app, make_admin(app))
    mia = make_user(app, role="member", name="Mia Member")
    sign_up(client, f"?ref={mia.referral_code}", email="one@example.com", name="One Friend")
    sign_up(app.test_client(), f"?ref={mia.referral_code}", email="two@example.com", name="Two Friend")
    mia_client = app.test_client()
    Auth(mia_client).login(mia.email)
    page = mia_client.get("/member/").get_data(as_text=True)
    assert "One," in page and "Two," in page
    assert 'data-figure="friends">2</dd>' in page
    assert "one@example.com" not in page, "friends' addresses stay private"


def test_weak_passwords_and_bad_input_are_form_errors(app, client):
    make_program(app, make_admin(app))
    page = client.get("/signup").get_data(as_text=True)
    response = client.post(
        "/signup", data={"name": "", "email": "nope", "password": "short", "csrf_token": csrf_token(page)}
    )
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(User).where(User.role == "member")) is None


def test_one_address_in_two_unicode_spellings_is_one_account(app):
    """josé with é, and with e and a combining accent, are the same address: the second signup is told it exists."""
    import unicodedata

    composed, decomposed = (unicodedata.normalize(form, "josé@example.com") for form in ("NFC", "NFD"))
    assert composed != decomposed
    assert sign_up(app.test_client(), email=composed).status_code == 302
    again = sign_up(app.test_client(), email=decomposed.upper())
    assert again.status_code == 200 and "already exists" in again.get_data(as_text=True)
    assert member(app, composed).email == composed
