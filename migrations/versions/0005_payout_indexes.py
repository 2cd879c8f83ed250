"""payout indexes: ledger balances read from the index alone; commissions found by affiliate, not payout

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:55:00

A batch links every approved commission to its payout (about a million rows for 10,000
affiliates); an index on commissions.payout_id doubled that update's cost, and the payout's
commissions are found through (affiliate_id, status) instead. Balances sum amount_cents over an
account range: with the amount in the index, no table row is read.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_commissions_payout_id", table_name="commissions")
    op.drop_index("ix_ledger_entries_account", table_name="ledger_entries")
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account", "currency", "amount_cents"])


def downgrade():
    op.drop_index("ix_ledger_entries_account", table_name="ledger_entries")
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account", "currency"])
    op.create_index("ix_commissions_payout_id", "commissions", ["payout_id"])
