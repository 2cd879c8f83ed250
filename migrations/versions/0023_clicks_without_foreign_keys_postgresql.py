"""Clicks stored without foreign-key checks (PostgreSQL)

The ingester stores clicks by COPY, a few thousand a transaction, as fast as the redirector answers them.
On PostgreSQL each stored click also ran three foreign-key checks (its link, affiliate and program), each a
lookup that takes a share lock on the parent row: about 40% of the COPY's time. The three keys are dropped
on PostgreSQL. A click's link, affiliate and program come from the link as the redirector read it from the
database, and links, users and programs are never deleted (an affiliate is suspended or erased in place, a
link paused), so the keys guarded nothing the application can do. SQLite keeps them: its checks cost little,
and dropping them would mean rebuilding the clicks table.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 00:30:00
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

FOREIGN_KEYS = (
    ("fk_clicks_link_id_links", "links", "link_id"),
    ("fk_clicks_affiliate_id_users", "users", "affiliate_id"),
    ("fk_clicks_program_id_programs", "programs", "program_id"),
)


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _, _ in FOREIGN_KEYS:
        op.drop_constraint(name, "clicks", type_="foreignkey")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, parent, column in FOREIGN_KEYS:
        op.create_foreign_key(name, "clicks", parent, [column], ["id"])
