"""Signing in: identical failures, hashing strength, next= safety (throttling: test_throttling.py)."""

import re

from argon2 import Type
from argon2.profiles import RFC_9106_LOW_MEMORY

from affiliate.extensions import db
from affiliate.models import User, utcnow
from config import ProductionConfig
from tests.factories import PASSWORD, make_admin, make_affiliate, make_finance, make_user


def _page_without_tokens(response) -> str:
    return re.sub(r'value="[^"]*"', "", response.get_data(as_text=True)).replace("wrong@example.com", "EMAIL")


def test_unknown_user_and_wrong_password_get_identical_answers(app, client, auth):
    alice = make_affiliate(app, email="alice@example.com")
    unknown = auth.login("wrong@example.com", "some password here")
    wrong = auth.login(alice.email, "not the password!")
    assert unknown.status_code == wrong.status_code == 200
    assert "Email or password is incorrect." in unknown.get_data(as_text=True)
    assert _page_without_tokens(unknown) == _page_without_tokens(wrong)


def test_login_lands_each_role_on_its_home(app, client, auth):
    homes = {
        make_admin(app).email: "/admin/",
        make_finance(app).email: "/finance/",
        make_affiliate(app).email: "/partner/",
        make_user(app, role="member").email: "/member/",
    }
    for email, home in homes.items():
        response = auth.login(email)
        assert response.status_code == 302 and response.headers["Location"] == home, email
        auth.logout()


def test_passwords_are_hashed_with_argon2id_at_owasp_strength_or_more(app):
    alice = make_affiliate(app)
    with app.app_context():
        stored = db.session.get(User, alice.id).password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert ProductionConfig.ARGON2_MEMORY_KIB >= 19456 and ProductionConfig.ARGON2_TIME_COST >= 2
    assert RFC_9106_LOW_MEMORY.memory_cost <= ProductionConfig.ARGON2_MEMORY_KIB
    assert RFC_9106_LOW_MEMORY.type is Type.ID


def test_next_parameter_only_redirects_on_site(app, auth):
    alice = make_affiliate(app)
    cases = {
        "/account/password": "/account/password",
        "https://evil.test/": "/partner/",
        "//evil.test/": "/partner/",
        "/\\evil.test/": "/partner/",
        "%2F%2Fevil.test": "/partner/",
    }
    for target, expected in cases.items():
        response = auth.login(alice.email, next_=target)
        assert response.status_code == 302
        assert response.headers["Location"] == expected, target
        auth.logout()


def test_login_form_rejects_missing_and_oversized_fields(app, client, auth):
    for data in ({"email": "", "password": ""}, {"email": "a@b.c" * 100, "password": "x" * 10000}):
        token = auth.token()
        response = client.post("/login", data={**data, "csrf_token": token})
        assert response.status_code == 200
        assert 'class="errors"' in response.get_data(as_text=True)


def test_two_sign_ins_at_once_that_both_store_a_stronger_hash_both_sign_in(app):
    """After the hashing cost is raised, each right sign-in stores a stronger hash of the same password. Two at
    once: the second finds the first's hash stored, which is no change of password, and signs in too."""
    from argon2 import PasswordHasher

    from affiliate.auth.passwords import throttle_policy
    from affiliate.services import accounts

    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    alice = make_affiliate(app)
    with app.app_context():
        db.session.get(User, alice.id).password_hash = weak.hash(PASSWORD)
        db.session.commit()
        policy, hasher, now = throttle_policy(), app.extensions["clicktrail.hasher"], utcnow()
        both = []
        for _ in range(2):  # both read the weak hash before either stores its stronger one
            both.append(accounts.begin_sign_in(db.session, email=alice.email, ip="192.0.2.1", policy=policy, now=now))
            db.session.commit()
        for stored in both:
            assert hasher.check_needs_rehash(stored.password_hash)
            user = accounts.finish_sign_in(
                db.session, stored, email=alice.email, ip="192.0.2.1", policy=policy, new_hash=hasher.hash(PASSWORD)
            )
            db.session.commit()
            assert user.id == alice.id
        assert hasher.verify(db.session.get(User, alice.id).password_hash, PASSWORD)
