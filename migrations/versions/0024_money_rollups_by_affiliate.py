"""Conversion and commission rollups indexed by affiliate

Both rollup tables' primary keys lead with the day, which serves the staff reports: every affiliate's
rows of a period. An affiliate's own dashboard filters the same range down to one affiliate, so it read
every affiliate's index entries of the period to keep its own: with 100 affiliates a hundredth of what it
read was used, and the work grew with the program's other affiliates. An index on (affiliate, day) lets
it read only its own rows, as ``ix_click_rollups_affiliate`` already did for clicks.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 19:00:00
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_conversion_rollups_affiliate", "conversion_rollups"),
    ("ix_commission_rollups_affiliate", "commission_rollups"),
)


def upgrade():
    for name, table in INDEXES:
        op.create_index(name, table, ["affiliate_id", "day"])


def downgrade():
    for name, table in INDEXES:
        op.drop_index(name, table_name=table)
