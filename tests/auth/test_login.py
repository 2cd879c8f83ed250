"""Signing in: identical failures, throttling across workers, hashing strength, next= safety."""

import re

from argon2 import Type
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import LoginAttempt, User
from config import ProductionConfig
from tests.conftest import build_app
from tests.factories import PASSWORD, Auth, make_admin, make_affiliate, make_finance, make_user


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
        make_finance(app).email: "/admin/affiliates/",
        make_affiliate(app).email: "/partner/",
        make_user(app, role="member").email: "/member/",
    }
    for email, home in homes.items():
        response = auth.login(email)
        assert response.status_code == 302 and response.headers["Location"] == home, email
        auth.logout()


def test_throttling_locks_account_even_with_right_password_then_recovers(app, client, auth):
    alice = make_affiliate(app)
    for _ in range(5):
        assert auth.login(alice.email, "wrong password!!").status_code == 200
    locked = auth.login(alice.email)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    unknown_locked = [auth.login("nobody@example.com", "wrong password!!") for _ in range(6)][-1]
    assert unknown_locked.status_code == 429
    assert _page_without_tokens(unknown_locked).replace("nobody@example.com", "EMAIL") == _page_without_tokens(
        locked
    ).replace(alice.email, "EMAIL")


def test_throttle_holds_across_workers(app, database_uri):
    """Two app instances on one database stand for two server processes."""
    alice = make_affiliate(app)
    other_worker = build_app(database_uri)
    clients = [app.test_client(), other_worker.test_client()]
    for attempt in range(5):
        Auth(clients[attempt % 2]).login(alice.email, "wrong password!!")
    assert Auth(clients[1]).login(alice.email).status_code == 429
    assert Auth(clients[0]).login(alice.email).status_code == 429


def test_successful_login_clears_failures(app, auth):
    alice = make_affiliate(app)
    for _ in range(4):
        auth.login(alice.email, "wrong password!!")
    assert auth.login(alice.email).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(LoginAttempt).where(LoginAttempt.email == alice.email)) is None


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
