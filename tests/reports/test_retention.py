"""purge-clicks: old raw clicks go, clicks that money depends on stay, rollups and reports do not change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from affiliate.extensions import db
from affiliate.models import Click, ConversionType, Program, Referral, RollupState, utcnow
from affiliate.services.conversions import ConversionRequest, record_conversion
from tests.factories import Auth, make_admin, make_affiliate, make_link, make_program, make_user
from tests.reports.helpers import click_record, store_for, stored_rollups
from tests.reports.test_pages import figures

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.fixture
def aged(app):
    """Clicks 100 days old (two of them evidence for money) and 10 days old, on a program with a 30-day window."""
    admin = make_admin(app)
    alice = make_affiliate(app)
    program = make_program(app, admin, attribution_window_days=30)
    link = make_link(app, alice, program)
    now = utcnow()
    old = [
        click_record(
            link,
            now - timedelta(days=100, minutes=n),
            country="US",
            user_agent=CHROME,
            ip=f"81.2.69.{n + 1}",
            ip_prefix="81.2.69.0/24",
            ip_hash=f"{n:064x}",
        )
        for n in range(5)
    ]
    old.append(
        click_record(
            link,
            now - timedelta(days=100, minutes=9),
            ip="2001:db8:1234:5678::1",
            user_agent=CHROME,
            ip_prefix="2001:db8:1234::/48",
            ip_hash="f" * 64,
        )
    )
    recent = [
        click_record(link, now - timedelta(days=10, minutes=n), country="GB", user_agent=CHROME, ip="81.2.69.200")
        for n in range(3)
    ]
    with store_for(app) as store:
        store.insert(old + recent)
    member = make_user(app, role="member")
    with app.app_context():
        # The sale was reported while the program's window still reached its click (a conversion older than
        # the window is refused); the window has been shortened since.
        db.session.execute(update(Program).where(Program.id == program.id).values(attribution_window_days=120))
        sold = record_conversion(
            db.session,
            db.session.get(Program, program.id),
            ConversionRequest(
                type=ConversionType.SALE,
                order_id="OLD-1",
                amount_cents=2500,
                currency="USD",
                click_id=old[0]["click_id"],
                occurred_at=now - timedelta(days=99),
            ),
            now=now,
        ).conversion
        assert sold.affiliate_id == alice.id
        referred_click = db.session.scalar(select(Click.id).where(Click.click_id == old[1]["click_id"]))
        db.session.add(
            Referral(
                referrer_id=alice.id,
                referred_id=member.id,
                program_id=program.id,
                click_id=referred_click,
                created_at=now - timedelta(days=99),
            )
        )
        db.session.execute(update(Program).where(Program.id == program.id).values(attribution_window_days=30))
        db.session.commit()
    return {"alice": alice, "old": old, "recent": recent, "now": now}


def _click_ids(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Click.click_id)))


def _report(app, alice, start, end) -> dict[str, str]:
    client = app.test_client()
    Auth(client).login(alice.email)
    return figures(client.get("/partner/reports/", query_string={"start": start, "end": end}).get_data(as_text=True))


def test_purge_keeps_money_evidence_and_every_rollup(app, runner, aged):
    app.config["CLICK_RETENTION_DAYS"] = 70  # past two of the program's 30-day windows
    before_ids, before_rollups = _click_ids(app), stored_rollups(app)
    old_days = tuple((aged["now"] - timedelta(days=days)).date().isoformat() for days in (101, 99))
    report_before = _report(app, aged["alice"], *old_days)
    assert report_before["raw"] == "6" and report_before["sales"] == "1"

    dry = runner.invoke(args=["purge-clicks", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Would delete 4 raw clicks" in dry.output
    assert "2 kept, as conversions or referrals point at them" in dry.output
    assert _click_ids(app) == before_ids, "a dry run changes nothing"

    result = runner.invoke(args=["purge-clicks"])
    assert result.exit_code == 0, result.output
    assert "Deleted 4 raw clicks" in result.output
    kept = {aged["old"][0]["click_id"], aged["old"][1]["click_id"]} | {r["click_id"] for r in aged["recent"]}
    assert _click_ids(app) == kept
    assert stored_rollups(app) == before_rollups
    assert _report(app, aged["alice"], *old_days) == report_before, "reports read rollups, not raw clicks"
    with app.app_context():
        purged_before = db.session.scalar(select(RollupState.purged_before))
        assert purged_before == (aged["now"] - timedelta(days=70)).date()
        assert db.session.scalar(select(RollupState.lease_holder)) is None

    # A rebuild now recounts only the days whose raw clicks are all there, and keeps the rest.
    rebuilt = runner.invoke(args=["rollup", "--rebuild", "--check"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert stored_rollups(app) == before_rollups
    again = runner.invoke(args=["purge-clicks"])
    assert "Deleted 0 raw clicks" in again.output and _click_ids(app) == kept


def test_purge_never_deletes_clicks_an_attribution_window_may_still_need(app, runner, aged):
    app.config["CLICK_RETENTION_DAYS"] = 5  # shorter than the program's 30-day window
    with app.app_context():
        db.session.execute(update(Program).values(attribution_window_days=120))
        db.session.commit()
    result = runner.invoke(args=["purge-clicks"])
    assert result.exit_code == 0, result.output
    assert "Raw clicks are kept 240 days, not 5" in result.output and "Deleted 0 raw clicks" in result.output
    assert len(_click_ids(app)) == 9


@pytest.mark.parametrize(
    ("mode", "ipv4", "ipv6", "agent"),
    [("truncate", "81.2.69.0", "2001:db8:1234::", "Mozilla/5.0"), ("drop", None, None, None)],
)
def test_old_ips_and_user_agents_are_blurred(app, runner, aged, mode, ipv4, ipv6, agent):
    app.config.update(
        CLICK_RETENTION_DAYS=0,
        CLICK_IP_DAYS=30,
        CLICK_IP_MODE=mode,
        CLICK_USER_AGENT_DAYS=30,
        CLICK_USER_AGENT_MODE=mode,
    )
    before = stored_rollups(app)
    result = runner.invoke(args=["purge-clicks"])
    assert result.exit_code == 0, result.output
    assert f"{mode.capitalize()}{'ped' if mode == 'drop' else 'd'} 6 IP addresses" in result.output
    with app.app_context():
        by_id = {c.click_id: c for c in db.session.scalars(select(Click))}
    assert {by_id[r["click_id"]].ip for r in aged["old"][:5]} == {ipv4}
    assert by_id[aged["old"][5]["click_id"]].ip == ipv6
    assert {by_id[r["click_id"]].user_agent for r in aged["old"]} == {agent}
    recent = {(by_id[r["click_id"]].ip, by_id[r["click_id"]].user_agent) for r in aged["recent"]}
    assert recent == {("81.2.69.200", CHROME)}
    assert all(by_id[r["click_id"]].ip_prefix and by_id[r["click_id"]].ip_hash for r in aged["old"])
    assert len(by_id) == 9 and stored_rollups(app) == before
    again = runner.invoke(args=["purge-clicks"])
    assert "0 IP addresses" in again.output and "0 user agents" in again.output


def test_purge_refuses_while_a_rebuild_runs_and_says_when_there_is_nothing_to_do(app, runner, aged):
    app.config.update(CLICK_RETENTION_DAYS=0, CLICK_IP_DAYS=0, CLICK_USER_AGENT_DAYS=0)
    assert "Nothing to do" in runner.invoke(args=["purge-clicks"]).output
    app.config["CLICK_RETENTION_DAYS"] = 40
    with app.app_context():
        held = utcnow() + timedelta(hours=1)
        db.session.execute(update(RollupState).values(lease_holder="rebuild", lease_until=held))
        db.session.commit()
    busy = runner.invoke(args=["purge-clicks"])
    assert busy.exit_code != 0 and "Another purge or rollup rebuild is running" in busy.output
    assert len(_click_ids(app)) == 9
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Click)) == 9
