"""adjustments and performance bonuses: one-off bonuses and clawbacks, and a plan's monthly bonus

- adjustments: a bonus or clawback finance gives an affiliate, with its reason, maker and approver.
- commission_plans.bonus_threshold, bonus_cents: a plan version may pay a bonus once a month when the
  month's sales reach a count or a revenue. Existing versions pay none.
- commissions.kind widens to 32 characters ("performance_bonus"), and commissions.period_start names the
  month a performance bonus was earned in; a partial unique index keeps one live bonus per affiliate,
  program and month.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 10:00:00
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LIVE_BONUS = "kind = 'performance_bonus' AND status IN ('pending', 'approved', 'paid')"


def _rollup_triggers() -> list[str]:
    """The SQLite rollup triggers of 0006, which recreating commissions drops."""
    spec = importlib.util.spec_from_file_location("rollups_0006", Path(__file__).with_name("0006_click_rollups.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._sqlite_triggers()


def _alter_commissions(change) -> None:
    """Run ``change`` on a batch of commissions; on SQLite the table is recreated, so its triggers are too."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    triggers = _rollup_triggers() if sqlite else []
    for statement in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    with op.batch_alter_table("commissions") as batch_op:
        change(batch_op)
    for statement in triggers:
        op.execute(statement)


def upgrade():
    op.create_table(
        "adjustments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("affiliate_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejected_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_note", sa.Text(), nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_adjustments_amount_positive")),
        sa.CheckConstraint("kind IN ('bonus', 'clawback')", name=op.f("ck_adjustments_kind")),
    )
    op.create_index("ix_adjustments_status", "adjustments", ["status"])
    op.create_index("ix_adjustments_affiliate_id", "adjustments", ["affiliate_id"])
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.add_column(sa.Column("bonus_threshold", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("bonus_cents", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_check_constraint(
            op.f("ck_commission_plans_bonus_threshold"), "bonus_threshold IS NULL OR bonus_threshold >= 1"
        )
        batch_op.create_check_constraint(op.f("ck_commission_plans_bonus_cents"), "bonus_cents >= 0")

    def widen(batch_op) -> None:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=32), existing_nullable=False,
            existing_server_default="earning",
        )  # fmt: skip
        batch_op.add_column(sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))

    _alter_commissions(widen)
    op.create_index(
        "uq_commissions_performance_bonus", "commissions", ["affiliate_id", "program_id", "period_start"],
        unique=True, sqlite_where=sa.text(LIVE_BONUS), postgresql_where=sa.text(LIVE_BONUS),
    )  # fmt: skip


def downgrade():
    op.drop_index("uq_commissions_performance_bonus", table_name="commissions")
    # Bonuses are kept as earnings of their sale, as the older schema has no kind for them; step -1 keeps each
    # apart from its sale's own earning (step 0) under the unique key.
    op.execute("UPDATE commissions SET kind = 'earning', step = -1 WHERE kind = 'performance_bonus'")

    def narrow(batch_op) -> None:
        batch_op.drop_column("period_start")
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=32), type_=sa.String(length=16), existing_nullable=False,
            existing_server_default="earning",
        )  # fmt: skip

    _alter_commissions(narrow)
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.drop_constraint(op.f("ck_commission_plans_bonus_cents"), type_="check")
        batch_op.drop_constraint(op.f("ck_commission_plans_bonus_threshold"), type_="check")
        batch_op.drop_column("bonus_cents")
        batch_op.drop_column("bonus_threshold")
    op.drop_index("ix_adjustments_affiliate_id", table_name="adjustments")
    op.drop_index("ix_adjustments_status", table_name="adjustments")
    op.drop_table("adjustments")
