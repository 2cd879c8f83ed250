"""The one definition of human, unique and excluded clicks, and what a click adds to the rollups."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from affiliate.services.rollups import aggregate
from affiliate.services.traffic import (
    dimension_values,
    exclusion_reason,
    is_human,
    is_unique_human,
    referrer_host,
)

FLOOD = json.dumps(
    [
        {"rule": "duplicate_click", "action": "allow", "weight": 10, "evidence": ""},
        {"rule": "click_flooding", "action": "reject", "weight": 60, "evidence": ""},
        {"rule": "cookie_stuffing", "action": "reject", "weight": 90, "evidence": ""},
    ]
)


@pytest.mark.parametrize(
    ("is_bot", "fraud_action", "is_unique", "human", "unique"),
    [
        (False, None, True, True, True),
        (False, "allow", True, True, True),
        (False, "flag", True, True, True),  # flagged is still a person until finance says otherwise
        (False, "flag", False, True, False),
        (False, "reject", True, False, False),
        (True, None, True, False, False),
        (None, None, None, True, False),  # a record missing its flags: not a bot, not known to be unique
    ],
)
def test_human_and_unique(is_bot, fraud_action, is_unique, human, unique):
    assert is_human(is_bot, fraud_action) is human
    assert is_unique_human(is_bot, fraud_action, is_unique) is unique


@pytest.mark.parametrize(
    ("is_bot", "bot_reason", "reasons", "expected"),
    [
        (True, "link_preview", None, "bot:link_preview"),
        (True, None, FLOOD, "bot:unknown"),  # a bot is a bot first, whatever rules fired
        (False, None, FLOOD, "rule:click_flooding"),  # the first rule that rejected, not one that only allowed
        (False, None, "not json", "rule:unknown"),
        (False, None, '{"rule": "x"}', "rule:unknown"),
        (False, None, None, "rule:unknown"),
    ],
)
def test_an_excluded_click_has_one_reason(is_bot, bot_reason, reasons, expected):
    assert exclusion_reason(is_bot, bot_reason, reasons) == expected


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("https://WWW.YouTube.com/watch?v=1", "www.youtube.com"),
        ("android-app://com.slack/", "com.slack"),
        ("https://user:pw@blog.example.org:8443/x", "blog.example.org"),
        ("not a url", None),
        ("http://[::1", None),
        ("", None),
        (None, None),
    ],
)
def test_referrer_host(referrer, host):
    assert referrer_host(referrer) == host


def _click(**fields) -> dict:
    click = {
        "link_id": 7,
        "affiliate_id": 3,
        "program_id": 2,
        "clicked_at": datetime(2026, 11, 20, 23, 59, tzinfo=UTC),
        "country": None,
        "device_type": None,
        "browser": None,
        "referrer": None,
        "is_bot": False,
        "bot_reason": None,
        "is_unique": True,
        "fraud_action": None,
        "fraud_reasons": None,
        **{f"sub{n}": None for n in range(1, 6)},
    }
    click.update(fields)
    return click


def test_a_click_adds_to_total_link_and_only_the_dimensions_it_has():
    assert dimension_values(_click()) == [("total", ""), ("link", "7")]
    values = dimension_values(
        _click(
            country="US",
            sub2="x" * 300,
            referrer="https://t.co/a",
            is_bot=True,
            bot_reason="known_bot",
            device_type="bot",
        )
    )
    assert values == [
        ("total", ""),
        ("link", "7"),
        ("country", "US"),
        ("device", "bot"),
        ("referrer", "t.co"),
        ("sub2", "x" * 255),
        ("excluded", "bot:known_bot"),
    ]


def test_aggregate_counts_raw_human_unique_per_utc_day():
    late = datetime.fromisoformat("2026-11-20T22:00:00-05:00")  # 2026-11-21 03:00 UTC
    totals = aggregate(
        [_click(), _click(is_unique=False), _click(fraud_action="reject", fraud_reasons=FLOOD), _click(clicked_at=late)]
    )
    assert totals[("total", date(2026, 11, 20), 3, 2, "")] == [3, 2, 1]
    assert totals[("excluded", date(2026, 11, 20), 3, 2, "rule:click_flooding")] == [1, 0, 0]
    assert totals[("total", date(2026, 11, 21), 3, 2, "")] == [1, 1, 1]
