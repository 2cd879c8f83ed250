"""Conversion and commission rollups, kept by database triggers, equal a recount of their tables after any change."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError

from affiliate.extensions import db
from affiliate.models import Commission, CommissionRollup, Conversion, ConversionRollup
from affiliate.services.rollups import money_differences, rebuild_money
from tests.factories import make_admin, make_affiliate, make_program

START = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)  # an hour before midnight, so moves cross days
_orders = itertools.count(1)
CONVERSION_STATUSES = ["pending", "approved", "flagged", "rejected"]

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), st.integers(0, 2), st.integers(0, 180), st.integers(0, 90_000)),
        st.tuples(st.just("signup"), st.integers(0, 2), st.integers(0, 180)),
        st.tuples(st.just("unattributed"), st.integers(0, 180)),
        st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 5_000)),
        st.tuples(st.just("status"), st.integers(0, 50), st.sampled_from(CONVERSION_STATUSES)),
        st.tuples(st.just("move"), st.integers(0, 50), st.integers(-180, 180)),
        st.tuples(st.just("reassign"), st.integers(0, 50), st.integers(0, 2)),
        st.tuples(st.just("commission"), st.integers(0, 50), st.integers(0, 2), st.integers(1, 9_000)),
        st.tuples(
            st.just("commission_status"),
            st.integers(0, 50),
            st.sampled_from(["pending", "approved", "paid", "rejected", "reversed"]),
        ),
        st.tuples(st.just("delete_commission"), st.integers(0, 50)),
    ),
    min_size=8,
    max_size=60,
)


def _world(app):
    admin = make_admin(app)
    return [make_program(app, admin).id], [make_affiliate(app).id for _ in range(3)]


def _apply(op, programs, people) -> None:
    """One change to conversions or commissions, straight through the ORM, as any code path could make it."""
    session = db.session
    sales = session.scalars(select(Conversion).where(Conversion.type == "sale").order_by(Conversion.id)).all()
    conversions = session.scalars(select(Conversion).order_by(Conversion.id)).all()
    commissions = session.scalars(select(Commission).order_by(Commission.id)).all()
    kind = op[0]
    if kind in ("sale", "signup", "unattributed"):
        minutes = op[-2] if kind == "sale" else op[-1]
        session.add(
            Conversion(
                program_id=programs[0],
                type="signup" if kind == "signup" else "sale",
                order_id=f"O{next(_orders)}",
                amount_cents=op[3] if kind == "sale" else 0,
                currency="USD",
                affiliate_id=None if kind == "unattributed" else people[op[1]],
                occurred_at=START + timedelta(minutes=minutes),
                created_at=START,
                status="pending",
            )
        )
    elif kind == "refund" and sales:
        sale = sales[op[1] % len(sales)]
        session.add(
            Conversion(
                program_id=sale.program_id,
                type="refund",
                order_id=f"R{next(_orders)}",
                amount_cents=op[2],
                currency="USD",
                affiliate_id=sale.affiliate_id,
                refund_of_id=sale.id,
                click_id=sale.click_id,
                occurred_at=sale.occurred_at + timedelta(hours=2),
                created_at=START,
                status="approved",
            )
        )
    elif kind == "status" and conversions:
        conversions[op[1] % len(conversions)].status = op[2]
    elif kind == "move" and conversions:
        conversion = conversions[op[1] % len(conversions)]
        conversion.occurred_at = conversion.occurred_at + timedelta(minutes=op[2])
    elif kind == "reassign" and conversions:
        conversions[op[1] % len(conversions)].affiliate_id = people[op[2]]
    elif kind == "commission" and conversions:
        conversion = conversions[op[1] % len(conversions)]
        session.add(
            Commission(
                affiliate_id=people[op[2]],
                program_id=conversion.program_id,
                conversion_id=conversion.id,
                tier_level=1 if people[op[2]] == conversion.affiliate_id else 2,
                rule="test",
                amount_cents=op[3],
                currency="USD",
                status="pending",
                available_at=START,
                created_at=START,
            )
        )
    elif kind == "commission_status" and commissions:
        # A bulk UPDATE, as the payout and approval code does: no ORM event would see it, a trigger does.
        target = commissions[op[1] % len(commissions)]
        session.execute(update(Commission).where(Commission.id == target.id).values(status=op[2]))
    elif kind == "delete_commission" and commissions:
        session.execute(delete(Commission).where(Commission.id == commissions[op[1] % len(commissions)].id))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # a second commission at one level for one conversion: refused, and counted nowhere


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_money_rollups_equal_a_recount_after_any_changes(app, ops):
    with app.app_context():
        db.session.execute(text("DELETE FROM commissions"))
        db.session.execute(text("DELETE FROM conversions"))
        db.session.execute(text("DELETE FROM conversion_rollups"))
        db.session.execute(text("DELETE FROM commission_rollups"))
        db.session.commit()
    if "test_world" not in app.extensions:
        app.extensions["test_world"] = _world(app)
    programs, people = app.extensions["test_world"]
    with app.app_context():
        for op in ops:
            _apply(op, programs, people)
        assert money_differences(db.session) == []


def test_check_finds_drift_and_rebuild_repairs_it(app, runner):
    programs, people = _world(app)
    with app.app_context():
        for op in (
            ("sale", 0, 5, 5000),
            ("sale", 1, 70, 7000),
            ("refund", 0, 1000),
            ("commission", 0, 0, 500),
            ("status", 1, "rejected"),
            ("commission", 1, 2, 300),
        ):
            _apply(op, programs, people)
        assert money_differences(db.session) == []
        stored = _nonzero(db.session)
        db.session.execute(update(ConversionRollup).values(amount_cents=ConversionRollup.amount_cents + 1))
        db.session.execute(delete(CommissionRollup))
        db.session.commit()
        problems = money_differences(db.session)
        assert {table for table, *_ in problems} == {"conversion_rollups", "commission_rollups"}
    check = runner.invoke(args=["rollup", "--check"])
    assert check.exit_code == 1 and "conversion_rollups" in check.output and "commission_rollups" in check.output
    assert runner.invoke(args=["rollup", "--rebuild", "--check"]).exit_code == 0
    with app.app_context():
        assert _nonzero(db.session) == stored
        rebuild_money(db.session)
        db.session.commit()
        assert money_differences(db.session) == []


def _nonzero(session) -> set[tuple]:
    rows = session.execute(select(ConversionRollup.__table__).where(ConversionRollup.conversion_count != 0))
    return {tuple(row) for row in rows}


def test_a_refund_is_filed_under_its_sale_status(app):
    programs, people = _world(app)
    with app.app_context():
        _apply(("sale", 0, 5, 5000), programs, people)
        _apply(("refund", 0, 2000), programs, people)
        _apply(("status", 0, "rejected"), programs, people)
        rows = db.session.execute(
            select(
                ConversionRollup.kind,
                ConversionRollup.status,
                ConversionRollup.conversion_count,
                ConversionRollup.amount_cents,
            ).where(ConversionRollup.conversion_count != 0)
        ).all()
    assert sorted(rows) == [("refund", "rejected", 1, 2000), ("sale", "rejected", 1, 5000)]


def test_the_triggers_exist(app):
    """A batch migration that recreates conversions or commissions on SQLite would drop them silently."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            found = set(db.session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
            expected = {
                f"conversions_rollup_{event}" for event in ("insert", "update", "refunds", "commissions", "delete")
            }
            expected |= {f"commissions_rollup_{event}" for event in ("insert", "update", "delete")}
        else:
            found = set(db.session.scalars(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
            expected = {"conversions_rollup", "commissions_rollup"}
    assert expected <= found
