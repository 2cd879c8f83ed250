"""Clicks partitioned by month on PostgreSQL

On PostgreSQL the clicks table becomes a declaratively partitioned table (range of clicked_at, one
partition per UTC month from the oldest click to a few months ahead, and a default partition), with
every click copied over in the same transaction. Its keys include the partition column: the primary
key is (id, clicked_at) and click_id is unique with clicked_at. conversions.click_id and
referrals.click_id keep pointing at clicks.id, without a foreign key (PostgreSQL cannot reference a
partitioned table by a key without its partition column). SQLite keeps the plain table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 21:30:00
"""

from datetime import UTC, datetime

from alembic import op

from affiliate.services.partitions import DEFAULT, MONTHS_AHEAD, month_of, months_between

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_clicks_link_at": "link_id, clicked_at",
    "ix_clicks_affiliate_at": "affiliate_id, clicked_at, is_bot, fraud_action",
    "ix_clicks_visitor_at": "visitor_id, clicked_at",
    "ix_clicks_fingerprint_at": "fingerprint, clicked_at",
}
FOREIGN_KEYS = {
    "fk_clicks_link_id_links": "link_id) REFERENCES links (id",
    "fk_clicks_affiliate_id_users": "affiliate_id) REFERENCES users (id",
    "fk_clicks_program_id_programs": "program_id) REFERENCES programs (id",
}
POINTING = {"conversions": "fk_conversions_click_id_clicks", "referrals": "fk_referrals_click_id_clicks"}


def upgrade():
    if op.get_context().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    for table, name in POINTING.items():
        op.drop_constraint(name, table, type_="foreignkey")
    run = conn.exec_driver_sql
    run("CREATE TABLE clicks_partitioned (LIKE clicks INCLUDING DEFAULTS) PARTITION BY RANGE (clicked_at)")
    run(f"CREATE TABLE {DEFAULT} PARTITION OF clicks_partitioned DEFAULT")
    now = datetime.now(UTC)
    oldest, newest = conn.exec_driver_sql("SELECT min(clicked_at), max(clicked_at) FROM clicks").one()
    last = month_of(now)
    for _ in range(MONTHS_AHEAD):
        last = month_of(last.end)
    for month in months_between(min(oldest or now, now), max(newest or now, last.start)):
        run(
            f"CREATE TABLE {month.name} PARTITION OF clicks_partitioned "
            f"FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
        )
    run("INSERT INTO clicks_partitioned SELECT * FROM clicks")
    run("ALTER SEQUENCE clicks_id_seq OWNED BY clicks_partitioned.id")
    run("DROP TABLE clicks")
    run("ALTER TABLE clicks_partitioned RENAME TO clicks")
    _keys(run, "(id, clicked_at)", "(click_id, clicked_at)")


def downgrade():
    if op.get_context().dialect.name != "postgresql":
        return
    run = op.get_bind().exec_driver_sql
    run("CREATE TABLE clicks_plain (LIKE clicks INCLUDING DEFAULTS)")
    run("INSERT INTO clicks_plain SELECT * FROM clicks")
    run("ALTER SEQUENCE clicks_id_seq OWNED BY clicks_plain.id")
    run("DROP TABLE clicks")  # its partitions with it
    run("ALTER TABLE clicks_plain RENAME TO clicks")
    _keys(run, "(id)", "(click_id)")
    for table, name in POINTING.items():
        op.create_foreign_key(name, table, "clicks", ["click_id"], ["id"])


def _keys(run, primary: str, unique: str) -> None:
    run(f"ALTER TABLE clicks ADD CONSTRAINT pk_clicks PRIMARY KEY {primary}")
    run(f"ALTER TABLE clicks ADD CONSTRAINT uq_clicks_click_id UNIQUE {unique}")
    for name, columns in FOREIGN_KEYS.items():
        run(f"ALTER TABLE clicks ADD CONSTRAINT {name} FOREIGN KEY ({columns})")
    for name, columns in INDEXES.items():
        run(f"CREATE INDEX {name} ON clicks ({columns})")
