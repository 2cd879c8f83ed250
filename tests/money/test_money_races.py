"""Money decisions that race each other: refunds against refunds, refunds against approvals.

Each test starts its contenders together on real threads, each with its own session and transaction, and
then checks the outcome against the rules (docs/money.md, "Concurrency"). On PostgreSQL the row locks are
what keeps them apart; on SQLite the single writer does, so the same tests hold on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Commission, Conversion, utcnow
from affiliate.services import accrual, money_checks
from affiliate.services.conversions import ConversionError, RefundRequest, record_refund
from affiliate.services.ledger import balance
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import report, set_plan

ROUNDS = 6


def race(app, *contenders: Callable[[], object]) -> list[object]:
    """Run each contender in its own thread and app context, started together; their results or errors."""
    barrier = threading.Barrier(len(contenders))
    results: list[object] = [None] * len(contenders)

    def run(position: int, contender: Callable[[], object]) -> None:
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                results[position] = contender()
                db.session.commit()
            except Exception as error:  # the outcome under test, inspected by the caller
                db.session.rollback()
                results[position] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a contender never finished (a deadlock?)"
    return results


def refund(program_id: int, order: str, refund_id: str, amount: int) -> Callable[[], object]:
    def contender():
        from affiliate.models import Program

        program = db.session.get(Program, program_id)
        request = RefundRequest(order_id=order, refund_id=refund_id, amount_cents=amount)
        return record_refund(db.session, program, request, now=utcnow()).conversion.id

    return contender


def money_job() -> object:
    return accrual.run(db.session, now=utcnow())


def approve_by_hand(commission_id: int) -> Callable[[], object]:
    def contender():
        return accrual.approve(db.session, db.session.get(Commission, commission_id), now=utcnow(), actor_id=None)

    return contender


def approve_due() -> object:
    return accrual.approve_due(db.session, now=utcnow())


def settled(app, affiliate_id: int) -> tuple[int, int, list[str]]:
    """After a final money job: the affiliate's pending and payable balances and any broken invariant."""
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
        pending = -balance(db.session, f"affiliate_pending:{affiliate_id}", "USD")
        payable = -balance(db.session, f"affiliate_payable:{affiliate_id}", "USD")
        return pending, payable, [problem.invariant for problem in money_checks.check(db.session)]


def test_refunds_sent_together_never_add_up_to_more_than_the_sale(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(ROUNDS):
        sale = report(app, program, alice.id, f"sale-{n}", 100_000)
        results = race(app, *(refund(program.id, f"sale-{n}", f"r-{n}-{k}", 60_000) for k in range(6)))
        accepted = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, ConversionError)]
        assert len(accepted) == 1 and len(refused) == 5, results
        assert {r.code for r in refused} == {"refund_exceeds_sale"}
        with app.app_context():
            refunds = db.session.scalars(select(Conversion.amount_cents).where(Conversion.refund_of_id == sale)).all()
            assert refunds == [60_000]
    pending, payable, problems = settled(app, alice.id)
    assert problems == []
    assert (pending, payable) == (ROUNDS * 4_000, 0), "each sale keeps 40% of its 100.00 commission"


def test_an_approval_racing_a_refunds_reversal_moves_only_what_is_left(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(ROUNDS):
        sale = report(app, program, alice.id, f"sale-{n}", 10_000)
        with app.app_context():
            accrual.run(db.session, now=utcnow())
            db.session.commit()
            commission_id = db.session.scalar(select(Commission.id).where(Commission.conversion_id == sale))
            program_row = db.session.get(type(program), program.id)
            record_refund(
                db.session, program_row, RefundRequest(order_id=f"sale-{n}", amount_cents=5_000), now=utcnow()
            )
            db.session.commit()
        contenders = (
            [money_job, approve_by_hand(commission_id)] if n % 2 else [approve_by_hand(commission_id), money_job]
        )
        results = race(app, *contenders)
        assert not any(isinstance(r, Exception) for r in results), results
    pending, payable, problems = settled(app, alice.id)
    assert problems == []
    assert (pending, payable) == (0, ROUNDS * 500), "each approved commission is worth what the refund left: 5.00"


def test_the_rule_approval_racing_the_money_job_strands_nothing(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(ROUNDS):
        report(app, program, alice.id, f"sale-{n}", 10_000)
        with app.app_context():
            accrual.run(db.session, now=utcnow())
            db.session.commit()
            program_row = db.session.get(type(program), program.id)
            record_refund(
                db.session, program_row, RefundRequest(order_id=f"sale-{n}", amount_cents=2_500), now=utcnow()
            )
            db.session.commit()
        results = race(app, approve_due, money_job, approve_due)
        assert not any(isinstance(r, Exception) for r in results), results
    pending, payable, problems = settled(app, alice.id)
    assert problems == []
    assert (pending, payable) == (0, ROUNDS * 750)


def test_a_rejection_racing_a_refund_takes_back_each_cent_once(app):
    from affiliate.services import review

    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    for n in range(ROUNDS):
        sale = report(app, program, alice.id, f"sale-{n}", 10_000)
        with app.app_context():
            accrual.run(db.session, now=utcnow())
            accrual.approve_due(db.session, now=utcnow())
            db.session.commit()
            program_row = db.session.get(type(program), program.id)
            record_refund(
                db.session, program_row, RefundRequest(order_id=f"sale-{n}", amount_cents=4_000), now=utcnow()
            )
            db.session.commit()

        def reject(sale=sale):
            return review.decide(db.session, [sale], "reject", actor_id=None, note="fraud", now=utcnow(), reopen=True)

        results = race(app, money_job, reject)
        assert not any(isinstance(r, Exception) for r in results), results
    pending, payable, problems = settled(app, alice.id)
    assert problems == []
    assert (pending, payable) == (0, 0), "a rejected conversion earns nothing, refunded or not"
