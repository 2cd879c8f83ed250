"""payout exports: every provider file recorded; payee names snapshotted; held payouts say why

- payout_exports: who made which file of which batch, when, and the SHA-256 of its bytes.
- payouts.payee_name: the affiliate's name as it was when the batch was built, as the destination
  already is, so every file names the payee the approver saw. Payouts built before keep today's name.
- payouts.hold_reason: why a payout is held (its affiliate is suspended).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 15:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "payout_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("payout_count", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("repeat", sa.Boolean(), nullable=False),
        sa.Column("exported_by_id", sa.Integer(), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["payout_batches.id"], name=op.f("fk_payout_exports_batch_id_payout_batches")
        ),
        sa.ForeignKeyConstraint(["exported_by_id"], ["users.id"], name=op.f("fk_payout_exports_exported_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_exports")),
    )
    op.create_index(op.f("ix_payout_exports_batch_id"), "payout_exports", ["batch_id"])
    op.add_column("payouts", sa.Column("payee_name", sa.String(length=120), server_default="", nullable=False))
    op.add_column("payouts", sa.Column("hold_reason", sa.Text(), nullable=True))
    op.execute("UPDATE payouts SET payee_name = (SELECT users.name FROM users WHERE users.id = payouts.affiliate_id)")


def downgrade():
    with op.batch_alter_table("payouts") as batch_op:
        batch_op.drop_column("hold_reason")
        batch_op.drop_column("payee_name")
    op.drop_index(op.f("ix_payout_exports_batch_id"), table_name="payout_exports")
    op.drop_table("payout_exports")
