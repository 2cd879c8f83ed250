"""conversion speed: the affiliate's latest conversions in a program read from one index

Revision ID: 0006c
Revises: 0005
Create Date: 2026-11-24 08:10:00

Screening counts an affiliate's latest 500 conversions in the program and how many came late
after their click. With program, type and click in the index, SQLite reads no conversion row
(about 7x less time on that part; the click's time is still read from the click).
"""

from alembic import op

revision = "0006c"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_conversions_affiliate_program_at",
        "conversions",
        ["affiliate_id", "program_id", "occurred_at", "type", "click_id"],
    )


def downgrade():
    op.drop_index("ix_conversions_affiliate_program_at", table_name="conversions")
