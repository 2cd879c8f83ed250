"""Commissions equal the documented rules: random money histories through the real services, against a model.

The model (tests/money/reference.py) is written from docs/money.md alone. The machine reports sales and
signups (back-dated, repeated customers, member referrals), replays, refunds (some too large), flags,
review and hand decisions, plan versions of every kind, the clock crossing month ends, the money job,
approval by rule and payouts, and after every step compares every commission, every balance and both
invariant checks with the model. The hand-computed stories at the end are the rules at their plainest.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, inspect, select, text, update
from sqlalchemy.engine import make_url

from affiliate.extensions import db
from affiliate.models import (
    BatchStatus,
    Click,
    Commission,
    CommissionPlan,
    CommissionTier,
    Conversion,
    FraudRule,
    LedgerEntry,
    Payout,
    PayoutBatch,
    Program,
    User,
)
from affiliate.services import accrual, ledger, money_checks, payouts, review
from affiliate.services.commissions import PlanTerms, TierRate
from affiliate.services.conversions import (
    ConversionError,
    ConversionRequest,
    IdempotencyConflict,
    RefundRequest,
    record_conversion,
    record_refund,
)
from affiliate.services.fraud import DEFAULT_RULES
from affiliate.services.plans import save_plan
from tests.factories import make_admin, make_affiliate, make_finance, make_link, make_program, make_user
from tests.money import reference
from tests.money.reference import Plan, Tier

START = datetime(2030, 1, 27, 9, 0, tzinfo=UTC)  # four days before a month ends
FIRST_PLAN = START - timedelta(days=90)
EXAMPLES = int(os.environ.get("CLICKTRAIL_MONEY_EXAMPLES", "70"))  # per currency: three currencies per database
STEPS = int(os.environ.get("CLICKTRAIL_MONEY_STEPS", "30"))
CURRENCIES = ("USD", "JPY", "KWD")
LARGE = {"USD": 50_000, "JPY": 50_000, "KWD": 500_000}  # a large order in minor units
CUSTOMERS = ("c1", "c2", "c3")


@dataclass(frozen=True)
class World:
    """The people and programs every history starts from: made once, restored before each history."""

    admin: int
    maker: int
    checker: int
    affiliates: tuple[int, ...]  # active affiliates who earn
    recruiter: dict[int, int | None]  # the active affiliate who recruited each (second tier)
    members: tuple[int, ...]
    referred_by: dict[int, int | None]
    programs: dict[str, int]  # by currency
    links: dict[tuple[int, int], int]  # (program, affiliate) -> link
    restore: object = field(compare=False)  # puts the database back as it was made


def build_world(app: Flask, postgres) -> World:
    """Users, recruitment, programs (fraud rules off, no plan yet) and links; then a way back to this state."""
    admin, maker, checker = make_admin(app), make_finance(app), make_finance(app)
    affiliates = [make_affiliate(app) for _ in range(4)]
    suspended = make_affiliate(app, status="suspended")
    members = [make_user(app, role="member") for _ in range(4)]
    a0, a1, a2, a3 = (a.id for a in affiliates)
    # a1 was recruited by a0 and a2 by a1; a3 by a suspended affiliate, who earns no second tier.
    recruited_by = {a0: None, a1: a0, a2: a1, a3: suspended.id}
    referred_by = dict(zip((m.id for m in members), (a0, a1, None, a3), strict=True))
    programs = {
        currency: make_program(app, admin, currency=currency, hold_days=10, minimum_payout_cents=1)
        for currency in CURRENCIES
    }
    links = {(p.id, a.id): make_link(app, a, p).id for p in programs.values() for a in affiliates}
    programs = {currency: program.id for currency, program in programs.items()}
    with app.app_context():
        for who, recruiter in [*recruited_by.items(), *referred_by.items()]:
            db.session.execute(update(User).where(User.id == who).values(referred_by_id=recruiter))
        db.session.execute(
            update(User)
            .where(User.id.in_([a0, a1, a2, a3]))
            .values(
                payout_method="paypal",
                payout_email="payouts@example.com",
                payout_details_changed_at=START - timedelta(days=90),
            )
        )
        for program in programs.values():
            for name in DEFAULT_RULES:
                db.session.add(FraudRule(program_id=program, rule=name, action="off", weight=0, settings="{}"))
        db.session.execute(delete(CommissionTier))
        db.session.execute(delete(CommissionPlan))  # each history saves its own versions
        db.session.commit()
    restore = _restorer(app, postgres)
    return World(
        admin=admin.id,
        maker=maker.id,
        checker=checker.id,
        affiliates=(a0, a1, a2, a3),
        recruiter={a0: None, a1: a0, a2: a1, a3: None},
        members=tuple(m.id for m in members),
        referred_by=referred_by,
        programs=programs,
        links=links,
        restore=restore,
    )


def _restorer(app: Flask, postgres):
    """SQLite: a copy of the file to put back. PostgreSQL: truncate every table the world left empty."""
    with app.app_context():
        uri = db.engine.url
        if postgres is None:
            path = Path(make_url(str(uri)).database)
            saved = path.with_suffix(".world")
            for engine in db.engines.values():
                engine.dispose()
            shutil.copyfile(path, saved)

            def restore() -> None:
                with app.app_context():
                    db.session.remove()
                    for engine in db.engines.values():
                        engine.dispose()
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                shutil.copyfile(saved, path)

            return restore
        tables = inspect(db.engine).get_table_names()
        with db.engine.connect() as connection:
            empty = [
                name
                for name in tables
                if name != "alembic_version"
                and connection.execute(text(f'SELECT NOT EXISTS (SELECT 1 FROM "{name}")')).scalar()
            ]
        deletes = [text(f'DELETE FROM "{name}"') for name in empty]

        def restore() -> None:
            with app.app_context():
                db.session.remove()
                with db.engine.begin() as connection:
                    # The ledger refuses deletes by trigger; replica mode skips triggers (and so foreign key
                    # checks) for this reset only. DELETE: a few rows each, far cheaper than TRUNCATE.
                    connection.execute(text("SET LOCAL session_replication_role = replica"))
                    for statement in deletes:
                        connection.execute(statement)

        return restore


@pytest.fixture
def world(app, postgres) -> World:
    return build_world(app, postgres)


def plan_terms(plan: Plan) -> PlanTerms:
    """The service's input for the same terms the model holds."""
    return PlanTerms(
        flat_cents=plan.flat,
        percent_bps=plan.bps,
        tier_basis=plan.basis,
        tier_scope=plan.scope,
        tiers=tuple(TierRate(t.threshold, t.bps, t.flat) for t in plan.tiers),
        second_tier_bps=plan.second_tier_bps,
        recurring_months=plan.recurring_months,
        referrer_reward_cents=plan.referrer_reward,
        referee_reward_cents=plan.referee_reward,
        bonus_threshold=plan.bonus_threshold,
        bonus_cents=plan.bonus,
    )


