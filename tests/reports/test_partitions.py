"""Clicks partitioned by month on PostgreSQL: upgrades keep every click, months are made ahead, purges drop months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, select, text

from affiliate.extensions import db
from affiliate.models import Click, ConversionType, Program, utcnow
from affiliate.services import partitions
from affiliate.services.conversions import ConversionRequest, record_conversion
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.reports.helpers import click_record, store_for, stored_rollups


@pytest.fixture
def on_postgres(app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("partitioning is PostgreSQL's")
    return app


@pytest.fixture
def link(on_postgres):
    admin = make_admin(on_postgres)
    return make_link(on_postgres, make_affiliate(on_postgres), make_program(on_postgres, admin))


def _layout(app) -> dict[str, int]:
    """Each partition of clicks and how many clicks it holds."""
    with app.app_context():
        conn = db.session.connection()
        return {name: conn.scalar(text(f"SELECT count(*) FROM {name}")) for name in partitions.existing(conn)}


def _oids(app) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            text("SELECT inhrelid::regclass::text, inhrelid FROM pg_inherits WHERE inhparent = 'clicks'::regclass")
        )
        return dict(rows.all())


def test_an_upgrade_from_the_plain_table_keeps_every_click(on_postgres, link):
    app = on_postgres
    now = utcnow()
    with app.app_context():
        downgrade(revision="0017")
        assert not partitions.is_partitioned(db.session.connection())
        db.session.commit()
    records = [click_record(link, now - timedelta(days=days, minutes=n)) for days in (95, 40, 3) for n in range(4)]
    with app.app_context():
        # Written as rows, as that schema's ingester wrote them (today's ingester expects today's schema).
        db.session.execute(insert(Click.__table__), records)
        db.session.commit()
        before = db.session.execute(text("SELECT * FROM clicks ORDER BY id")).all()
        db.session.commit()
        upgrade()
        conn = db.session.connection()
        assert partitions.is_partitioned(conn)
        after = db.session.execute(text("SELECT * FROM clicks ORDER BY id")).all()
        assert after == before, "every click, every column, the same ids"
        months = {partitions.month_of(now - timedelta(days=days)).name for days in (95, 40, 3)}
        assert months <= partitions.existing(conn)
        # New clicks take ids after the old ones.
        db.session.commit()
    with store_for(app) as store:
        store.insert([click_record(link, now)])
    with app.app_context():
        assert db.session.scalar(select(Click.id).order_by(Click.id.desc()).limit(1)) > before[-1].id
    assert sum(_layout(app).values()) == 13
    assert _layout(app)[partitions.DEFAULT] == 0


def test_a_click_beyond_the_months_made_is_stored_and_moves_when_its_month_is_made(on_postgres, link):
    app = on_postgres
    later = utcnow() + timedelta(days=200)
    month = partitions.month_of(later)
    with store_for(app) as store:
        store.insert([click_record(link, later)])
        assert _layout(app)[partitions.DEFAULT] == 1, "no month of its own yet: the default partition keeps it"
        made = store.make_months_ahead(later - timedelta(days=31))
    assert month.name in made
    layout = _layout(app)
    assert layout[month.name] == 1 and layout[partitions.DEFAULT] == 0
    with store_for(app) as store:
        assert store.make_months_ahead(later - timedelta(days=31)) == [], "made once"


def test_purging_drops_whole_months_and_keeps_the_clicks_money_points_at(on_postgres, link, runner):
    app = on_postgres
    now = datetime.now(UTC)
    this_month = partitions.month_of(now)
    two_back = partitions.month_of(partitions.month_of(this_month.start - timedelta(days=1)).start - timedelta(days=1))
    three_back = partitions.month_of(two_back.start - timedelta(days=1))
    with app.app_context():
        for month in (three_back, two_back):
            partitions.make_month(db.session.connection(), month)
        db.session.commit()
    old = [click_record(link, three_back.start + timedelta(days=2, minutes=n)) for n in range(5)]
    older = [click_record(link, two_back.start + timedelta(days=2, minutes=n)) for n in range(3)]
    with store_for(app) as store:
        store.insert(old + older)
    with app.app_context():
        program = db.session.get(Program, link.program_id)
        program.attribution_window_days = 120
        record_conversion(
            db.session,
            program,
            ConversionRequest(
                type=ConversionType.SALE,
                order_id="KEEP-1",
                amount_cents=1000,
                currency="USD",
                click_id=old[0]["click_id"],
                occurred_at=old[0]["clicked_at"] + timedelta(hours=1),
            ),
            now=old[0]["clicked_at"] + timedelta(hours=1),
        )
        program.attribution_window_days = 15  # two windows are within the 31 days retention keeps
        db.session.commit()
    rollups_before, oids_before = stored_rollups(app), _oids(app)
    app.config["CLICK_RETENTION_DAYS"] = 31
    result = runner.invoke(args=["purge-clicks"])
    assert result.exit_code == 0, result.output
    assert "Deleted 7 raw clicks" in result.output and "1 kept" in result.output
    layout, oids = _layout(app), _oids(app)
    assert layout[three_back.name] == 1, "the month's partition holds only the click a sale points at"
    assert oids[three_back.name] != oids_before[three_back.name], "the month was dropped, not emptied row by row"
    assert two_back.name not in layout, "a month with nothing to keep is dropped outright"
    with app.app_context():
        assert db.session.scalar(select(Click.click_id).where(Click.click_id == old[0]["click_id"]))
    assert stored_rollups(app) == rollups_before, "reports keep the purged months' counts"
