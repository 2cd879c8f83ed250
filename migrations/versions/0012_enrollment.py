"""enrollment: how affiliates join a program (open, by application, by invitation) and where each stands

Existing programs stay open, as they were.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 16:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("programs") as batch_op:
        batch_op.add_column(sa.Column("enrollment", sa.String(length=16), server_default="open", nullable=False))
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.UniqueConstraint("program_id", "affiliate_id", name="uq_enrollments_program_affiliate"),
    )
    op.create_index("ix_enrollments_program_id", "enrollments", ["program_id"])
    op.create_index("ix_enrollments_affiliate_id", "enrollments", ["affiliate_id"])


def downgrade():
    op.drop_table("enrollments")
    with op.batch_alter_table("programs") as batch_op:
        batch_op.drop_column("enrollment")