class Books:
    """One program's money driven through the real services and the reference model side by side."""

    def __init__(self, app: Flask, world: World, currency: str, *, hold_days: int) -> None:
        self.app, self.world, self.currency = app, world, currency
        self.program_id = world.programs[currency]
        self.session = db.session
        self.session.execute(update(Program).where(Program.id == self.program_id).values(hold_days=hold_days))
        self.session.commit()
        self.changed = False  # whether anything was written since the last comparison
        self.now = START
        self.model = reference.Model(
            hold_days=hold_days, recruiter=dict(world.recruiter), referred_by=dict(world.referred_by)
        )
        self.numbers = itertools.count(1)
        self.reports: dict[str, tuple[ConversionRequest, int]] = {}  # order -> (request, conversion id)
        self.orders: dict[int, str] = {}  # conversion id -> order, to name conversions in messages
        self.commission_ids: list[int] = []  # the database row of each model commission, by position
        self.payout_ids: list[int] = []  # the database row of each model payout, by position
        self.signed_up: set[int] = set()
        self.plan_starts: set[tuple[int | None, datetime]] = set()

    def commit(self) -> None:
        self.session.commit()
        self.changed = True

    @property
    def program(self) -> Program:
        return self.session.get(Program, self.program_id)

    # What happens

    def plan(self, plan: Plan, *, affiliate: int | None = None, effective_from: datetime | None = None) -> None:
        """A new version from ``effective_from`` (a first plan is saved as of that moment: never for the past)."""
        effective_from = effective_from or self.now
        save_plan(
            self.session,
            self.program_id,
            plan_terms(plan),
            affiliate_id=affiliate,
            effective_from=effective_from,
            actor_id=self.world.admin,
            now=min(self.now, effective_from),
        )
        self.session.commit()
        self.model.add_plan(affiliate, effective_from, plan)
        self.plan_starts.add((affiliate, effective_from))

    def report(
        self,
        who: int,
        amount: int,
        *,
        kind: str = "sale",
        customer: str | None = None,
        occurred_at: datetime | None = None,
        click_before: timedelta = timedelta(minutes=5),
        member: int | None = None,
        flag: bool = False,
        order: str | None = None,
    ) -> int:
        """A signup or sale through the conversion service, credited by a click on ``who``'s link."""
        occurred_at = occurred_at or self.now
        number = next(self.numbers)
        click = Click(
            click_id=f"mc{number}",
            link_id=self.world.links[(self.program_id, who)],
            affiliate_id=who,
            program_id=self.program_id,
            clicked_at=occurred_at - click_before,
        )
        self.session.add(click)
        self.session.flush()
        order = order or (f"member-{member}" if member else f"{kind}-{number}")
        request = ConversionRequest(
            type=kind,
            order_id=order,
            amount_cents=amount,
            currency=self.currency,
            customer_external_id=f"member-{member}" if member else customer,
            click_id=click.click_id,
            occurred_at=occurred_at,
            customer_user_id=member,
        )
        recorded = record_conversion(self.session, self.program, request, now=self.now)
        conversion = recorded.conversion
        assert recorded.created
        if flag:
            conversion.status = "flagged"  # as a fraud rule would have it
        self.session.flush()
        self.model.record(
            reference.Conversion(
                id=conversion.id,
                type=kind,
                amount=amount,
                affiliate=conversion.affiliate_id,
                customer=None if member else customer,
                member=member,
                occurred_at=occurred_at,
                created_at=self.now,
                status=conversion.status,
            )
        )
        self.commit()
        self.reports[order] = (request, conversion.id)
        self.orders[conversion.id] = order
        if member:
            self.signed_up.add(member)
        return conversion.id

    def replay(self, order: str, *, other_amount: bool = False) -> None:
        """The same report again is answered from the stored row; the same key with other data is refused."""
        request, conversion_id = self.reports[order]
        if other_amount:
            changed = ConversionRequest(**{**request.__dict__, "amount_cents": request.amount_cents + 1})
            with pytest.raises(IdempotencyConflict):
                record_conversion(self.session, self.program, changed, now=self.now)
            self.session.rollback()
            return
        recorded = record_conversion(self.session, self.program, request, now=self.now)
        assert (recorded.created, recorded.conversion.id) == (False, conversion_id)
        self.session.commit()

    def refund(self, order: str, amount: int | None) -> bool:
        """A refund through the service; the model says whether it must be accepted."""
        _, sale_id = self.reports[order]
        request = RefundRequest(
            order_id=order, refund_id=f"rf{next(self.numbers)}", amount_cents=amount, occurred_at=self.now
        )
        try:
            record_refund(self.session, self.program, request, now=self.now)
        except ConversionError as error:
            self.session.rollback()
            accepted = False
            assert error.code == "refund_exceeds_sale", error.code
        else:
            self.commit()
            accepted = True
        expected = self.model.refund(sale_id, amount)
        assert accepted == expected, f"refund of {amount} on {order}: accepted {accepted}, the rules say {expected}"
        return accepted

    def flag(self, conversion_id: int) -> None:
        self.session.execute(update(Conversion).where(Conversion.id == conversion_id).values(status="flagged"))
        self.commit()
        self.model.conversions[conversion_id].status = "flagged"

    def review(self, conversion_id: int, decision: str, reopen: bool = False) -> None:
        changed = review.decide(
            self.session,
            [conversion_id],
            decision,
            actor_id=self.world.checker,
            note="found in review",
            now=self.now,
            reopen=reopen,
        )
        self.commit()
        assert changed == [conversion_id]
        self.model.decide(conversion_id, decision)

    def hand(self, position: int, decision: str) -> bool:
        """Finance approves or rejects one commission by hand."""
        row = self.session.get(Commission, self.commission_ids[position])
        act = accrual.approve if decision == "approve" else accrual.reject
        done = act(self.session, row, now=self.now, actor_id=self.world.checker)
        self.commit()
        model_commission = self.model.commissions[position]
        expected = (self.model.approve if decision == "approve" else self.model.reject)(model_commission)
        assert done == expected, f"{decision} by hand of {self.describe(position)}: {done}, the rules say {expected}"
        return done

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def run(self) -> None:
        """The money job; its new commissions are matched to the model's by what they are."""
        accrual.run(self.session, now=self.now)
        self.commit()
        self.model.run(self.now)
        self.match_new_commissions()
        self.compare(reversals=True)

    def approve_due(self) -> None:
        approved = accrual.approve_due(self.session, now=self.now)
        self.commit()
        expected = self.model.approve_due(self.now)
        assert approved == expected, f"approve_due approved {approved}, the rules say {expected}"

    def build_batch(self) -> None:
        maker = self.session.get(User, self.world.maker)
        batch, _ = payouts.build_batch(self.session, self.currency, actor=maker, now=self.now)
        self.commit()
        built = self.model.build_batch(list(self.world.affiliates), minimum=1)
        got = (
            {}
            if batch is None
            else dict(
                self.session.execute(
                    select(Payout.affiliate_id, Payout.amount_cents).where(Payout.batch_id == batch.id)
                ).all()
            )
        )
        assert got == {who: self.model.payouts[n].amount for who, n in built.items()}, "payout amounts"
        if batch is not None:
            ids = dict(
                self.session.execute(select(Payout.affiliate_id, Payout.id).where(Payout.batch_id == batch.id)).all()
            )
            for who, number in sorted(built.items(), key=lambda item: item[1]):
                assert number == len(self.payout_ids)
                self.payout_ids.append(ids[who])

    def approve_batches(self) -> None:
        checker = self.session.get(User, self.world.checker)
        for batch in self.session.scalars(select(PayoutBatch).where(PayoutBatch.status == BatchStatus.DRAFT)).all():
            payouts.approve_batch(self.session, batch, approver=checker, now=self.now)
            members = set(self.session.scalars(select(Payout.id).where(Payout.batch_id == batch.id)))
            self.model.approve_batch([n for n, payout_id in enumerate(self.payout_ids) if payout_id in members])
        self.commit()

    def settle(self, number: int, paid: bool) -> None:
        payout = self.session.get(Payout, self.payout_ids[number])
        actor = self.session.get(User, self.world.checker)
        if paid:
            done = payouts.mark_paid(self.session, payout, reference="PP-1", actor=actor, now=self.now)
            expected = self.model.mark_paid(number)
        else:
            done = payouts.mark_failed(self.session, payout, reason="bounced", actor=actor, now=self.now)
            expected = self.model.mark_failed(number)
        self.commit()
        assert done == expected

    # What is compared

    def describe(self, position: int) -> str:
        c = self.model.commissions[position]
        return (
            f"{c.kind} of {self.orders.get(c.conversion, c.conversion)} for user {c.beneficiary} "
            f"(level {c.level}): {c.amount}"
        )

    def match_new_commissions(self) -> None:
        """Pair the job's new rows with the model's new commissions, or say which differ."""
        known = set(self.commission_ids)
        rows = [
            row
            for row in self.session.scalars(
                select(Commission).where(Commission.program_id == self.program_id).order_by(Commission.id)
            )
            if row.id not in known
        ]
        fresh = range(len(self.commission_ids), len(self.model.commissions))
        wanted: dict[tuple, list[int]] = {}
        for position in fresh:
            c = self.model.commissions[position]
            key = (c.conversion, c.beneficiary, c.level, c.kind, c.amount, c.available_at)
            wanted.setdefault(key, []).append(position)
        unexpected = []
        pairs = {}
        for row in rows:
            key = (row.conversion_id, row.affiliate_id, row.tier_level, row.kind, row.amount_cents, row.available_at)
            if wanted.get(key):
                pairs[wanted[key].pop(0)] = row.id
            else:
                unexpected.append(
                    f"{row.kind} of {self.orders.get(row.conversion_id)} for user {row.affiliate_id} "
                    f"(level {row.tier_level}): {row.amount_cents}, due {row.available_at}"
                )
        missing = [
            f"{self.describe(p)}, due {self.model.commissions[p].available_at}"
            for positions in wanted.values()
            for p in positions
        ]
        assert not unexpected and not missing, (
            "the money job's commissions differ from the rules:\n  the code made: "
            + ("; ".join(unexpected) or "-")
            + "\n  the rules want: "
            + ("; ".join(missing) or "-")
        )
        self.commission_ids.extend(pairs[p] for p in fresh)

    def compare(self, *, reversals: bool = False) -> None:
        """Every commission's state, every balance, every conversion's evaluation, and both checks."""
        self.changed = False
        session = self.session
        problems = money_checks.check(session) + ledger.check(session)
        assert problems == [], problems
        rows = {
            row.id: row for row in session.scalars(select(Commission).where(Commission.program_id == self.program_id))
        }
        assert set(rows) == set(self.commission_ids), "commissions made outside the money job"
        differences = []
        for position, commission_id in enumerate(self.commission_ids):
            c, row = self.model.commissions[position], rows[commission_id]
            payout = None if c.payout is None else self.payout_ids[c.payout]
            if (row.status, row.payout_id) != (c.status, payout):
                differences.append(
                    f"{self.describe(position)}: {row.status}, payout {row.payout_id}; "
                    f"the rules say {c.status}, payout {payout}"
                )
            if reversals and c.taken_back_by in (None, "refund"):
                taken = accrual.reversed_cents(session, commission_id)
                if taken != c.reversed:
                    differences.append(
                        f"{self.describe(position)}: refunds reversed {taken}, the rules say {c.reversed}"
                    )
        assert not differences, "\n".join(differences)
        owed = dict(
            session.execute(
                select(LedgerEntry.account, func.sum(LedgerEntry.amount_cents))
                .where(LedgerEntry.currency == self.currency)
                .group_by(LedgerEntry.account)
            ).all()
        )
        people = {*self.world.affiliates, *self.world.members}
        for who in sorted(people):
            got = (-int(owed.get(f"affiliate_pending:{who}", 0)), -int(owed.get(f"affiliate_payable:{who}", 0)))
            want = (self.model.pending[who], self.model.payable[who])
            assert got == want, f"user {who}: pending, payable {got}; the rules say {want}"
        states = dict(session.execute(select(Payout.id, Payout.status)).all())
        assert [states[i] for i in self.payout_ids] == [p.status for p in self.model.payouts]
        conversions = session.execute(
            select(Conversion.id, Conversion.status, Conversion.evaluated_at).where(
                Conversion.program_id == self.program_id, Conversion.type != "refund"
            )
        ).all()
        got = {row.id: (row.status, row.evaluated_at is not None) for row in conversions}
        want = {c.id: (c.status, c.evaluated is not None) for c in self.model.conversions.values()}
        assert got == want, "conversion status or evaluation differs"

    def earned(self, conversion_id: int) -> tuple[int, int]:
        """(gross, net of reversals) of the conversion's live and reversed tier-1 commissions, from the database."""
        gross = net = 0
        for row in self.session.scalars(
            select(Commission).where(Commission.conversion_id == conversion_id, Commission.tier_level == 1)
        ):
            if row.status == "rejected":
                continue
            gross += row.amount_cents
            net += row.amount_cents - (
                row.amount_cents if row.status == "reversed" else accrual.reversed_cents(self.session, row.id)
            )
        return gross, net


