"""Random accruals, approvals, rejections, refunds, plan changes and payouts with crashes keep every invariant."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select, update

from affiliate.extensions import db
from affiliate.models import (
    BatchStatus,
    Commission,
    CommissionPlan,
    Conversion,
    ConversionType,
    Payout,
    PayoutBatch,
    PayoutStatus,
    Program,
    User,
    utcnow,
)
from affiliate.services import accrual, payouts
from affiliate.services.conversions import (
    ConversionError,
    ConversionRequest,
    RefundRequest,
    record_conversion,
    record_refund,
)
from affiliate.services.ledger import balance, check
from tests.factories import make_admin, make_affiliate, make_finance, make_program

_orders = itertools.count()
CRASH = st.sampled_from([False, False, False, True])  # one step in four dies before its COMMIT


def test_ledger_invariants_under_random_operations(app):
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=10, minimum_payout_cents=1)
    affiliates = [make_affiliate(app).id for _ in range(3)]
    maker, checker = make_finance(app).id, make_finance(app).id
    with app.app_context():
        for who in affiliates:
            user = db.session.get(User, who)
            user.payout_method, user.payout_email = "paypal", f"pay-{who}@example.com"
            user.payout_details_changed_at = utcnow() - timedelta(days=30)
        db.session.execute(
            update(CommissionPlan)
            .where(CommissionPlan.program_id == program.id)
            .values(percent_bps=1_250, flat_cents=99)
        )
        db.session.commit()

    class Ledger(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.context = app.app_context()
            self.context.push()
            self.session = db.session
            self.program = self.session.get(Program, program.id)
            self.sales: list[str] = []

        def teardown(self) -> None:
            self.session.rollback()
            self.context.pop()

        def _finish(self, crash: bool) -> None:
            # A crash between the work and its COMMIT leaves nothing behind.
            (self.session.rollback if crash else self.session.commit)()

        @rule(who=st.sampled_from(affiliates), amount=st.integers(1, 50_000), flagged=st.booleans(), crash=CRASH)
        def sale(self, who, amount, flagged, crash):
            order = f"m-{next(_orders)}"
            request = ConversionRequest(type=ConversionType.SALE, order_id=order, amount_cents=amount, currency="USD")
            conversion = record_conversion(self.session, self.program, request, now=utcnow()).conversion
            conversion.affiliate_id, conversion.status = who, "flagged" if flagged else "pending"
            self.session.flush()
            accrual.evaluate_conversion(self.session, conversion, now=utcnow())
            accrual.evaluate_conversion(self.session, conversion, now=utcnow())  # a second run adds nothing
            self._finish(crash)
            if not crash:
                self.sales.append(order)

        @rule(days=st.integers(0, 30), crash=CRASH)
        def approve_due(self, days, crash):
            accrual.approve_due(self.session, now=utcnow() + timedelta(days=days))
            self._finish(crash)

        @rule(pick=st.integers(0, 10**6), crash=CRASH)
        def reject(self, pick, crash):
            # The database is shared by every example: pick by index, so what is drawn never depends on it.
            pending = self.session.scalars(select(Commission).where(Commission.status == "pending")).all()
            if pending:
                accrual.reject(self.session, pending[pick % len(pending)], now=utcnow())
            self._finish(crash)

        @rule(pick=st.integers(0, 10**6), percent=st.integers(1, 120), crash=CRASH)
        def refund(self, pick, percent, crash):
            if not self.sales:
                return
            order = self.sales[pick % len(self.sales)]
            sale = self.session.scalar(select(Conversion).where(Conversion.order_id == order))
            cents = max(1, sale.amount_cents * percent // 100)  # over 100%: more than the sale, refused
            request = RefundRequest(order_id=order, refund_id=f"{order}-r{next(_orders)}", amount_cents=cents)
            try:
                recorded = record_refund(self.session, self.program, request, now=utcnow())
            except ConversionError:
                self.session.rollback()  # more than is left to refund: refused, nothing changes
                return
            accrual.reverse_for_refund(self.session, recorded.conversion, now=utcnow())
            accrual.reverse_for_refund(self.session, recorded.conversion, now=utcnow())  # replayed: no second reversal
            self._finish(crash)

        @rule(percent=st.integers(0, 3_000), crash=CRASH)
        def change_plan(self, percent, crash):
            """A new rate applies to sales from now on; what was earned stays as it was."""
            self.session.execute(
                update(CommissionPlan).where(CommissionPlan.program_id == program.id).values(percent_bps=percent)
            )
            self._finish(crash)

        @rule(crash=CRASH)
        def build_batch(self, crash):
            payouts.build_batch(self.session, "USD", actor=self.session.get(User, maker), now=utcnow())
            self._finish(crash)

        @rule(crash=CRASH)
        def approve_batches(self, crash):
            for batch in self.session.scalars(select(PayoutBatch).where(PayoutBatch.status == BatchStatus.DRAFT)):
                payouts.approve_batch(self.session, batch, approver=self.session.get(User, checker), now=utcnow())
            self._finish(crash)

        @rule(pick=st.integers(0, 10**6), paid=st.booleans(), twice=st.booleans(), crash=CRASH)
        def settle(self, pick, paid, twice, crash):
            approved = self.session.scalars(
                select(Payout).where(Payout.status == PayoutStatus.APPROVED).order_by(Payout.id)
            ).all()
            if not approved:
                return
            payout = approved[pick % len(approved)]
            actor = self.session.get(User, checker)
            for _ in range(2 if twice else 1):  # a second click changes nothing
                if paid:
                    payouts.mark_paid(self.session, payout, reference="PP-1", actor=actor, now=utcnow())
                else:
                    payouts.mark_failed(self.session, payout, reason="bounced", actor=actor, now=utcnow())
            self._finish(crash)

        @invariant()
        def books_balance(self):
            assert check(self.session) == []

        @invariant()
        def balances_equal_the_commissions_they_come_from(self):
            for who in affiliates:
                left = {}
                for commission in self.session.scalars(select(Commission).where(Commission.affiliate_id == who)):
                    remaining = commission.amount_cents - accrual.reversed_cents(self.session, commission.id)
                    if commission.status != "rejected":
                        left[commission.status] = left.get(commission.status, 0) + remaining
                    assert remaining >= 0
                    if commission.status == "reversed":
                        assert remaining == 0
                assert -balance(self.session, f"affiliate_pending:{who}", "USD") == left.get("pending", 0)
                # Earned and approved = still payable + reserved or paid out (a refund after payment is a
                # negative payable balance, carried over to the next payout).
                out = sum(
                    self.session.scalars(
                        select(Payout.amount_cents).where(
                            Payout.affiliate_id == who, Payout.status != PayoutStatus.FAILED
                        )
                    )
                )
                payable = -balance(self.session, f"affiliate_payable:{who}", "USD")
                assert payable + out == left.get("approved", 0) + left.get("paid", 0)

        @invariant()
        def clearing_holds_exactly_the_payouts_in_flight(self):
            in_flight = self.session.scalars(
                select(Payout.amount_cents).where(Payout.status.in_([PayoutStatus.PENDING, PayoutStatus.APPROVED]))
            )
            assert -balance(self.session, "payout_clearing", "USD") == sum(in_flight)
            paid = self.session.scalars(select(Payout.amount_cents).where(Payout.status == PayoutStatus.PAID))
            assert -balance(self.session, "cash", "USD") == sum(paid)
            unpaid = self.session.scalar(
                select(Commission.id)
                .join(Payout, Payout.id == Commission.payout_id)
                .where(Payout.status == PayoutStatus.PAID, Commission.status == "approved")
            )
            assert unpaid is None, "every commission of a paid payout is paid"

        @invariant()
        def expense_equals_what_is_owed(self):
            owed = sum(
                -balance(self.session, f"{kind}:{who}", "USD")
                for who in affiliates
                for kind in ("affiliate_pending", "affiliate_payable")
            )
            out = -balance(self.session, "payout_clearing", "USD") - balance(self.session, "cash", "USD")
            assert balance(self.session, "commission_expense", "USD") == owed + out

        @invariant()
        def refunds_never_exceed_sales(self):
            for sale in self.session.scalars(select(Conversion).where(Conversion.type == "sale")):
                refunds = self.session.scalars(
                    select(Conversion.amount_cents).where(Conversion.refund_of_id == sale.id)
                )
                assert sum(refunds) <= sale.amount_cents

    run_state_machine_as_test(Ledger, settings=settings(max_examples=40, stateful_step_count=25, deadline=None))
