"""Conversions waiting for their click

- conversions.waiting_for_click / waiting_since / waiting_report: a conversion that names a click still in a
  redirector's click log is stored at once and waits for the click (services/late_clicks.py); the click id, since
  when, and the report to attribute again once the click is stored. Indexed on the click id: the ingester looks up
  each batch's clicks in it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-12 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    # Added in place, not by copying the table (SQLite's rollup triggers name conversions).
    op.add_column("conversions", sa.Column("waiting_for_click", sa.String(length=32), nullable=True))
    op.add_column("conversions", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("conversions", sa.Column("waiting_report", sa.Text(), nullable=True))
    op.create_index("ix_conversions_waiting_for_click", "conversions", ["waiting_for_click"])


def downgrade():
    op.drop_index("ix_conversions_waiting_for_click", table_name="conversions")
    # In place (SQLite 3.35+).
    op.drop_column("conversions", "waiting_report")
    op.drop_column("conversions", "waiting_since")
    op.drop_column("conversions", "waiting_for_click")
