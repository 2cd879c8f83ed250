"""Two changes at once that each decide from what they read (a limit counted before an insert, a secret kept as the
previous one) come out as if made one after the other, on PostgreSQL as on SQLite's single writer.

Each test holds the first change open, uncommitted, while the second runs in another thread with its own
connection; once the second is waiting for the first's lock, the first commits. Without the lock the second
decides from what it read before the first committed: a limit passed, or the first's secret never signing. On
SQLite the second cannot begin while the first holds the write lock, so the race is PostgreSQL's.
"""

from __future__ import annotations

import threading
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


class Meanwhile:
    """``work`` in another thread with its own session, committed; ``start`` returns once it is done or waits for
    a lock this thread holds, ``finish`` waits for it and returns what it returned (or the exception it raised)."""

    def __init__(self, app, work: Callable[[], object]) -> None:
        self.app, self.work, self.outcome = app, work, []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with self.app.app_context():
            try:
                self.outcome.append(self.work())
                db.session.commit()
            except Exception as error:
                db.session.rollback()
                self.outcome.append(error)
            finally:
                db.session.remove()

    def start(self) -> Meanwhile:
        # Two states end the wait, whatever the time it takes on a busy machine: the thread ended (its join returns
        # at once), or PostgreSQL shows its backend waiting for a lock (no event announces that, so it is asked).
        self.thread.start()
        self.thread.join(0.05)
        while self.thread.is_alive() and not waiting_for_a_lock(self.app):
            self.thread.join(0.05)
        return self

    def finish(self) -> object:
        self.thread.join()  # the first change has committed: nothing is left for it to wait for
        return self.outcome[0]


def one_after_the_other(app, first: Callable[[], object], second: Callable[[], object]) -> tuple[object, object]:
    """``first`` in this thread, held open until ``second`` (another thread, its own session) waits for it; both
    committed. Returns what each returned (an exception raised by ``second`` is returned as it is)."""
    with app.app_context():
        result = first()
        meanwhile = Meanwhile(app, second).start()
        db.session.commit()
        db.session.remove()
    return result, meanwhile.finish()


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


@pytest.mark.parametrize("meanwhile", ["approval", "failed-payout"])
def test_a_commission_approved_or_freed_during_a_payout_build_never_joins_it_without_its_money(
    app, monkeypatch, meanwhile
):
    """The build reads the balances, then links the approved commissions: one approved or freed (its payout marked
    failed) in between must wait for the build, not join a payout that does not carry its money."""
    from affiliate.models import Commission, Payout
    from affiliate.services import accrual, payouts
    from affiliate.services.ledger import balance
    from tests.factories import make_finance
    from tests.money.test_accrual import _accrued, set_plan
    from tests.money.test_payouts import _details, _earn

    program = make_program(app, make_admin(app), minimum_payout_cents=100)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    maker, checker = make_finance(app), make_finance(app)
    _details(app, alice)
    _earn(app, program, alice, 1_000, "first")
    if meanwhile == "approval":
        later = _accrued(app, program, alice, "second", 10_000)

        def change() -> None:
            accrual.approve(db.session, db.session.get(Commission, later), now=utcnow())
    else:  # a payout of an earlier batch, approved, then marked failed: its commission is freed
        _earn(app, program, alice, 2_000, "second")
        with app.app_context():
            earlier, _ = payouts.build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
            payouts.approve_batch(db.session, earlier, approver=db.session.get(User, checker.id), now=utcnow())
            db.session.commit()
            failed_id = db.session.scalar(select(Payout.id).where(Payout.batch_id == earlier.id))
        _earn(app, program, alice, 1_000, "third")

        def change() -> None:
            payout = db.session.get(Payout, failed_id)
            payouts.mark_failed(
                db.session, payout, reason="bounced", actor=db.session.get(User, checker.id), now=utcnow()
            )

    link, meanwhile = payouts._link_commissions, Meanwhile(app, change)

    def link_once_the_change_is_done_or_waiting(*args, **kwargs):
        meanwhile.start()
        return link(*args, **kwargs)

    monkeypatch.setattr(payouts, "_link_commissions", link_once_the_change_is_done_or_waiting)
    with app.app_context():
        batch_id = payouts.build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())[0].id
        db.session.commit()
    assert meanwhile.finish() in (None, True)
    with app.app_context():
        (payout,) = db.session.scalars(select(Payout).where(Payout.batch_id == batch_id)).all()
        linked = db.session.scalars(select(Commission.amount_cents).where(Commission.payout_id == payout.id)).all()
        assert sum(linked) == payout.amount_cents, "every commission in the payout has its money in it"
        left = -balance(db.session, f"affiliate_payable:{alice.id}", "USD")
        unlinked = db.session.scalars(
            select(Commission.amount_cents).where(Commission.status == "approved", Commission.payout_id.is_(None))
        ).all()
        assert left == sum(unlinked), "what is still payable is the commissions in no payout"


@pytest.mark.parametrize("recorded", ["adjustment", "plan-amount"])
def test_an_amount_recorded_during_a_currency_change_is_refused_not_kept_in_the_old_currency(app, recorded):
    """A program with no money yet may change its currency; a 50.00 USD bonus or a 5.00 flat typed meanwhile must
    not end up in a JPY program (50.00 owed in a currency nothing pays, or 500 yen per sale)."""
    from affiliate.services import adjustments, programs
    from affiliate.services.commissions import PlanTerms
    from affiliate.services.plans import PlanError, save_plan
    from tests.factories import make_finance

    admin = make_admin(app)
    program = make_program(app, admin)
    alice = make_affiliate(app)
    finance = make_finance(app)

    def change_currency() -> None:
        shop = db.session.get(Program, program.id)
        programs._check_currency_can_change(db.session, shop)
        shop.currency = "JPY"
        db.session.flush()

    def record() -> object:
        if recorded == "adjustment":
            request = adjustments.AdjustmentRequest(alice.id, program.id, "bonus", 5_000, "Welcome", currency="USD")
            return adjustments.create(db.session, request, actor=db.session.get(User, finance.id),
                                      thresholds={"*": 10_000}, now=utcnow())  # fmt: skip
        now = utcnow()
        return save_plan(db.session, program.id, PlanTerms(flat_cents=500), effective_from=now, actor_id=admin.id,
                         now=now, currency="USD")  # fmt: skip

    _, outcome = one_after_the_other(app, change_currency, record)
    assert isinstance(outcome, adjustments.AdjustmentError | PlanError), outcome
    assert "currency changed to JPY" in str(outcome)
