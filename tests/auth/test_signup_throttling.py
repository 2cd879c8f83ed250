"""Creating accounts is throttled per address across workers, so /apply and /signup cannot be used to
list which emails have accounts at speed (docs/sign-in.md)."""

from __future__ import annotations

from sqlalchemy import func, select

from affiliate.auth.passwords import CLOCK
from affiliate.extensions import db
from affiliate.models import User
from tests.auth.test_throttling import Clock
from tests.conftest import build_app, dispose
from tests.factories import PASSWORD, csrf_token, make_affiliate

PROBER = "203.0.113.80"
NEIGHBOUR = "198.51.100.30"


def post_form(client, path: str, ip: str, email: str):
    environ = {"REMOTE_ADDR": ip}
    token = csrf_token(client.get(path, environ_base=environ).get_data(as_text=True))
    data = {"name": "Pat", "email": email, "password": PASSWORD, "confirm": PASSWORD, "promotion": "Blog"}
    return client.post(path, data={**data, "csrf_token": token}, environ_base=environ)


def users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_probing_emails_through_apply_and_signup_is_slowed_per_address(app, database_uri):
    clock = Clock()
    app.extensions[CLOCK] = clock
    other_worker = build_app(database_uri)
    other_worker.extensions[CLOCK] = clock
    try:
        alice = make_affiliate(app)
        probers = [app.test_client(), other_worker.test_client()]
        for n in range(20):
            path = "/apply" if n % 2 else "/signup"
            answer = post_form(probers[n % 2], path, PROBER, alice.email)
            assert answer.status_code == 200 and "already exists" in answer.get_data(as_text=True), n
        known = post_form(app.test_client(), "/apply", PROBER, alice.email)
        unknown = post_form(other_worker.test_client(), "/signup", PROBER, "nobody@example.com")
        assert known.status_code == unknown.status_code == 429
        assert known.headers["Retry-After"] == unknown.headers["Retry-After"] == "60"
        assert "already exists" not in known.get_data(as_text=True)
        assert users(app) == 1, "nothing was created while throttled"
        assert post_form(app.test_client(), "/signup", NEIGHBOUR, "neighbour@example.com").status_code == 302
        clock.advance(60)
        assert post_form(app.test_client(), "/signup", PROBER, "late@example.com").status_code == 302
        assert post_form(app.test_client(), "/signup", PROBER, "later@example.com").status_code == 429
        assert users(app) == 3
    finally:
        dispose(other_worker)
