"""Stripe payments' amounts in 64 bits

A Stripe payment's amount was a 32-bit integer while the sale it records is 64-bit and the API takes
amounts up to 10^11 minor units: a payment above 21,474,836.47 in a two-decimal currency (or 2.1 billion
yen) was refused by PostgreSQL when its record was written, failing the event. The column now holds what
the sale holds.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 22:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("stripe_payments") as batch_op:
        batch_op.alter_column(
            "amount_cents", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade():
    with op.batch_alter_table("stripe_payments") as batch_op:
        batch_op.alter_column(
            "amount_cents", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
