"""Reports read a real streaming replica (started with pg_basebackup) while it keeps up, and the primary otherwise."""

from __future__ import annotations

import itertools
from datetime import timedelta

import flask_migrate
import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Click, User, utcnow
from affiliate.replica import EXTENSION, reading_session
from tests.conftest import build_app, dispose
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.replica.cluster import ReplicatedPair, server_binaries
from tests.reports.helpers import click_record, store_for
from tests.reports.test_pages import figures, rows, signed_in

_names = itertools.count()


@pytest.fixture(scope="module")
def pair():
    bindir = server_binaries()
    if bindir is None:
        pytest.skip("needs PostgreSQL's server programs (Debian's postgresql package)")
    cluster = ReplicatedPair(bindir)
    yield cluster
    cluster.close()


@pytest.fixture
def site(pair):
    """A migrated database on the primary, and a portal that reads reports from the replica."""
    name = f"site_{next(_names)}"
    pair.primary.sql(f"CREATE DATABASE {name}")
    app = build_app(
        pair.primary.url(name).replace("postgresql://", "postgresql+psycopg://"),
        DATABASE_REPLICA_URL=pair.replica.url(name).replace("postgresql://", "postgresql+psycopg://"),
        REPLICA_MAX_LAG_SECONDS=3600,
        REPLICA_CHECK_SECONDS=0,
    )
    with app.app_context():
        flask_migrate.upgrade()
    admin = make_admin(app)
    link = make_link(app, make_affiliate(app), make_program(app, admin))
    yield app, link
    pair.replica.sql("SELECT pg_wal_replay_resume()")
    app.extensions[EXTENSION].engine.dispose()
    dispose(app)


def _clicks(app, link, n: int) -> None:
    with store_for(app) as store:
        store.insert([click_record(link, utcnow() - timedelta(minutes=m)) for m in range(n)])


def _counted(app) -> tuple[int, bool]:
    """The clicks a report's session sees, and whether it was the replica's."""
    with app.test_request_context():
        session = reading_session()
        return session.scalar(select(func.count()).select_from(Click)), session is not db.session


def test_reports_read_the_replica_while_it_keeps_up_and_the_primary_once_it_lags(pair, site):
    app, link = site
    _clicks(app, link, 5)
    pair.caught_up()
    assert _counted(app) == (5, True)

    pair.replica.sql("SELECT pg_wal_replay_pause()")
    _clicks(app, link, 3)
    assert _counted(app) == (5, True), "within REPLICA_MAX_LAG_SECONDS a report may be a little behind"

    app.extensions[EXTENSION].max_lag = 0
    assert _counted(app) == (8, False), "beyond it, the primary answers"

    pair.replica.sql("SELECT pg_wal_replay_resume()")
    pair.caught_up()
    assert _counted(app) == (8, True), "caught up again, the replica answers again"


def test_a_replica_that_is_down_or_not_a_replica_is_passed_over(pair, site):
    app, link = site
    _clicks(app, link, 2)
    pair.caught_up()
    replica = app.extensions[EXTENSION]
    replica.engine.dispose()
    replica.engine = replica.engine.execution_options()  # same engine settings, no pooled connections
    pair.replica.stop()
    try:
        assert _counted(app) == (2, False)
    finally:
        pair.replica.start("-c hot_standby=on", "-c fsync=off")
    pair.caught_up()
    assert _counted(app) == (2, True)

    not_a_replica = build_app(
        app.config["SQLALCHEMY_DATABASE_URI"], DATABASE_REPLICA_URL=app.config["SQLALCHEMY_DATABASE_URI"]
    )
    try:
        assert _counted(not_a_replica) == (2, False), "a primary named as the replica is not read as one"
    finally:
        not_a_replica.extensions[EXTENSION].engine.dispose()
        dispose(not_a_replica)


def test_the_report_pages_and_their_csv_read_the_replica(pair, site):
    app, link = site
    _clicks(app, link, 4)
    pair.caught_up()
    with app.app_context():
        affiliate = db.session.get(User, link.affiliate_id)
    client = signed_in(app, affiliate)
    assert figures(client.get("/partner/reports/").get_data(as_text=True))["raw"] == "4"

    pair.replica.sql("SELECT pg_wal_replay_pause()")
    _clicks(app, link, 3)
    assert figures(client.get("/partner/reports/").get_data(as_text=True))["raw"] == "4", "read on the replica"
    by_day = rows(client.get("/partner/reports/day.csv"))
    assert sum(int(row["raw_clicks"]) for row in by_day) == 4, "and so is the CSV"

    app.extensions[EXTENSION].max_lag = 0
    assert figures(client.get("/partner/reports/").get_data(as_text=True))["raw"] == "7", "the primary, once it lags"


def test_a_replica_that_fails_between_checks_costs_the_page_nothing(pair, site):
    """Stopped right after a good check, the replica fails the page's query: the page is drawn on the primary,
    and the replica is passed over until the next check. A replica of a database without our schema is never
    read (its migration is not the primary's)."""
    app, link = site
    _clicks(app, link, 4)
    pair.caught_up()
    with app.app_context():
        affiliate = db.session.get(User, link.affiliate_id)
    client = signed_in(app, affiliate)
    replica = app.extensions[EXTENSION]
    assert figures(client.get("/partner/reports/").get_data(as_text=True))["raw"] == "4"
    replica.check_seconds = 3600  # judged good now, and not looked at again before the next pages
    assert replica.choice(_primary(app)).use_replica
    pair.replica.stop()
    try:
        page = client.get("/partner/reports/")
        assert page.status_code == 200 and figures(page.get_data(as_text=True))["raw"] == "4"
        assert client.get("/partner/reports/day.csv").status_code == 200
        assert not replica.choice(_primary(app)).use_replica
    finally:
        pair.replica.start("-c hot_standby=on", "-c fsync=off")
    pair.caught_up()

    pair.primary.sql("CREATE DATABASE unmigrated")
    pair.caught_up()
    other = build_app(
        app.config["SQLALCHEMY_DATABASE_URI"],
        DATABASE_REPLICA_URL=pair.replica.url("unmigrated").replace("postgresql://", "postgresql+psycopg://"),
    )
    try:
        assert _counted(other) == (4, False), "a replica without the primary's schema is not read"
        choice = other.extensions[EXTENSION].choice(_primary(other))
        assert not choice.use_replica and "cannot be reached or read" in choice.reason
    finally:
        other.extensions[EXTENSION].engine.dispose()
        dispose(other)
        pair.primary.sql("DROP DATABASE unmigrated")


def _primary(app):
    with app.app_context():
        return db.engine
