"""Deliveries remember being tried early

When an endpoint answers again, its messages waiting because nobody answered are tried at once instead of waiting
out their backoff. A message that keeps failing while the endpoint answers its others (a receiver whose app fails
on that one message, behind a proxy that answers 502) was woken by every other message's success and spent its
three days of retries in seconds. A delivery now records when it was woken, and is woken early at most once.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-08 03:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("woken_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("woken_at")
