"""Retention by default: the background jobs blur and delete what attribution and fraud screening no longer need."""

from __future__ import annotations

import fcntl
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from affiliate import jobs
from affiliate.extensions import db
from affiliate.models import Click, Referral, utcnow
from affiliate.services import retention
from config import DevelopmentConfig
from tests.factories import make_admin, make_affiliate, make_link, make_program, make_user
from tests.reports.helpers import click_record, store_for, stored_rollups

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _clicks(app) -> dict[str, tuple[str | None, str | None]]:
    with app.app_context():
        return {c.click_id: (c.ip, c.user_agent) for c in db.session.scalars(select(Click))}


def test_make_run_applies_retention_every_hour_by_default():
    assert DevelopmentConfig.RETENTION_JOBS_SECONDS == 3600
    assert (DevelopmentConfig.CLICK_RETENTION_DAYS, DevelopmentConfig.CLICK_IP_DAYS) == (30, 30)
    assert DevelopmentConfig.CLICK_USER_AGENT_DAYS == 1


def test_the_defaults_blur_and_purge_on_schedule(app):
    """With no retention setting changed, rounds of the background jobs as the days pass."""
    app.config["RETENTION_JOBS_SECONDS"] = 3600
    admin = make_admin(app)
    alice = make_affiliate(app)
    program = make_program(app, admin, attribution_window_days=30)
    link = make_link(app, alice, program)
    start = utcnow()
    old = click_record(link, start - timedelta(days=100), ip="81.2.69.1", user_agent=AGENT)
    kept = click_record(link, start - timedelta(days=100, minutes=1), ip="81.2.69.2", user_agent=AGENT)
    yesterday = click_record(link, start - timedelta(days=2), ip="81.2.69.3", user_agent=AGENT)
    evidence = click_record(link, start - timedelta(days=2, minutes=1), ip="81.2.69.4", user_agent=AGENT)
    fresh = click_record(link, start - timedelta(minutes=5), ip="81.2.69.5", user_agent=AGENT)
    with store_for(app) as store:
        store.insert([old, kept, yesterday, evidence, fresh])
    member, friend = make_user(app, role="member"), make_user(app, role="member")
    with app.app_context():
        for referred, record in ((member, kept), (friend, evidence)):
            click_id = db.session.scalar(select(Click.id).where(Click.click_id == record["click_id"]))
            db.session.add(
                Referral(referrer_id=alice.id, referred_id=referred.id, program_id=program.id, click_id=click_id)
            )
        db.session.commit()
    rollups = stored_rollups(app)
    clock = Clock(start)

    counts = jobs.run_retention(app, clock=clock)
    assert counts is not None and counts.deleted == 1 and counts.ips == 1
    clicks = _clicks(app)
    assert old["click_id"] not in clicks, "a 100-day-old click nothing points at is deleted"
    assert clicks[kept["click_id"]] == ("81.2.69.0", "Mozilla/5.0"), "money's click stays, blurred"
    assert clicks[yesterday["click_id"]] == ("81.2.69.3", "Mozilla/5.0"), "user agents go after a day, IPs stay"
    assert clicks[fresh["click_id"]] == ("81.2.69.5", AGENT)

    clock.now = start + timedelta(minutes=59)
    assert jobs.run_retention(app, clock=clock) is None, "not due again within the hour"
    assert _clicks(app) == clicks

    clock.now = start + timedelta(days=2)
    assert jobs.run_retention(app, clock=clock).user_agents == 1
    assert _clicks(app)[fresh["click_id"]] == ("81.2.69.5", "Mozilla/5.0")

    clock.now = start + timedelta(days=40)  # 42 days old: a sale back-dated 25 days may still be credited to them
    jobs.run_retention(app, clock=clock)
    assert yesterday["click_id"] in _clicks(app) and fresh["click_id"] in _clicks(app)
    clock.now = start + timedelta(days=62)  # every click is now past two windows (the fresh one, 62 days old)
    jobs.run_retention(app, clock=clock)
    clicks = _clicks(app)
    assert yesterday["click_id"] not in clicks and fresh["click_id"] not in clicks
    assert clicks[evidence["click_id"]] == ("81.2.69.0", "Mozilla/5.0")
    assert stored_rollups(app) == rollups, "reports keep every day's counts"


def test_a_long_attribution_window_keeps_ips_and_clicks_as_long(app):
    app.config["RETENTION_JOBS_SECONDS"] = 3600
    admin = make_admin(app)
    link = make_link(app, make_affiliate(app), make_program(app, admin, attribution_window_days=90))
    start = utcnow()
    record = click_record(link, start - timedelta(days=60), ip="81.2.69.9", user_agent=AGENT)
    with store_for(app) as store:
        store.insert([record])
    jobs.run_retention(app, clock=Clock(start))
    assert _clicks(app)[record["click_id"]] == ("81.2.69.9", "Mozilla/5.0"), "a conversion may still come"
    jobs.run_retention(app, clock=Clock(start + timedelta(days=110)))
    assert _clicks(app)[record["click_id"]] == ("81.2.69.9", "Mozilla/5.0"), "a sale back-dated by the window may come"
    jobs.run_retention(app, clock=Clock(start + timedelta(days=121)))
    assert record["click_id"] not in _clicks(app)


