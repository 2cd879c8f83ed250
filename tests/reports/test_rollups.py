"""Click rollups kept by the ingester equal a recount from raw clicks, through replays, rebuilds and checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from affiliate.extensions import db
from affiliate.models import Click, ClickRollup, RollupState, utcnow
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.reports.helpers import click_record, recount, store_for, stored_rollups

MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def _links(app):
    admin = make_admin(app)
    programs = [make_program(app, admin), make_program(app, admin, currency="EUR")]
    alice, bob = make_affiliate(app), make_affiliate(app)
    return [
        make_link(app, alice, programs[0], subs=("news", None, None, None, None)),
        make_link(app, alice, programs[1]),
        make_link(app, bob, programs[0], campaign="video"),
    ]


REFERRERS = [None, "https://t.co/x", "https://WWW.YouTube.com/watch?v=1", "not a url", "http://[::1",
             "android-app://com.slack/"]  # fmt: skip
CLICK = st.fixed_dictionaries(
    {
        "link": st.integers(0, 2),
        # Around two UTC midnights, so batches straddle days.
        "seconds": st.integers(-120, 86_400 + 120),
        "country": st.sampled_from([None, "US", "GB", "DE"]),
        "device_type": st.sampled_from([None, "desktop", "mobile"]),
        "browser": st.sampled_from([None, "Chrome", "Mobile Safari"]),
        "referrer": st.sampled_from(REFERRERS),
        "sub1": st.sampled_from([None, "a", "=1+1"]),
        "sub3": st.sampled_from([None, "x" * 255]),
        "bot": st.sampled_from([None, None, None, "known_bot", "link_preview"]),
        # Few visitors and addresses: repeats make duplicates (not unique) and floods (rejected).
        "visitor": st.integers(0, 3),
        "ip": st.integers(0, 2),
    }
)
# Each batch: new clicks, then how many earlier clicks it replays, and whether it repeats one of its own.
BATCHES = st.lists(st.tuples(st.lists(CLICK, max_size=12), st.integers(0, 6), st.booleans()), min_size=1, max_size=5)


def _record(links, spec):
    bot = spec["bot"]
    return click_record(
        links[spec["link"]],
        MIDNIGHT + timedelta(seconds=spec["seconds"]),
        country=spec["country"],
        device_type="bot" if bot else spec["device_type"],
        browser=spec["browser"],
        referrer=spec["referrer"],
        sub1=spec["sub1"],
        sub3=spec["sub3"],
        is_bot=bot is not None,
        bot_reason=bot,
        user_agent=CHROME,
        visitor_id=f"V{spec['visitor']:031d}",
        fingerprint=f"{spec['visitor']:032x}",
        ip=f"203.0.113.{spec['ip']}",
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES, data=st.data())
def test_rollups_equal_a_recount_from_raw_clicks_through_replays(app, batches, data):
    # Hypothesis runs every example on the one app: start each from no clicks, with the same links.
    with app.app_context():
        db.session.execute(text("DELETE FROM click_rollups"))
        db.session.execute(text("DELETE FROM clicks"))
        db.session.commit()
    if "test_links" not in app.extensions:
        app.extensions["test_links"] = _links(app)
    links = app.extensions["test_links"]
    sent: list[dict] = []
    with store_for(app) as store:
        for specs, replays, repeat in batches:
            batch = [_record(links, spec) for spec in specs]
            if sent and replays:
                # A click log stored again after a crash: the very records that were stored before.
                batch += [dict(r) for r in data.draw(st.lists(st.sampled_from(sent), max_size=replays))]
            if batch and repeat:
                batch.append(dict(batch[0]))
            sent += [dict(r) for r in batch]
            store.insert([dict(r) for r in batch])
    assert stored_rollups(app) == recount(app)
    with app.app_context():
        stored = db.session.scalar(select(db.func.count()).select_from(Click))
    assert stored == len({r["click_id"] for r in sent})


def test_a_replayed_batch_counts_once(app):
    links = _links(app)
    batch = [click_record(links[0], MIDNIGHT + timedelta(minutes=n), country="US") for n in range(3)]
    with store_for(app) as store:
        store.insert([dict(r) for r in batch])
        first = stored_rollups(app)
        store.insert([dict(r) for r in batch])  # the whole log again
        store.insert([dict(batch[1]), dict(batch[1]), click_record(links[0], MIDNIGHT, country="US")])
    after = stored_rollups(app)
    day = MIDNIGHT.date()
    assert first[("total", day, links[0].affiliate_id, links[0].program_id, "")] == [3, 3, 3]
    assert after[("total", day, links[0].affiliate_id, links[0].program_id, "")] == [4, 4, 4]
    assert after[("country", day, links[0].affiliate_id, links[0].program_id, "US")] == [4, 4, 4]
    assert after == recount(app)


def test_bots_and_rejected_clicks_are_excluded_with_their_reason(app):
    links = _links(app)
    at = MIDNIGHT + timedelta(hours=3)
    clicks = [click_record(links[0], at, is_bot=True, bot_reason="known_bot", device_type="bot")]
    # Six clicks from one address within a minute: the sixth floods the link (limit 5) and is rejected.
    clicks += [click_record(links[0], at + timedelta(seconds=n), ip="192.0.2.9") for n in range(6)]
    with store_for(app) as store:
        store.insert(clicks)
    rollups = stored_rollups(app)
    key = (MIDNIGHT.date(), links[0].affiliate_id, links[0].program_id)
    assert rollups[("total", *key, "")] == [7, 5, 5]
    assert rollups[("excluded", *key, "bot:known_bot")] == [1, 0, 0]
    assert rollups[("excluded", *key, "rule:click_flooding")] == [1, 0, 0]
    assert rollups == recount(app)


def test_rebuild_equals_incremental_and_check_finds_drift(app, runner):
    links = _links(app)
    records = [
        click_record(
            links[n % 3],
            MIDNIGHT + timedelta(hours=n * 5),
            country=("US", "GB", None)[n % 3],
            referrer="https://t.co/abc" if n % 2 else None,
            visitor_id=f"V{n % 4:031d}",
        )
        for n in range(30)
    ]
    with store_for(app) as store:
        store.insert(records[:10])
        store.insert(records[10:])
    incremental = stored_rollups(app)
    assert runner.invoke(args=["rollup", "--check"]).exit_code == 0

    result = runner.invoke(args=["rollup", "--rebuild"])
    assert result.exit_code == 0, result.output
    assert "Rebuilt the click rollups from 30 clicks." in result.output
    assert stored_rollups(app) == incremental

    with app.app_context():
        db.session.execute(
            update(ClickRollup)
            .where(ClickRollup.dimension == "country", ClickRollup.value == "GB")
            .values(raw_clicks=ClickRollup.raw_clicks + 1)
        )
        db.session.execute(text("DELETE FROM click_rollups WHERE dimension = 'link'"))
        db.session.commit()
    check = runner.invoke(args=["rollup", "--check"])
    assert check.exit_code == 1
    assert "country='GB'" in check.output and "rollup rows differ" in check.output
    assert runner.invoke(args=["rollup", "--rebuild", "--check"]).exit_code == 0
    assert stored_rollups(app) == incremental


def test_rebuild_waits_for_a_running_purge_and_keeps_purged_days(app, runner):
    links = _links(app)
    with store_for(app) as store:
        store.insert([click_record(links[0], MIDNIGHT + timedelta(days=d, hours=1)) for d in range(3)])
    second_day = (MIDNIGHT + timedelta(days=1)).date()
    with app.app_context():
        held = utcnow() + timedelta(minutes=5)
        db.session.execute(update(RollupState).values(lease_holder="someone", lease_until=held))
        db.session.commit()
    busy = runner.invoke(args=["rollup", "--rebuild"])
    assert busy.exit_code != 0 and "Another purge or rollup rebuild is running" in busy.output
    with app.app_context():
        # The lease lapsed (its command died); the raw clicks of the first day were purged.
        db.session.execute(
            update(RollupState).values(lease_until=utcnow() - timedelta(seconds=1), purged_before=second_day)
        )
        db.session.execute(text("DELETE FROM clicks WHERE clicked_at < :day"), {"day": second_day.isoformat()})
        db.session.commit()
    before = stored_rollups(app)
    result = runner.invoke(args=["rollup", "--rebuild", "--check"])
    assert result.exit_code == 0, result.output
    assert f"days from {second_day}" in result.output
    assert stored_rollups(app) == before, "the purged day keeps its rollups; later days are recounted the same"
    with app.app_context():
        assert db.session.scalar(select(RollupState.lease_holder)) is None
