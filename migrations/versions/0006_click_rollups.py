"""rollups for reports: clicks (kept by the ingester), conversions and commissions (kept by triggers)

Also their maintenance state, and indexes for purging raw clicks and for finding a sale's refunds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


CONVERSION_COLUMNS = "day, affiliate_id, program_id, kind, status, currency, conversion_count, amount_cents"
CONVERSION_KEY = "day, affiliate_id, program_id, kind, status, currency"
CONVERSION_ADD = (
    f"ON CONFLICT ({CONVERSION_KEY}) DO UPDATE SET conversion_count = conversion_rollups.conversion_count"
    " + excluded.conversion_count, amount_cents = conversion_rollups.amount_cents + excluded.amount_cents"
)
COMMISSION_COLUMNS = "day, affiliate_id, program_id, status, currency, own, amount_cents"
COMMISSION_KEY = "day, affiliate_id, program_id, status, currency, own"
COMMISSION_ADD = (
    f"ON CONFLICT ({COMMISSION_KEY}) DO UPDATE SET amount_cents = commission_rollups.amount_cents"
    " + excluded.amount_cents"
)
CONVERSION_WATCHED = "occurred_at, affiliate_id, program_id, type, status, currency, amount_cents, refund_of_id"
COMMISSION_WATCHED = "affiliate_id, program_id, conversion_id, status, currency, amount_cents"


def _day(dialect: str, expression: str) -> str:
    """The UTC day of a timestamp: SQLite keeps UTC wall time as text, PostgreSQL a timestamptz."""
    return f"date({expression})" if dialect == "sqlite" else f"(({expression}) AT TIME ZONE 'UTC')::date"


def _conversion(dialect: str, row: str, sign: str) -> str:
    """Add (sign 1) or take out (-1) one conversion; a refund is filed under its sale's status."""
    return (
        f"INSERT INTO conversion_rollups ({CONVERSION_COLUMNS}) "
        f"SELECT {_day(dialect, row + '.occurred_at')}, {row}.affiliate_id, {row}.program_id, {row}.type, "
        f"coalesce((SELECT s.status FROM conversions s WHERE s.id = {row}.refund_of_id), {row}.status), "
        f"{row}.currency, {sign}, {sign} * {row}.amount_cents WHERE {row}.affiliate_id IS NOT NULL {CONVERSION_ADD}"
    )


def _refunds_follow_sale(dialect: str) -> str:
    """When a sale's status changes, move its refunds from the old status to the new."""
    return (
        f"INSERT INTO conversion_rollups ({CONVERSION_COLUMNS}) "
        f"SELECT {_day(dialect, 'r.occurred_at')}, r.affiliate_id, r.program_id, r.type, st.status, r.currency, "
        "sum(st.sign), sum(st.sign * r.amount_cents) FROM conversions r "
        "CROSS JOIN (SELECT OLD.status AS status, -1 AS sign UNION ALL SELECT NEW.status, 1) AS st "
        f"WHERE r.refund_of_id = NEW.id AND r.affiliate_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6 {CONVERSION_ADD}"
    )


def _commission(dialect: str, row: str, sign: str) -> str:
    """Add or take out one commission, on its conversion's day."""
    return (
        f"INSERT INTO commission_rollups ({COMMISSION_COLUMNS}) "
        f"SELECT {_day(dialect, 'v.occurred_at')}, {row}.affiliate_id, {row}.program_id, {row}.status, "
        f"{row}.currency, coalesce({row}.affiliate_id = v.affiliate_id, false), {sign} * {row}.amount_cents "
        f"FROM conversions v WHERE v.id = {row}.conversion_id {COMMISSION_ADD}"
    )


def _commissions_follow_conversion(dialect: str) -> str:
    """When a conversion's day or affiliate changes, move its commissions (netted per key in one statement)."""
    return (
        f"INSERT INTO commission_rollups ({COMMISSION_COLUMNS}) "
        f"SELECT {_day(dialect, 'st.occurred_at')}, m.affiliate_id, m.program_id, m.status, m.currency, "
        "coalesce(m.affiliate_id = st.affiliate_id, false), sum(st.sign * m.amount_cents) FROM commissions m "
        "CROSS JOIN (SELECT OLD.occurred_at AS occurred_at, OLD.affiliate_id AS affiliate_id, -1 AS sign "
        "UNION ALL SELECT NEW.occurred_at, NEW.affiliate_id, 1) AS st "
        f"WHERE m.conversion_id = NEW.id GROUP BY 1, 2, 3, 4, 5, 6 {COMMISSION_ADD}"
    )


def _backfill(dialect: str) -> list[str]:
    return [
        f"INSERT INTO conversion_rollups ({CONVERSION_COLUMNS}) "
        f"SELECT {_day(dialect, 'c.occurred_at')}, c.affiliate_id, c.program_id, c.type, coalesce(s.status, c.status), "
        "c.currency, count(*), sum(c.amount_cents) FROM conversions c LEFT JOIN conversions s ON s.id = c.refund_of_id "
        "WHERE c.affiliate_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6",
        f"INSERT INTO commission_rollups ({COMMISSION_COLUMNS}) "
        f"SELECT {_day(dialect, 'v.occurred_at')}, m.affiliate_id, m.program_id, m.status, m.currency, "
        "coalesce(m.affiliate_id = v.affiliate_id, false), sum(m.amount_cents) "
        "FROM commissions m JOIN conversions v ON v.id = m.conversion_id GROUP BY 1, 2, 3, 4, 5, 6",
    ]


