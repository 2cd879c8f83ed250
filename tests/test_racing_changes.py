"""Two changes at once that each decide from what they read (a limit counted before an insert, a secret kept as the
previous one) come out as if made one after the other, on PostgreSQL as on SQLite's single writer.

Each test holds the first change open, uncommitted, while the second runs in another thread with its own
connection; once the second is waiting for the first's lock, the first commits. Without the lock the second
decides from what it read before the first committed: a limit passed, or the first's secret never signing. On
SQLite the second cannot begin while the first holds the write lock, so the race is PostgreSQL's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from affiliate import outbound
from affiliate.extensions import db
from affiliate.models import ApiKey, Postback, Program, User, WebhookEndpoint, utcnow
from affiliate.services import accounts, api_keys, postbacks, webhooks
from tests.factories import PASSWORD, Auth, make_admin, make_affiliate, make_program
from tests.money.test_deadlocks import waiting_for_a_lock


@pytest.fixture(autouse=True)
def _postgresql_only(database_uri):
    if database_uri.startswith("sqlite"):
        pytest.skip("SQLite's one writer makes the second change wait for the first's commit")


def one_after_the_other(app, first: Callable[[], object], second: Callable[[], object]) -> tuple[object, object]:
    """``first`` in this thread, held open until ``second`` (another thread, its own session) waits for it; both
    committed. Returns what each returned (an exception raised by ``second`` is returned as it is)."""
    outcome: list[object] = []

    def run_second() -> None:
        with app.app_context():
            try:
                outcome.append(second())
                db.session.commit()
            except Exception as error:
                db.session.rollback()
                outcome.append(error)
            finally:
                db.session.remove()

    with app.app_context():
        result = first()
        thread = threading.Thread(target=run_second)
        thread.start()
        deadline = time.monotonic() + 30
        while thread.is_alive() and not waiting_for_a_lock(app):
            assert time.monotonic() < deadline, "the second change neither finished nor waited"
            time.sleep(0.05)
        db.session.commit()
        db.session.remove()
    thread.join(30)
    assert not thread.is_alive()
    return result, outcome[0]


def test_two_endpoints_added_at_once_never_pass_the_programs_limit(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    limit = webhooks.ENDPOINTS_PER_PROGRAM

    def add(n: int) -> Callable[[], object]:
        return lambda: webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings(f"https://hooks{n}.example.com/", ("*",)),
            actor=db.session.get(User, admin.id),
            now=utcnow(),
            check_url=outbound.check_url,
        )

    with app.app_context():
        for n in range(limit - 1):
            add(n)()
        db.session.commit()
    _, second = one_after_the_other(app, add(limit), add(limit + 1))
    assert isinstance(second, webhooks.WebhookError), second
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == limit


def test_two_postbacks_added_at_once_never_pass_the_programs_limit(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    alice = make_affiliate(app)
    limit = postbacks.PER_PROGRAM

    def add(n: int) -> Callable[[], object]:
        return lambda: postbacks.save(
            db.session,
            db.session.get(Program, program.id),
            alice.id,
            postbacks.PostbackSettings(
                f"https://track{n}.example.com/pb?o={{order_id}}", "GET", ("conversion.recorded",)
            ),
            actor=db.session.get(User, alice.id),
            now=utcnow(),
            check_url=outbound.check_url,
        )

    with app.app_context():
        for n in range(limit - 1):
            add(n)()
        db.session.commit()
    _, second = one_after_the_other(app, add(limit), add(limit + 1))
    assert isinstance(second, postbacks.PostbackError), second
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Postback)) == limit


def test_two_webhook_secret_rotations_at_once_leave_the_first_ones_secret_signing(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    with app.app_context():
        endpoint_id = webhooks.create_endpoint(
            db.session,
            db.session.get(Program, program.id),
            webhooks.EndpointSettings("https://hooks.example.com/", ("*",)),
            actor=db.session.get(User, admin.id),
            now=utcnow(),
            check_url=outbound.check_url,
        ).id
        db.session.commit()

    def rotate() -> str:
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        return webhooks.rotate_secret(db.session, endpoint, actor=db.session.get(User, admin.id), now=utcnow())

    first, second = one_after_the_other(app, rotate, rotate)
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert (endpoint.secret, endpoint.previous_secret) == (second, first), "both secrets handed out sign"


def test_two_api_key_secret_rotations_at_once_leave_the_first_ones_secret_accepted(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    with app.app_context():
        key_id = api_keys.issue_key(
            db.session, db.session.get(Program, program.id), "Shop", actor=db.session.get(User, admin.id), now=utcnow()
        ).key.id
        db.session.commit()

    def rotate() -> str:
        key = db.session.get(ApiKey, key_id)
        return api_keys.rotate_secret(db.session, key, actor=db.session.get(User, admin.id), now=utcnow())

    first, second = one_after_the_other(app, rotate, rotate)
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        assert (key.signing_secret, key.previous_signing_secret) == (second, first), "both secrets handed out work"


def _change_password_held(app, user_id: int) -> Callable[[], object]:
    hasher = app.extensions["clicktrail.hasher"]
    new_hash = hasher.hash("a brand new passphrase 42")

    def change() -> None:
        user = db.session.get(User, user_id)
        accounts.change_password(db.session, user, old_hash=user.password_hash, new_hash=new_hash, now=utcnow())

    return change


@pytest.mark.parametrize("second_factor", [False, True], ids=["password", "password-and-second-factor"])
def test_a_sign_in_with_the_old_password_during_a_change_of_password_keeps_no_session(app, second_factor):
    """The owner changes the password (to sign out a thief) while the thief signs in with the old one."""
    owner = make_affiliate(app, second_factor=second_factor)
    thief = app.test_client()
    auth = Auth(thief)
    if second_factor:  # the password step done; the code arrives while the change is being made
        password_step = {"email": owner.email, "password": PASSWORD, "csrf_token": auth.token()}
        assert thief.post("/login", data=password_step).headers["Location"].startswith("/login/second-factor")

    def sign_in():
        return auth.second_factor(owner.email) if second_factor else auth.login(owner.email)

    one_after_the_other(app, _change_password_held(app, owner.id), sign_in)
    assert thief.get("/account/").status_code == 302, "the old password's session was signed out with the others"