def test_a_sale_back_dated_within_the_window_is_still_credited_to_its_click_after_a_purge(app):
    """The API takes a sale up to one window after it happened, and attribution looks one window before the sale:
    a click two windows old minus a day is still money's evidence, so the purge keeps it."""
    from tests.api.helpers import make_merchant

    app.config["RETENTION_JOBS_SECONDS"] = 3600
    admin = make_admin(app)
    alice = make_affiliate(app)
    program = make_program(app, admin, attribution_window_days=30)
    link = make_link(app, alice, program)
    start = utcnow()
    record = click_record(link, start - timedelta(days=40), ip="81.2.69.9", user_agent=AGENT)
    with store_for(app) as store:
        store.insert([record])
    jobs.run_retention(app, clock=Clock(start))
    occurred = (start - timedelta(days=25)).isoformat()
    answer = make_merchant(app, program, admin).sale("late-1", 5000, click_id=record["click_id"], occurred_at=occurred)
    assert answer.status_code == 201
    assert answer.get_json()["conversion"]["attribution"]["affiliate_id"] == alice.id


def test_only_one_process_runs_a_round_and_settings_of_zero_keep_everything(app):
    app.config["RETENTION_JOBS_SECONDS"] = 3600
    link = make_link(app, make_affiliate(app), make_program(app, make_admin(app)))
    record = click_record(link, utcnow() - timedelta(days=100), ip="81.2.69.9", user_agent=AGENT)
    with store_for(app) as store:
        store.insert([record])
    fd = os.open(Path(app.instance_path) / jobs.RETENTION_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is in a round
        assert jobs.run_retention(app, clock=Clock(utcnow())) is None
    finally:
        os.close(fd)
    app.config.update(CLICK_RETENTION_DAYS=0, CLICK_IP_DAYS=0, CLICK_USER_AGENT_DAYS=0)
    assert jobs.run_retention(app, clock=Clock(utcnow())) is None
    assert _clicks(app) == {record["click_id"]: ("81.2.69.9", AGENT)}


def test_a_purge_window_finds_money_s_clicks_through_their_indexes(app):
    """Statistics where almost no conversion names a click (coupon and no-click sales) once made SQLite scan every
    conversion for every click of a window: a round over millions of clicks then held the write lock for hours."""
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's planner and its statistics")
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            conn.execute(text("DELETE FROM sqlite_stat1 WHERE tbl IN ('conversions', 'referrals')"))
            for table, index in (("conversions", "ix_conversions_click_id"), ("referrals", "ix_referrals_click_id")):
                conn.execute(
                    text("INSERT INTO sqlite_stat1 VALUES (:table, :index, '100000 100000')"),
                    {"table": table, "index": index},
                )
        db.engine.dispose()  # new connections read the statistics
        statements: list[tuple[str, tuple]] = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE")):
                statements.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            policy = jobs.policy_of(app.config)
            limits = retention.cutoffs(db.session, policy, now=utcnow())
            retention.apply_window(db.session, policy, limits, 1, retention.WINDOW, dry_run=True)
            db.session.rollback()
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        plans = []
        with db.engine.connect() as conn:
            for statement, parameters in statements:
                plans += [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        assert any("conversions" in step for step in plans), plans
        assert not [step for step in plans if step.startswith(("SCAN conversions", "SCAN referrals"))], plans


def test_retention_settings_past_a_century_are_refused_at_start_and_never_overflow_a_round(app, runner):
    from config import DevelopmentConfig

    for name in ("CLICK_RETENTION_DAYS", "CLICK_IP_DAYS", "CLICK_USER_AGENT_DAYS"):
        config = {**DevelopmentConfig.as_dict(), name: 3_000_000}
        with pytest.raises(SystemExit, match=name):
            DevelopmentConfig.resolve(config)
    link = make_link(app, make_affiliate(app), make_program(app, make_admin(app)))
    with store_for(app) as store:
        store.insert([click_record(link, utcnow() - timedelta(days=100), ip="81.2.69.9", user_agent=AGENT)])
    app.config.update(CLICK_RETENTION_DAYS=3_000_000, CLICK_IP_DAYS=999_999_999_999, CLICK_USER_AGENT_DAYS=800_000)
    result = runner.invoke(args=["purge-clicks"])
    assert result.exit_code == 0, result.output
    assert len(_clicks(app)) == 1, "kept: a century is as good as for ever here"