def _sqlite_triggers() -> list[str]:
    # A batch migration that recreates conversions or commissions on SQLite drops these:
    # tests/reports/test_money_rollups.py checks they exist; `flask rollup --check` compares the rollups.
    d = "sqlite"
    return [
        f"CREATE TRIGGER conversions_rollup_insert AFTER INSERT ON conversions BEGIN {_conversion(d, 'NEW', '1')}; END",
        f"CREATE TRIGGER conversions_rollup_update AFTER UPDATE OF {CONVERSION_WATCHED} ON conversions "
        f"BEGIN {_conversion(d, 'OLD', '-1')}; {_conversion(d, 'NEW', '1')}; END",
        "CREATE TRIGGER conversions_rollup_refunds AFTER UPDATE OF status ON conversions "
        f"WHEN OLD.status IS NOT NEW.status BEGIN {_refunds_follow_sale(d)}; END",
        "CREATE TRIGGER conversions_rollup_commissions AFTER UPDATE OF occurred_at, affiliate_id ON conversions "
        "WHEN OLD.occurred_at IS NOT NEW.occurred_at OR OLD.affiliate_id IS NOT NEW.affiliate_id "
        f"BEGIN {_commissions_follow_conversion(d)}; END",
        f"CREATE TRIGGER conversions_rollup_delete AFTER DELETE ON conversions BEGIN {_conversion(d, 'OLD', '-1')}; END",
        f"CREATE TRIGGER commissions_rollup_insert AFTER INSERT ON commissions BEGIN {_commission(d, 'NEW', '1')}; END",
        f"CREATE TRIGGER commissions_rollup_update AFTER UPDATE OF {COMMISSION_WATCHED} ON commissions "
        f"BEGIN {_commission(d, 'OLD', '-1')}; {_commission(d, 'NEW', '1')}; END",
        f"CREATE TRIGGER commissions_rollup_delete AFTER DELETE ON commissions BEGIN {_commission(d, 'OLD', '-1')}; END",
    ]


def _postgresql_triggers() -> list[str]:
    d = "postgresql"
    return [
        "CREATE FUNCTION conversions_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {_conversion(d, 'OLD', '-1')}; END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {_conversion(d, 'NEW', '1')}; END IF; "
        f"IF TG_OP = 'UPDATE' AND OLD.status IS DISTINCT FROM NEW.status THEN {_refunds_follow_sale(d)}; END IF; "
        "IF TG_OP = 'UPDATE' AND (OLD.occurred_at IS DISTINCT FROM NEW.occurred_at "
        f"OR OLD.affiliate_id IS DISTINCT FROM NEW.affiliate_id) THEN {_commissions_follow_conversion(d)}; END IF; "
        "RETURN NULL; END $$",
        f"CREATE TRIGGER conversions_rollup AFTER INSERT OR DELETE OR UPDATE OF {CONVERSION_WATCHED} ON conversions "
        "FOR EACH ROW EXECUTE FUNCTION conversions_rollup()",
        "CREATE FUNCTION commissions_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {_commission(d, 'OLD', '-1')}; END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {_commission(d, 'NEW', '1')}; END IF; "
        "RETURN NULL; END $$",
        f"CREATE TRIGGER commissions_rollup AFTER INSERT OR DELETE OR UPDATE OF {COMMISSION_WATCHED} ON commissions "
        "FOR EACH ROW EXECUTE FUNCTION commissions_rollup()",
    ]


def upgrade():
    op.create_table(
        "click_rollups",
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("program_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("raw_clicks", sa.BigInteger(), nullable=False),
        sa.Column("human_clicks", sa.BigInteger(), nullable=False),
        sa.Column("unique_clicks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "dimension", "day", "affiliate_id", "program_id", "value", name=op.f("pk_click_rollups")
        ),
    )
    with op.batch_alter_table("click_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_click_rollups_affiliate", ["affiliate_id", "dimension", "day"], unique=False)

    rollup_state = op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purged_before", sa.Date(), nullable=True),
        sa.Column("lease_holder", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_state")),
    )
    op.bulk_insert(rollup_state, [{"id": 1}])

    op.create_table(
        "conversion_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("program_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("conversion_count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "affiliate_id", "program_id", "kind", "status", "currency", name=op.f("pk_conversion_rollups")
        ),
    )
    op.create_table(
        "commission_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("affiliate_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("program_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("own", sa.Boolean(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "affiliate_id", "program_id", "status", "currency", "own", name=op.f("pk_commission_rollups")
        ),
    )
    # The triggers find a sale's refunds by it, as recording a refund already does.
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversions_refund_of_id"), ["refund_of_id"], unique=False)
    dialect = op.get_bind().dialect.name
    for statement in _backfill(dialect):
        op.execute(statement)
    for statement in _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers():
        op.execute(statement)

    # Purging a click checks that no referral points at it (and the foreign key makes the
    # database check the same on every delete): without this index, each is a full scan.
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_click_id"), ["click_id"], unique=False)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER commissions_rollup ON commissions")
        op.execute("DROP FUNCTION commissions_rollup()")
        op.execute("DROP TRIGGER conversions_rollup ON conversions")
        op.execute("DROP FUNCTION conversions_rollup()")
    else:
        for name in ("conversions_rollup_insert", "conversions_rollup_update", "conversions_rollup_refunds",
                     "conversions_rollup_commissions", "conversions_rollup_delete", "commissions_rollup_insert",
                     "commissions_rollup_update", "commissions_rollup_delete"):
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversions_refund_of_id"))
    op.drop_table("commission_rollups")
    op.drop_table("conversion_rollups")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_click_id"))
    op.drop_table("rollup_state")
    with op.batch_alter_table("click_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_click_rollups_affiliate")
    op.drop_table("click_rollups")
