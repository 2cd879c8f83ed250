"""click rollups for reports, their maintenance state, and indexes for purging raw clicks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "click_rollups",
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("program_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("raw_clicks", sa.BigInteger(), nullable=False),
        sa.Column("human_clicks", sa.BigInteger(), nullable=False),
        sa.Column("unique_clicks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "dimension", "day", "affiliate_id", "program_id", "value", name=op.f("pk_click_rollups")
        ),
    )
    with op.batch_alter_table("click_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_click_rollups_affiliate", ["affiliate_id", "dimension", "day"], unique=False)

    rollup_state = op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purged_before", sa.Date(), nullable=True),
        sa.Column("lease_holder", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_state")),
    )
    op.bulk_insert(rollup_state, [{"id": 1}])

    # Purging a click checks that no referral points at it (and the foreign key makes the
    # database check the same on every delete): without this index, each is a full scan.
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_click_id"), ["click_id"], unique=False)


def downgrade():
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_click_id"))
    op.drop_table("rollup_state")
    with op.batch_alter_table("click_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_click_rollups_affiliate")
    op.drop_table("click_rollups")
