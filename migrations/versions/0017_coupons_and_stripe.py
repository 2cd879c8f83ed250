"""Coupons and Stripe: attribution without a click

- coupons: an affiliate's codes in a program (requested, active, declined, retired), matched without regard to case.
- programs.code_precedence: whether a coupon or another affiliate's qualifying click wins when both exist;
  programs.stripe_webhook_secret: verifies the program's Stripe events.
- conversions.coupon_id / coupon_with_click: the coupon a conversion used, and whether its affiliate had a click too.
- stripe_events (once per Stripe event id), stripe_customers (a referred customer and their subscription),
  stripe_payments (which sale a charge became, for its refunds).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("code_key", sa.String(length=40), nullable=False),
        sa.Column("discount_text", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stripe_promotion_code", sa.String(length=64), nullable=True),
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("partner_groups.id"), nullable=True),
        sa.Column("created_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("program_id", "code_key", name="uq_coupons_program_code"),
    )
    op.create_index("ix_coupons_affiliate_id", "coupons", ["affiliate_id"])
    op.create_index("ix_coupons_program_promotion", "coupons", ["program_id", "stripe_promotion_code"])
    with op.batch_alter_table("programs") as batch_op:
        batch_op.add_column(sa.Column("code_precedence", sa.String(length=8), server_default="click", nullable=False))
        batch_op.add_column(sa.Column("stripe_webhook_secret", sa.String(length=200), nullable=True))
    # Added in place, not by copying the table (SQLite's rollup triggers name conversions); SQLite takes the
    # reference only inline.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE conversions ADD COLUMN coupon_id INTEGER REFERENCES coupons (id)")
    else:
        op.add_column("conversions", sa.Column("coupon_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_conversions_coupon_id", "conversions", "coupons", ["coupon_id"], ["id"])
    op.add_column("conversions", sa.Column("coupon_with_click", sa.Boolean(), nullable=True))
    op.create_index("ix_conversions_coupon_at", "conversions", ["coupon_id", "occurred_at"])
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("waiting_for", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("conversion_id", BIG_ID, sa.ForeignKey("conversions.id"), nullable=True),
        sa.UniqueConstraint("program_id", "event_id", name="uq_stripe_events_program_event"),
    )
    op.create_index("ix_stripe_events_waiting_for", "stripe_events", ["waiting_for"])
    op.create_table(
        "stripe_customers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=False),
        sa.Column("click_id", sa.String(length=32), nullable=True),
        sa.Column("referral_code", sa.String(length=64), nullable=True),
        sa.Column("coupon", sa.String(length=40), nullable=True),
        sa.Column("subscription_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("program_id", "customer_id", name="uq_stripe_customers_program_customer"),
    )
    op.create_table(
        "stripe_payments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("payment_intent", sa.String(length=255), nullable=True),
        sa.Column("charge", sa.String(length=255), nullable=True),
        sa.Column("invoice", sa.String(length=255), nullable=True),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
    )
    for column in ("payment_intent", "charge", "invoice"):
        op.create_index(f"ix_stripe_payments_{column}", "stripe_payments", [column])


def downgrade():
    op.drop_table("stripe_payments")
    op.drop_table("stripe_customers")
    op.drop_table("stripe_events")
    op.drop_index("ix_conversions_coupon_at", table_name="conversions")
    op.drop_column("conversions", "coupon_with_click")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_conversions_coupon_id", "conversions", type_="foreignkey")
    op.drop_column("conversions", "coupon_id")
    # In place (SQLite 3.35+): copying programs would break the tables that refer to it.
    op.drop_column("programs", "stripe_webhook_secret")
    op.drop_column("programs", "code_precedence")
    op.drop_table("coupons")
