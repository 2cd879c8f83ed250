"""partner groups: named groups of a program's affiliates, each with its own plan versions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "partner_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("created_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("program_id", "name", name="uq_partner_groups_program_name"),
    )
    op.create_index("ix_partner_groups_program_id", "partner_groups", ["program_id"])
    op.create_table(
        "group_memberships",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("program_id", sa.Integer(), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("partner_groups.id"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("program_id", "affiliate_id", name="uq_group_memberships_program_affiliate"),
    )
    op.create_index("ix_group_memberships_program_id", "group_memberships", ["program_id"])
    op.create_index("ix_group_memberships_affiliate_id", "group_memberships", ["affiliate_id"])
    op.create_index("ix_group_memberships_group_id", "group_memberships", ["group_id"])
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_commission_plans_group_id_partner_groups", "partner_groups", ["group_id"], ["id"]
        )
        batch_op.drop_constraint("uq_commission_plans_program_affiliate", type_="unique")
        batch_op.create_unique_constraint(
            "uq_commission_plans_program_affiliate", ["program_id", "group_id", "affiliate_id", "effective_from"]
        )


def downgrade():
    with op.batch_alter_table("commission_plans") as batch_op:
        batch_op.drop_constraint("uq_commission_plans_program_affiliate", type_="unique")
        batch_op.create_unique_constraint(
            "uq_commission_plans_program_affiliate", ["program_id", "affiliate_id", "effective_from"]
        )
        batch_op.drop_constraint("fk_commission_plans_group_id_partner_groups", type_="foreignkey")
        batch_op.drop_column("group_id")
    op.drop_table("group_memberships")
    op.drop_table("partner_groups")
