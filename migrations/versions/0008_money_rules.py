"""money rules: conversions evaluated once, raises that belong to their conversion, plan versions, refund ids

- conversions.evaluated_at: when the money job worked out what a conversion earns, even nothing. Every
  conversion that already earned (or was already passed over by the job) is marked evaluated, so no
  plan change pays it again.
- conversions.refund_key: a refund's key is (refunded order, the merchant's refund id), so a refund id can
  never collide with another order's id.
- commissions.kind, step, plan_id, raised_by_id: a tier raise is a commission of the conversion it raises.
- commission_plans.effective_from, created_by_id: a plan change is a new version from a moment on. The
  versions that exist apply from the beginning of time, as they did.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 22:00:00
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BEGINNING = {"sqlite": "2000-01-01 00:00:00.000000", "postgresql": "2000-01-01 00:00:00+00"}


def _rollup_triggers() -> list[str]:
    """The SQLite rollup triggers of 0006, which recreating conversions or commissions drops."""
    spec = importlib.util.spec_from_file_location("rollups_0006", Path(__file__).with_name("0006_click_rollups.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._sqlite_triggers()


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        # Recreating a table that another table's trigger names fails; they are made again at the end.
        for name in _trigger_names():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("conversions") as batch_op:
        batch_op.add_column(sa.Column("refund_key", sa.String(length=128), server_default="", nullable=False))
        batch_op.add_column(sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("counts_for_tiers", sa.Boolean(), nullable=True))
        batch_op.drop_constraint("uq_conversions_program_order_type", type_="unique")
        batch_op.create_unique_constraint(
            "uq_conversions_program_order_type", ["program_id", "order_id", "type", "refund_key"]
        )
    with op.batch_alter_table("commissions") as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="earning", nullable=False))
        batch_op.add_column(sa.Column("step", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("plan_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("raised_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.create_foreign_key("fk_commissions_plan_id_commission_plans", "commission_plans", ["plan_id"], ["id"])
        batch_op.create_foreign_key("fk_commissions_raised_by_id_conversions", "conversions", ["raised_by_id"], ["id"])
        batch_op.drop_constraint("uq_commissions_conversion_level", type_="unique")
        batch_op.create_unique_constraint(
            "uq_commissions_conversion_level", ["conversion_id", "affiliate_id", "tier_level", "kind", "step"]
        )
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.add_column(sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("created_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_commission_plans_created_by_id_users", "users", ["created_by_id"], ["id"])
        batch_op.drop_constraint("uq_commission_plans_program_affiliate", type_="unique")
        batch_op.create_unique_constraint(
            "uq_commission_plans_program_affiliate", ["program_id", "affiliate_id", "effective_from"]
        )
    op.execute(f"UPDATE commission_plans SET effective_from = '{BEGINNING[dialect]}'")
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.alter_column("effective_from", existing_type=sa.DateTime(timezone=True), nullable=False)
    # Conversions the job has already been through: those that earned, and every attributed signup or sale
    # that is not waiting for review (the old job passed over those that earned nothing).
    op.execute(
        "UPDATE conversions SET evaluated_at = created_at, counts_for_tiers = TRUE WHERE type != 'refund' AND affiliate_id IS NOT NULL "
        "AND (status IN ('pending', 'approved') "
        "OR EXISTS (SELECT 1 FROM commissions WHERE commissions.conversion_id = conversions.id))"
    )
    if dialect == "sqlite":
        for statement in _rollup_triggers():
            op.execute(statement)


def _trigger_names() -> list[str]:
    return [statement.split()[2] for statement in _rollup_triggers()]


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in _trigger_names():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.drop_constraint("uq_commission_plans_program_affiliate", type_="unique")
        batch_op.create_unique_constraint("uq_commission_plans_program_affiliate", ["program_id", "affiliate_id"])
        batch_op.drop_constraint("fk_commission_plans_created_by_id_users", type_="foreignkey")
        batch_op.drop_column("created_by_id")
        batch_op.drop_column("effective_from")
    with op.batch_alter_table("commissions") as batch_op:
        batch_op.drop_constraint("uq_commissions_conversion_level", type_="unique")
        batch_op.create_unique_constraint(
            "uq_commissions_conversion_level", ["conversion_id", "affiliate_id", "tier_level"]
        )
        batch_op.drop_constraint("fk_commissions_raised_by_id_conversions", type_="foreignkey")
        batch_op.drop_constraint("fk_commissions_plan_id_commission_plans", type_="foreignkey")
        for column in ("raised_by_id", "plan_id", "step", "kind"):
            batch_op.drop_column(column)
    with op.batch_alter_table("conversions") as batch_op:
        batch_op.drop_constraint("uq_conversions_program_order_type", type_="unique")
        batch_op.create_unique_constraint("uq_conversions_program_order_type", ["program_id", "order_id", "type"])
        batch_op.drop_column("counts_for_tiers")
        batch_op.drop_column("evaluated_at")
        batch_op.drop_column("refund_key")
    if dialect == "sqlite":
        for statement in _rollup_triggers():
            op.execute(statement)
