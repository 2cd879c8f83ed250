"""An affiliate's report reads its own rollup rows through an index, not every affiliate's rows of the period."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from affiliate.extensions import db
from tests.reports.conftest import RANGE
from tests.reports.test_pages import signed_in

AFFILIATE_INDEXES = {
    "click_rollups": "ix_click_rollups_affiliate",
    "conversion_rollups": "ix_conversion_rollups_affiliate",
    "commission_rollups": "ix_commission_rollups_affiliate",
}


def test_the_affiliate_dashboard_reads_each_rollup_through_the_affiliate_index(app, world, database_uri):
    """On SQLite, whose planner has no statistics to go by, the plan follows the indexes alone. A rollup
    table's primary key leads with the day (program-wide reports); read through it, one affiliate's page would
    cost as much as every affiliate's rows of the period, and grow with the program."""
    if not database_uri.startswith("sqlite"):
        pytest.skip("the plan is SQLite's; PostgreSQL's depends on the table's statistics")
    statements: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if any(f"FROM {table}" in statement for table in AFFILIATE_INDEXES):
            statements.append((statement, parameters))

    client = signed_in(app, world.alice)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        assert client.get("/partner/reports/", query_string=RANGE).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    read = {table for statement, _ in statements for table in AFFILIATE_INDEXES if f"FROM {table}" in statement}
    assert read == set(AFFILIATE_INDEXES), read
    with engine.connect() as conn:
        for statement, parameters in statements:
            table = next(name for name in AFFILIATE_INDEXES if f"FROM {name}" in statement)
            plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert f"INDEX {AFFILIATE_INDEXES[table]} (affiliate_id=?" in plan, plan
