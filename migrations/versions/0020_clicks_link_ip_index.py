"""Clicks indexed by link and address

- ix_clicks_link_ip_at (link_id, ip, clicked_at): the ingester counts, for each click of a batch, the clicks its
  address made on its link in the last hour and minute (the flooding rule). Without it those counts read every click
  of the batch's links in the hour, which on a busy link grows with its traffic and slowed every batch. On
  PostgreSQL the index is made on the partitioned table, so each month's partition gets one. Building it reads every
  stored click and holds off inserts meanwhile: the redirectors keep answering, their clicks wait in the click logs
  and are stored once the upgrade commits.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 18:00:00
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_clicks_link_ip_at", "clicks", ["link_id", "ip", "clicked_at"])


def downgrade():
    op.drop_index("ix_clicks_link_ip_at", table_name="clicks")
