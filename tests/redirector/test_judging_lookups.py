"""What the ingester reads to judge a batch: the stored clicks of the batch's own (link, visitor / device / address)
pairs, counted per link, whichever batch stored them, and found through an index on the pair rather than by reading
every click of the batch's links in the hour (which on a busy link grows with its traffic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from redirector import Redirector
from tests.factories import Visitor, make_link
from tests.redirector.helpers import NAVIGATION, all_clicks, live, setup_link


def test_flooding_counts_one_address_per_link_across_batches(app):
    """Five clicks a minute on one link are allowed, the sixth is flooding; clicks on another link don't count."""
    s = setup_link(app)
    other = make_link(app, s.affiliate, s.program)
    now = [datetime(2026, 3, 2, 12, 0, tzinfo=UTC)]
    red = live(Redirector(dict(app.config), clock=lambda: now[0]))
    try:
        shopper = Visitor(red, "198.51.100.40")
        for code in [other.code] * 5 + [s.link.code] * 6:
            now[0] += timedelta(seconds=2)
            assert shopper.get(f"/r/{code}", headers=NAVIGATION).status_code == 302
            assert red.recorder.flush(), "each click is stored in a batch of its own"
    finally:
        red.close()
    clicks = all_clicks(app)
    on_other = [c.fraud_action for c in clicks if c.link_id == other.id]
    on_link = [c.fraud_action for c in clicks if c.link_id == s.link.id]
    assert "reject" not in on_other
    assert on_link[:5] == [None] + ["allow"] * 4, "the other link's five clicks are not counted here"
    assert on_link[5] == "reject"
    assert "click_flooding" in clicks[-1].fraud_reasons


def test_the_judging_lookups_read_each_pair_through_an_index(app, database_uri):
    """On SQLite, whose planner has no statistics to go by, each lookup starts from the pair's own index."""
    if not database_uri.startswith("sqlite"):
        pytest.skip("the plan is SQLite's; PostgreSQL is given each pair as a lateral subquery")
    s = setup_link(app)
    red = live(Redirector(dict(app.config)))
    statements: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if "GROUP BY c.link_id" in statement:
            statements.append((statement, parameters))

    engine = red.recorder.store.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        for ip in ("198.51.100.41", "198.51.100.42"):
            Visitor(red, ip).get(f"/r/{s.link.code}", headers=NAVIGATION)
            assert red.recorder.flush()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
        red.close()
    looked_up = {column for statement, _ in statements for column in ("visitor_id", "fingerprint", "ip")
                 if f"c.{column} = pairs.value" in statement}  # fmt: skip
    assert looked_up == {"visitor_id", "fingerprint", "ip"}
    expected = {
        "visitor_id": "ix_clicks_visitor_at",
        "fingerprint": "ix_clicks_fingerprint_at",
        "ip": "ix_clicks_link_ip_at",
    }
    with engine.connect() as conn:
        for statement, parameters in statements:
            column = next(name for name in expected if f"c.{name} = pairs.value" in statement)
            plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert f"INDEX {expected[column]} (" in plan, plan
            assert "ix_clicks_link_at" not in plan and "SCAN c" not in plan, plan