# The machine


def amounts(currency: str):
    return st.one_of(st.integers(1, 3), st.integers(1, LARGE[currency]))


@st.composite
def plans(draw, currency: str) -> Plan:
    """A plan of any kind: flat, percent, tiers (non-monotone too), second tier, recurring, rewards, a bonus."""
    large = LARGE[currency]
    bps = st.one_of(st.just(0), st.sampled_from([500, 1_000, 2_000, 5_000]), st.integers(1, 10_000))
    flat = st.one_of(st.just(0), st.integers(1, large // 20))
    basis = draw(st.sampled_from(["count", "revenue"]))
    thresholds = st.integers(1, 5) if basis == "count" else st.integers(1, 3 * large)
    tiers = tuple(Tier(t, draw(bps), draw(flat)) for t in sorted(draw(st.sets(thresholds, max_size=3))))
    bonus = st.fixed_dictionaries({"bonus_threshold": thresholds, "bonus": st.integers(1, large // 20)})
    bonuses = st.one_of(st.just({}), bonus)
    return Plan(
        flat=draw(flat),
        bps=draw(bps),
        basis=basis,
        scope=draw(st.sampled_from(["whole_period", "marginal"])),
        tiers=tiers,
        second_tier_bps=draw(st.one_of(st.just(0), bps)),
        recurring_months=draw(st.sampled_from([0, 1, 2, None])),
        referrer_reward=draw(st.one_of(st.just(0), flat)),
        referee_reward=draw(st.one_of(st.just(0), flat)),
        **draw(bonuses),
    )


BACKDATE = st.one_of(
    st.just(timedelta(0)),
    st.integers(1, 72).map(lambda h: timedelta(hours=h)),
    st.integers(1, 20).map(lambda d: timedelta(days=d)),
    st.integers(-3, 3).map(lambda s: ("month edge", s)),  # just around the first instant of this month
)
CLICK_BEFORE = st.sampled_from([timedelta(seconds=1), timedelta(minutes=5), timedelta(hours=3), timedelta(days=2)])


def machine_for(app: Flask, world: World, currency: str):
    class Money(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            world.restore()
            self.context = app.app_context()
            self.context.push()
            self.books: Books | None = None

        def teardown(self) -> None:
            db.session.rollback()
            self.context.pop()

        @initialize(hold_days=st.sampled_from([0, 3, 30]), plan=plans(currency))
        def start(self, hold_days, plan):
            self.books = Books(app, world, currency, hold_days=hold_days)
            self.books.plan(plan, effective_from=FIRST_PLAN)

        def occurred(self, backdate) -> datetime:
            now = self.books.now
            if isinstance(backdate, tuple):
                month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                moment = month + timedelta(seconds=backdate[1])
                return moment if now - timedelta(days=20) <= moment <= now else now
            return now - backdate

        @rule(
            who=st.integers(0, 3),
            data=st.data(),
            customer=st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
            backdate=BACKDATE,
            click_before=CLICK_BEFORE,
            flag=st.sampled_from([False, False, False, True]),
        )
        def sale(self, who, data, customer, backdate, click_before, flag):
            amount = data.draw(amounts(currency))
            self.books.report(
                world.affiliates[who],
                amount,
                customer=customer,
                occurred_at=self.occurred(backdate),
                click_before=click_before,
                flag=flag,
            )

        @rule(
            who=st.integers(0, 3),
            amount=st.sampled_from([0, 0, 1, 500]),
            backdate=BACKDATE,
            flag=st.sampled_from([False, False, False, True]),
        )
        def signup(self, who, amount, backdate, flag):
            self.books.report(
                world.affiliates[who], amount, kind="signup", occurred_at=self.occurred(backdate), flag=flag
            )

        @rule(who=st.integers(0, 3), member=st.integers(0, 3), backdate=BACKDATE)
        def member_signup(self, who, member, backdate):
            member = world.members[member]
            if member not in self.books.signed_up:
                self.books.report(
                    world.affiliates[who], 0, kind="signup", member=member, occurred_at=self.occurred(backdate)
                )

        @precondition(lambda self: self.books and self.books.reports)
        @rule(pick=st.integers(0, 10**6), other_amount=st.booleans())
        def replay(self, pick, other_amount):
            orders = sorted(self.books.reports)
            self.books.replay(orders[pick % len(orders)], other_amount=other_amount)

        @precondition(lambda self: self.books and any(c.type == "sale" for c in self.books.model.conversions.values()))
        @rule(pick=st.integers(0, 10**6), how=st.sampled_from(["rest", "part", "part", "too much"]), data=st.data())
        def refund(self, pick, how, data):
            sales = [c for c in self.books.model.conversions.values() if c.type == "sale"]
            sale = sales[pick % len(sales)]
            left = sale.amount - sale.refunded
            if how == "rest":
                amount = None
            elif how == "part":
                amount = data.draw(st.integers(1, sale.amount))
            else:
                amount = left + data.draw(st.integers(1, 3))
            self.books.refund(self.books.orders[sale.id], amount)

        @rule(pick=st.integers(0, 10**6))
        def flag_fresh(self, pick):
            fresh = [
                c.id for c in self.books.model.conversions.values() if c.evaluated is None and c.status == "pending"
            ]
            if fresh:
                self.books.flag(fresh[pick % len(fresh)])

        @rule(pick=st.integers(0, 10**6), decision=st.sampled_from(["approve", "approve", "reject"]))
        def review_flagged(self, pick, decision):
            flagged = [c.id for c in self.books.model.conversions.values() if c.status == "flagged"]
            if flagged:
                self.books.review(flagged[pick % len(flagged)], decision)

        @rule(pick=st.integers(0, 10**6))
        def reject_earning_conversion(self, pick):
            """Fraud found after the fact: a conversion that has commissions is rejected in review."""
            earning = sorted(
                {
                    c.conversion
                    for c in self.books.model.commissions
                    if self.books.model.conversions[c.conversion].status in ("pending", "approved")
                }
            )
            if earning:
                self.books.review(earning[pick % len(earning)], "reject", reopen=True)

        @rule(pick=st.integers(0, 10**6), decision=st.sampled_from(["approve", "approve", "reject"]))
        def hand_decision(self, pick, decision):
            pending = [n for n, c in enumerate(self.books.model.commissions) if c.status == "pending"]
            if pending:
                self.books.hand(pending[pick % len(pending)], decision)

        @rule(
            plan=plans(currency),
            override=st.one_of(st.none(), st.integers(0, 3)),
            later=st.sampled_from([timedelta(0), timedelta(0), timedelta(hours=5), timedelta(days=3)]),
        )
        def change_plan(self, plan, override, later):
            affiliate = None if override is None else world.affiliates[override]
            starts = self.books.now + later
            if affiliate is not None and (affiliate, starts) in self.books.plan_starts:
                return  # one version of an affiliate's plan per moment
            self.books.plan(plan, affiliate=affiliate, effective_from=starts)

        @rule(
            delta=st.one_of(
                st.integers(1, 48).map(lambda h: timedelta(hours=h)),
                st.integers(1, 40).map(lambda d: timedelta(days=d)),
            )
        )
        def advance(self, delta):
            self.books.advance(delta)

        @rule()
        def run_money_job(self):
            self.books.run()

        @rule()
        def approve_due(self):
            self.books.approve_due()

        @rule()
        def build_batch(self):
            self.books.build_batch()

        @rule()
        def approve_batches(self):
            self.books.approve_batches()

        @rule(pick=st.integers(0, 10**6), paid=st.booleans())
        def settle(self, pick, paid):
            approved = [n for n, p in enumerate(self.books.model.payouts) if p.status == "approved"]
            if approved:
                self.books.settle(approved[pick % len(approved)], paid)

        @invariant()
        def everything_matches_the_rules(self):
            # A step that wrote nothing (the clock, a plan for later, a replay, a refused refund) changes
            # nothing the comparison reads.
            if self.books is not None and self.books.changed:
                self.books.compare()

    return Money


@pytest.mark.parametrize("currency", CURRENCIES)
def test_commissions_equal_the_documented_rules(app, world, currency):
    run_state_machine_as_test(
        machine_for(app, world, currency),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# The rules at their plainest: hand-computed stories, each through the services and the model together.

BASE_10_TIER_20_FROM_3 = Plan(bps=1_000, tiers=(Tier(3, 2_000, 0),))


@pytest.fixture
def books(app, world):
    with app.app_context():
        yield Books(app, world, "USD", hold_days=0)


def test_a_refunded_sale_leaves_the_tier_its_raise_reached(books, world):
    """Base 10%, 20% from 3 sales: A, B, C of 100.00; A refunded in full; D of 100.00."""
    alice = world.affiliates[0]
    books.plan(BASE_10_TIER_20_FROM_3, effective_from=FIRST_PLAN)
    a, b, c = (books.report(alice, 10_000) for _ in range(3))
    books.run()
    assert [books.earned(x) for x in (a, b, c)] == [(2_000, 2_000)] * 3
    books.refund(books.orders[a], None)
    d = books.report(alice, 10_000)
    books.run()
    assert books.earned(a) == (2_000, 0)
    assert sum(books.earned(x)[1] for x in (b, c, d)) == 6_000


def test_a_plan_change_raises_earlier_sales_to_the_tier_a_later_sale_reaches(books, world):
    """A and B earn 10% each; the plan becomes 5% base, 20% from 3; C crosses: A, B, C total 60.00."""
    alice = world.affiliates[0]
    books.plan(Plan(bps=1_000), effective_from=FIRST_PLAN)
    a, b = books.report(alice, 10_000), books.report(alice, 10_000)
    books.run()
    assert books.earned(a) == books.earned(b) == (1_000, 1_000)
    books.advance(timedelta(hours=1))
    books.plan(Plan(bps=500, tiers=(Tier(3, 2_000, 0),)))
    books.advance(timedelta(hours=1))
    c = books.report(alice, 10_000)
    books.run()
    assert sum(books.earned(x)[1] for x in (a, b, c)) == 6_000


def test_a_partial_refund_of_the_crossing_sale_reverses_only_its_own_share(books, world):
    """A 0.50 refund of a 1.00 sale that reached the tier takes back half of its own 0.20, not the raises."""
    alice = world.affiliates[0]
    books.plan(BASE_10_TIER_20_FROM_3, effective_from=FIRST_PLAN)
    a, b, c = (books.report(alice, 100) for _ in range(3))
    books.run()
    books.refund(books.orders[c], 50)
    books.run()
    assert [books.earned(x) for x in (a, b, c)] == [(20, 20), (20, 20), (20, 10)]


def test_a_month_turning_over_neither_counts_nor_reevaluates_the_month_before(books, world):
    """A 0.01 January sale, then February sales: February's volume never reaches back to January."""
    alice = world.affiliates[0]
    books.plan(Plan(bps=1_000, tiers=(Tier(2, 5_000, 0),)), effective_from=FIRST_PLAN)
    january = books.report(alice, 1)
    books.run()
    evaluated = books.session.get(Conversion, january).evaluated_at
    books.advance(timedelta(days=6))  # 2 February
    february = [books.report(alice, 10_000) for _ in range(3)]
    books.run()
    assert books.earned(january) == (0, 0), "1 cent at 10% rounds to nothing, and 50% would have paid 1"
    assert books.session.get(Conversion, january).evaluated_at == evaluated
    assert [books.earned(x)[0] for x in february] == [5_000] * 3


def test_a_sale_reported_late_counts_in_the_month_it_occurred(books, world):
    """A sale dated 31 January reported 3 February counts January's volume, not February's."""
    alice = world.affiliates[0]
    books.plan(Plan(bps=1_000, tiers=(Tier(2, 2_000, 0),)), effective_from=FIRST_PLAN)
    first = books.report(alice, 10_000)  # 27 January
    books.run()
    books.advance(timedelta(days=7))  # 3 February
    february = books.report(alice, 10_000)
    late = books.report(
        alice, 10_000, occurred_at=datetime(2030, 1, 31, 18, 0, tzinfo=UTC), click_before=timedelta(hours=1)
    )
    books.run()
    assert [books.earned(x)[0] for x in (first, late, february)] == [2_000, 2_000, 1_000]


def test_a_new_plan_pays_no_signup_from_before_it(books, world):
    """Adding a 5.00 per signup plan later pays no past signup, even one reported after the change."""
    alice = world.affiliates[0]
    books.plan(Plan(), effective_from=FIRST_PLAN)
    before = books.report(alice, 0, kind="signup")
    books.run()
    books.advance(timedelta(hours=2))
    books.plan(Plan(flat=500))
    books.advance(timedelta(hours=2))
    late = books.report(alice, 0, kind="signup", occurred_at=books.now - timedelta(hours=3))
    after = books.report(alice, 0, kind="signup")
    books.run()
    assert [books.earned(x)[0] for x in (before, late, after)] == [0, 0, 500]


def test_flagged_commissions_wait_and_rejecting_a_paid_one_leaves_the_balance_negative(books, world):
    """A flagged conversion's commission cannot be approved; rejecting a paid one puts the payable below zero."""
    alice = world.affiliates[0]
    books.plan(Plan(bps=1_000), effective_from=FIRST_PLAN)
    held, paid = books.report(alice, 10_000), books.report(alice, 20_000)
    books.run()
    books.flag(held)
    books.advance(timedelta(days=1))
    books.approve_due()
    assert not books.hand(
        books.model.commissions.index(next(c for c in books.model.commissions if c.conversion == held)), "approve"
    )
    books.build_batch()
    books.approve_batches()
    books.settle(0, paid=True)
    books.review(paid, "reject", reopen=True)
    books.compare(reversals=True)
    assert books.session.get(Commission, books.commission_ids[1]).status == "reversed"
    payable = ledger.balance(books.session, f"affiliate_payable:{alice}", "USD")
    assert payable == 2_000, "the affiliate owes back the paid 20.00"
