"""Commissions without the payout foreign key on SQLite too

A payout batch links every approved commission of its affiliates to their payout in one UPDATE; SQLite checked
the foreign key from ``commissions.payout_id`` to payouts for each of those rows, close to half of that
UPDATE's time. PostgreSQL dropped the key in 0021 for the same reason; now neither database declares it, and
`flask ledger-check` proves every link (it names a payout of the commission's own affiliate and currency).

On SQLite dropping a key means recreating the table: its rollup triggers and its partial unique index are made
again afterwards, as the earlier migrations that recreated commissions did. The upgrade copies every commission
once, with the table locked meanwhile.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 22:00:00
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_commissions_payout_id_payouts"
LIVE_BONUS = "kind = 'performance_bonus' AND status IN ('pending', 'approved', 'paid')"


def _rollup_triggers() -> list[str]:
    """The SQLite rollup triggers of 0006, which recreating commissions drops."""
    spec = importlib.util.spec_from_file_location("rollups_0006", Path(__file__).with_name("0006_click_rollups.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._sqlite_triggers()


def _recreate_commissions(change) -> None:
    triggers = _rollup_triggers()
    for statement in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    op.drop_index("uq_commissions_performance_bonus", table_name="commissions")
    with op.batch_alter_table("commissions") as batch_op:
        change(batch_op)
    op.create_index(
        "uq_commissions_performance_bonus", "commissions", ["affiliate_id", "program_id", "period_start"],
        unique=True, sqlite_where=sa.text(LIVE_BONUS),
    )  # fmt: skip
    for statement in triggers:
        op.execute(statement)


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    _recreate_commissions(lambda batch_op: batch_op.drop_constraint(FOREIGN_KEY, type_="foreignkey"))


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    _recreate_commissions(lambda batch_op: batch_op.create_foreign_key(FOREIGN_KEY, "payouts", ["payout_id"], ["id"]))
