"""fraud signals: ad click ids on clicks, where a conversion came from, the device a user signed in with

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 04:32:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("visitor_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paid_click", sa.String(length=64), nullable=True))
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_ip", sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column("customer_fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("customer_country", sa.String(length=2), nullable=True))
        batch_op.create_index("ix_conversions_customer_ip_at", ["customer_ip", "created_at"], unique=False)
        batch_op.create_index("ix_conversions_customer_device_at", ["customer_fingerprint", "created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index("ix_conversions_customer_device_at")
        batch_op.drop_index("ix_conversions_customer_ip_at")
        batch_op.drop_column("customer_country")
        batch_op.drop_column("customer_fingerprint")
        batch_op.drop_column("customer_ip")
    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.drop_column("paid_click")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_column("visitor_id")
        batch_op.drop_column("fingerprint")
