"""API key scopes, the management API's idempotency records, and audit entries made through a key

- api_keys.scopes: what a key may do. Existing keys get exactly what they could do before,
  "conversions:write refunds:write".
- api_idempotency_keys: the answer to each management request, under the key and its request id.
- audit_log.actor_key_id: the key through which a change was made, when it was.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 05:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

EXISTING_SCOPES = "conversions:write refunds:write"


def upgrade():
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=255), server_default=EXISTING_SCOPES, nullable=False)
        )
    op.create_table(
        "api_idempotency_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("api_key_id", "request_id", name="uq_api_idempotency_keys_key_request"),
    )
    op.create_index("ix_api_idempotency_keys_created_at", "api_idempotency_keys", ["created_at"])
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("actor_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_audit_log_actor_key_id_api_keys", "api_keys", ["actor_key_id"], ["id"]
        )


def downgrade():
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_constraint("fk_audit_log_actor_key_id_api_keys", type_="foreignkey")
        batch_op.drop_column("actor_key_id")
    op.drop_index("ix_api_idempotency_keys_created_at", table_name="api_idempotency_keys")
    op.drop_table("api_idempotency_keys")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("scopes")
