"""Sign-in throttling slows a guesser without locking the owner out (docs/sign-in.md)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from affiliate.auth.passwords import CLOCK
from affiliate.extensions import db
from affiliate.models import Throttle
from tests.conftest import build_app, dispose
from tests.factories import PASSWORD, Auth, csrf_token, make_admin, make_affiliate

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.20"
WRONG = "not the password at all"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def clocked(app) -> Clock:
    clock = Clock()
    app.extensions[CLOCK] = clock
    return clock


def login_from(client, ip: str, email: str, password: str = PASSWORD):
    environ = {"REMOTE_ADDR": ip}
    token = csrf_token(client.get("/login", environ_base=environ).get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token}, environ_base=environ)


def _without_tokens(response, email: str) -> str:
    return re.sub(r'value="[^"]*"', "", response.get_data(as_text=True)).replace(email, "EMAIL")


def test_wrong_passwords_earn_doubling_waits_with_retry_after_and_no_sleeping(app):
    clock = clocked(app)
    alice = make_affiliate(app)
    attacker = app.test_client()
    for _ in range(5):
        assert login_from(attacker, ATTACKER, alice.email, WRONG).status_code == 200
    waiting = login_from(attacker, ATTACKER, alice.email)  # even the right password waits its turn
    assert waiting.status_code == 429 and waiting.headers["Retry-After"] == "30"
    assert "Try again in 30 seconds" in waiting.get_data(as_text=True)
    for wait in (30, 60, 120, 240, 480, 900, 900):
        clock.advance(wait - 1)
        early = login_from(attacker, ATTACKER, alice.email, WRONG)
        assert early.status_code == 429 and early.headers["Retry-After"] == "1", wait
        clock.advance(1)
        assert login_from(attacker, ATTACKER, alice.email, WRONG).status_code == 200, wait
    clock.advance(900)
    assert login_from(attacker, ATTACKER, alice.email).status_code == 302, "the owner's own address, after the wait"


def test_an_attackers_failures_do_not_lock_staff_out_from_their_own_address(app):
    clocked(app)
    admin = make_admin(app)
    attacker = app.test_client()
    answers = [login_from(attacker, ATTACKER, admin.email, WRONG).status_code for _ in range(12)]
    assert answers == [200] * 5 + [429] * 7
    owner = app.test_client()
    assert login_from(owner, OWNER, admin.email).headers["Location"].startswith("/login/second-factor")
    assert Auth(owner).second_factor(admin.email).status_code == 302
    assert owner.get("/admin/").status_code == 200


def test_one_address_trying_many_accounts_is_slowed_and_others_are_not(app):
    clocked(app)
    alice = make_affiliate(app)
    sprayer = app.test_client()
    for n in range(30):
        assert login_from(sprayer, ATTACKER, f"guess{n}@example.com", WRONG).status_code == 200, n
    assert login_from(sprayer, ATTACKER, alice.email).status_code == 429
    assert login_from(app.test_client(), OWNER, alice.email).status_code == 302


def test_throttled_answers_read_the_same_for_unknown_and_known_emails(app):
    clocked(app)
    alice = make_affiliate(app, email="alice@example.com")
    attacker = app.test_client()
    known = [login_from(attacker, ATTACKER, alice.email, WRONG) for _ in range(6)][-1]
    unknown = [login_from(attacker, "203.0.113.67", "nobody@example.com", WRONG) for _ in range(6)][-1]
    assert known.status_code == unknown.status_code == 429
    assert known.headers["Retry-After"] == unknown.headers["Retry-After"]
    assert _without_tokens(known, alice.email) == _without_tokens(unknown, "nobody@example.com")


def test_throttle_holds_across_workers(app, database_uri):
    """Two app instances on one database stand for two server processes."""
    clock = clocked(app)
    alice = make_affiliate(app)
    other_worker = build_app(database_uri)
    other_worker.extensions[CLOCK] = clock
    try:
        clients = [app.test_client(), other_worker.test_client()]
        for attempt in range(5):
            login_from(clients[attempt % 2], ATTACKER, alice.email, WRONG)
        assert login_from(clients[1], ATTACKER, alice.email).status_code == 429
        assert login_from(clients[0], ATTACKER, alice.email).status_code == 429
    finally:
        dispose(other_worker)


def test_signing_in_forgives_the_failures_before_it(app):
    clocked(app)
    alice = make_affiliate(app)
    client = app.test_client()
    for _ in range(4):
        login_from(client, OWNER, alice.email, WRONG)
    assert login_from(client, OWNER, alice.email).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account/").get_data(as_text=True))})
    answers = [login_from(client, OWNER, alice.email, WRONG).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429], "a fresh allowance after signing in"


def test_failures_are_forgotten_after_a_quiet_day(app):
    clock = clocked(app)
    alice = make_affiliate(app)
    client = app.test_client()
    for _ in range(6):
        login_from(client, ATTACKER, alice.email, WRONG)
    clock.advance(24 * 3600 - 1)
    assert login_from(client, ATTACKER, alice.email, WRONG).status_code == 200, "the wait is over, not the memory"
    assert login_from(client, ATTACKER, alice.email, WRONG).status_code == 429
    clock.advance(24 * 3600)
    assert [login_from(client, ATTACKER, alice.email, WRONG).status_code for _ in range(6)] == [200] * 5 + [429]


def test_parallel_wrong_passwords_are_counted_before_any_is_checked(app):
    """Twelve guesses at once from one address: exactly the five allowed reach the password check."""
    clocked(app)
    alice = make_affiliate(app)
    clients = [app.test_client() for _ in range(12)]
    login_page = {"REMOTE_ADDR": ATTACKER}
    tokens = [csrf_token(c.get("/login", environ_base=login_page).get_data(as_text=True)) for c in clients]
    start = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(client, token) -> None:
        start.wait()
        response = client.post(
            "/login",
            data={"email": alice.email, "password": WRONG, "csrf_token": token},
            environ_base={"REMOTE_ADDR": ATTACKER},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 5 + [429] * 7
    with app.app_context():
        counted = db.session.scalars(select(Throttle.failures).where(Throttle.scope == "login_account")).all()
    assert counted == [5]
