"""Cookie stuffing in browsers that cannot report user activation, judged by what the browsers that can reveal."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from affiliate.services import fraud
from affiliate.services.fraud import (
    Action,
    ClickSignals,
    NavigationHistory,
    score_click,
    settings_for,
    with_setting,
)

RULES = settings_for({})
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# A tap in Safari on iOS: a top-level navigation, and never a Sec-Fetch-User header.
SAFARI_TAP = ClickSignals(
    sec_fetch_mode="navigate",
    sec_fetch_dest="document",
    reports_user_activation=False,
    browser="Mobile Safari",
    referrer_host="coupons.example",
)
# Chrome's navigations: one the user started, and one a page's script started.
CHROME_CLICK = ClickSignals(
    sec_fetch_mode="navigate",
    sec_fetch_dest="document",
    sec_fetch_user="?1",
    browser="Chrome",
    referrer_host="coupons.example",
)
CHROME_SCRIPTED = replace(CHROME_CLICK, sec_fetch_user=None)


def with_source(signals: ClickSignals, navigations: int, unactivated: int) -> ClickSignals:
    return replace(signals, source_navigations=navigations, source_unactivated=unactivated)


def stuffing(verdict) -> str | None:
    return next((fired.evidence for fired in verdict.fired if fired.rule == "cookie_stuffing"), None)


def test_a_safari_tap_through_a_source_that_navigates_without_clicks_is_stuffing():
    verdict = score_click(with_source(SAFARI_TAP, 40, 38), RULES)
    assert verdict.action == Action.REJECT
    assert stuffing(verdict) == (
        "Mobile Safari cannot say whether the user clicked; 38 of the 40 navigations through this link from "
        "coupons.example in the last day by browsers that can had no user activation"
    )


def test_without_a_referrer_the_evidence_says_so():
    verdict = score_click(with_source(replace(SAFARI_TAP, referrer_host=None, browser=None), 5, 5), RULES)
    assert stuffing(verdict) == (
        "this browser cannot say whether the user clicked; 5 of the 5 navigations through this link without a "
        "referrer in the last day by browsers that can had no user activation"
    )


@pytest.mark.parametrize(
    ("navigations", "unactivated", "caught"),
    [
        (0, 0, False),  # a new source: nothing known yet
        (4, 4, False),  # too few navigations to judge by (default 5)
        (5, 4, True),  # 80%, the default share
        (10, 7, False),  # 70%: mostly real clicks elsewhere too
        (10, 8, True),
        (1000, 799, False),
    ],
)
def test_default_thresholds(navigations, unactivated, caught):
    verdict = score_click(with_source(SAFARI_TAP, navigations, unactivated), RULES)
    assert (stuffing(verdict) is not None) is caught
    assert verdict.fired == () or caught, "nothing else fires on a tap"


def test_a_programs_thresholds_are_respected():
    rules = with_setting(RULES, "cookie_stuffing", settings={"min_navigations": 20, "min_unactivated_share": 0.5})
    assert stuffing(score_click(with_source(SAFARI_TAP, 19, 19), rules)) is None
    assert stuffing(score_click(with_source(SAFARI_TAP, 20, 9), rules)) is None
    assert stuffing(score_click(with_source(SAFARI_TAP, 20, 10), rules)) is not None
    flagged = with_setting(rules, "cookie_stuffing", action=Action.FLAG)
    assert score_click(with_source(SAFARI_TAP, 20, 10), flagged).action == Action.FLAG
    off = with_setting(rules, "cookie_stuffing", action=Action.OFF)
    assert score_click(with_source(SAFARI_TAP, 20, 20), off).fired == ()


def test_clicks_that_say_the_user_clicked_are_not_judged_by_their_source():
    assert score_click(with_source(CHROME_CLICK, 40, 40), RULES).fired == (), "Chrome says this one was a click"
    webview_click = replace(SAFARI_TAP, browser="Facebook", sec_fetch_user="?1")
    assert score_click(with_source(webview_click, 40, 40), RULES).fired == (), "an in-app WebView that does say"
    old_browser = ClickSignals(reports_user_activation=False, browser="Mobile Safari", referrer_host="coupons.example")
    assert score_click(with_source(old_browser, 40, 40), RULES).fired == (), "no Sec-Fetch headers: not a navigation"


def test_history_counts_reporting_navigations_per_link_and_referrer_host():
    history = NavigationHistory()
    for minute in range(6):
        history.observe(CHROME_SCRIPTED, 1, NOON + timedelta(minutes=minute))
    history.observe(CHROME_CLICK, 1, NOON + timedelta(minutes=7))
    at = NOON + timedelta(minutes=8)

    assert history.recent(1, "coupons.example", at) == (7, 6)
    judged = with_source(SAFARI_TAP, *history.recent(1, "coupons.example", at))
    assert "6 of the 7 navigations through this link from coupons.example" in stuffing(score_click(judged, RULES))
    assert history.recent(2, "coupons.example", at) == (0, 0), "another link"
    assert history.recent(1, "blog.example", at) == (0, 0), "another referrer"
    assert history.recent(1, None, at) == (0, 0), "no referrer is a source of its own"


def test_history_counts_only_unique_human_navigations_of_browsers_that_report_activation():
    history = NavigationHistory()
    ignored = [
        replace(CHROME_SCRIPTED, is_unique=False),  # one visitor again: weighs once
        replace(CHROME_SCRIPTED, bot_reason="headless"),
        replace(CHROME_SCRIPTED, sec_fetch_dest="iframe"),  # caught on its own, and not a navigation
        replace(CHROME_SCRIPTED, sec_fetch_mode=None, sec_fetch_dest=None),
        SAFARI_TAP,  # it cannot tell either way
    ]
    for signals in ignored * 3:
        assert history.observe(signals, 1, NOON) is None
    assert history.recent(1, "coupons.example", NOON) == (0, 0)


def test_evidence_lasts_a_day():
    history = NavigationHistory()
    at_noon = [history.observe(CHROME_SCRIPTED, 1, NOON) for _ in range(5)]
    history.observe(CHROME_CLICK, 1, NOON + timedelta(hours=5))
    assert history.recent(1, "coupons.example", NOON + timedelta(hours=23)) == (6, 5)
    assert history.recent(1, "coupons.example", NOON + timedelta(hours=24)) == (1, 0)
    assert history.recent(1, "coupons.example", NOON - timedelta(hours=1)) == (0, 0), "nor before it happened"
    history.observe(CHROME_CLICK, 1, NOON + timedelta(hours=28))  # the hours that left the window are dropped
    history.forget(at_noon)
    assert history.recent(1, "coupons.example", NOON + timedelta(hours=28)) == (2, 0)


def test_history_is_bounded_and_keeps_the_busiest_sources():
    history = NavigationHistory(max_sources=100)
    for _ in range(5):
        history.observe(CHROME_SCRIPTED, 1, NOON)
    for link in range(2, 400):
        history.observe(CHROME_CLICK, link, NOON)
        history.observe(CHROME_SCRIPTED, 1, NOON)  # the stuffer keeps sending visitors
    assert len(history) == 100
    assert history.recent(1, "coupons.example", NOON) == (403, 403)
    assert history.recent(2, "coupons.example", NOON) == (0, 0), "a quiet source was dropped"
    assert history.recent(399, "coupons.example", NOON) == (1, 0)


def test_a_source_watched_for_weeks_keeps_only_its_last_day():
    history = NavigationHistory()
    tracemalloc.start()
    for hour in range(24 * 30):
        history.observe(CHROME_CLICK, 1, NOON + timedelta(hours=hour))
    # Only what the history's own code allocated: other tests' threads may be allocating meanwhile.
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, fraud.__file__)])
    tracemalloc.stop()
    held = sum(stat.size for stat in snapshot.statistics("filename"))
    assert held < 4_000, f"{held} bytes for one source"
    assert history.recent(1, "coupons.example", NOON + timedelta(hours=24 * 30 - 1)) == (24, 0)


def test_forgotten_navigations_no_longer_count():
    history = NavigationHistory()
    kept = [history.observe(CHROME_SCRIPTED, 1, NOON) for _ in range(3)]
    kept.append(history.observe(CHROME_CLICK, 1, NOON))
    retried = [history.observe(CHROME_SCRIPTED, 1, NOON), history.observe(CHROME_CLICK, 1, NOON)]
    history.forget(retried)
    assert all(kept) and history.recent(1, "coupons.example", NOON) == (4, 3)
