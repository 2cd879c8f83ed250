"""Commissions linked to their payout in place (PostgreSQL)

A payout batch links every approved commission of its affiliates to their payout at once: up to a million
rows in one UPDATE of ``commissions.payout_id``. On PostgreSQL each such update wrote a whole new row version
in another page and a new entry in every index of the table, and checked the payout foreign key row by row.

- ``fillfactor = 50`` on commissions: new rows fill pages only half, so the linking update (which changes no
  indexed column) writes each new version beside the old one without touching the indexes (a "HOT" update).
  The table takes about twice the disk it did (a million commissions: about 260 MB instead of 130 MB). It
  applies to pages written from now on; commissions stored before the upgrade keep their full pages (most of
  them are already linked).
- The foreign key from ``commissions.payout_id`` to payouts is dropped on PostgreSQL. The link is written
  only by the batch's own join with payouts (or cleared), payouts are never deleted, and `flask ledger-check`
  proves more than the key did: every linked commission names a payout of its own affiliate and currency.
  SQLite keeps the key (its check costs little there, and dropping it would mean rebuilding the table).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 21:00:00
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_commissions_payout_id_payouts"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE commissions SET (fillfactor = 50)")
    op.drop_constraint(FOREIGN_KEY, "commissions", type_="foreignkey")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_foreign_key(FOREIGN_KEY, "commissions", "payouts", ["payout_id"], ["id"])
    op.execute("ALTER TABLE commissions RESET (fillfactor)")
