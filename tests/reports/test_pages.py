"""Report pages and CSV exports on a small known world: figures, UTC day boundaries, who sees what, bad input."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.factories import Auth
from tests.reports.conftest import FORMULA, RANGE


def figures(html: str) -> dict[str, str]:
    """The summary tiles as text: {"raw": "6", "revenue": "$60.00", ...}."""
    found = re.findall(r'data-figure="([a-z-]+)">(.*?)</dd>', html, re.S)
    return {name: re.sub(r"<[^>]+>|\s+", " ", value).strip() for name, value in found}


def rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def test_dashboard_figures_for_a_known_world(app, world):
    client = signed_in(app, world.alice)
    page = client.get("/partner/reports/", query_string=RANGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert figures(html) == {
        "raw": "6",
        "human": "5",
        "unique": "4",
        "excluded": "1",
        "signups": "1",
        "sales": "2",
        "conversion-rate": "60.0%",
        "revenue": "$60.00",
        "earned": "$7.00",
        "epc": "$1.40",
        "commissions-pending": "$7.00",
        "commissions-approved": "—",
        "commissions-paid": "—",
    }
    # The charts are pictures with a title and a summary, and their numbers are in a table too.
    # Each chart is drawn twice, wide and compact (the stylesheet shows one, by screen width).
    assert html.count('<figure class="chart">') == 2 and html.count('role="img"') == 4
    assert '<title id="chart-clicks-title">Human clicks per day</title>' in html
    assert "From 2026-11-10 to 2026-11-12: 5 in total; the most, 2, on 2026-11-10." in html
    cells = r'<tr><th scope="row">(2026-11-1\d)</th><td class="num">(\d+)</td><td class="num">(\d+)</td>'
    days = re.findall(cells, html)
    assert days == [("2026-11-10", "2", "2"), ("2026-11-11", "3", "2"), ("2026-11-12", "1", "1")]
    assert "Bot: known bot" in html
    visible = re.sub(r'<input[^>]*type="hidden"[^>]*>', "", html)  # a random CSRF token can hold any three letters
    assert "Bob" not in visible and "bob-sub" not in visible


@pytest.mark.parametrize(
    ("start", "end", "raw", "sales"),
    [
        ("2026-11-10", "2026-11-10", "2", "1"),  # 00:00:00 is the day's; 11-09 23:59:59.999999 is not
        ("2026-11-12", "2026-11-12", "1", "1"),  # 23:59:59.999 is the day's; 23:30 in New York is the 13th in UTC
        ("2026-11-13", "2026-11-13", "2", "1"),
        ("2026-11-09", "2026-11-09", "1", "0"),
    ],
)
def test_days_are_utc_days_with_both_ends_included(app, world, start, end, raw, sales):
    client = signed_in(app, world.alice)
    shown = figures(client.get("/partner/reports/", query_string={"start": start, "end": end}).get_data(as_text=True))
    assert (shown["raw"], shown["sales"]) == (raw, sales)


def test_breakdowns_add_up_and_credit_conversions_to_their_click(app, world):
    client = signed_in(app, world.alice)
    country = {row["country"]: row for row in rows(client.get("/partner/reports/country.csv", query_string=RANGE))}
    shown = {name: (r["raw_clicks"], r["human_clicks"], r["sales"], r["revenue_USD"]) for name, r in country.items()}
    assert shown == {
        "US": ("2", "2", "1", "40.00"),  # the sale less its refund, both on the first click
        "GB": ("1", "1", "1", "20.00"),
        "DE": ("1", "0", "0", "0.00"),  # the bot
        "(none)": ("2", "2", "0", "0.00"),
    }
    assert country["GB"]["signups"] == "1" and country["US"]["earned_USD"] == "5.00"
    links = rows(client.get("/partner/reports/link.csv", query_string=RANGE))
    assert [(r["link"], r["detail"], r["raw_clicks"], r["unique_clicks"]) for r in links] == [
        (world.spring.code, "spring", "4", "3"),
        (world.plain.code, "", "2", "1"),
    ]
    referrers = {
        r["referrer"]: r["raw_clicks"] for r in rows(client.get("/partner/reports/referrer.csv", query_string=RANGE))
    }
    assert referrers == {"t.co": "1", "www.youtube.com": "1", "(none or direct)": "4"}
    excluded = rows(client.get("/partner/reports/excluded.csv", query_string=RANGE))
    assert excluded == [{"reason": "Bot: known bot", "reason_code": "bot:known_bot", "clicks": "1"}]


def test_csv_exports_neutralise_formulas_and_hold_only_the_affiliates_own_rows(app, world):
    alice, bob = signed_in(app, world.alice), signed_in(app, world.bob)
    subs = rows(alice.get("/partner/reports/sub1.csv", query_string=RANGE))
    assert [r["sub1"] for r in subs] == ["'" + FORMULA, "(none)"]
    everything = ""
    for dimension in ("link", "campaign", "sub1", "country", "referrer", "day", "program", "device", "browser"):
        bobs = rows(bob.get(f"/partner/reports/{dimension}.csv", query_string=RANGE))
        everything += repr(bobs)
        alices = rows(alice.get(f"/partner/reports/{dimension}.csv", query_string=RANGE))
        assert "Bob secret campaign" not in repr(alices) and "bob-sub" not in repr(alices)
        assert world.bobs.code not in repr(alices)
    assert world.spring.code not in everything and world.plain.code not in everything
    for secret in ("spring", "HYPERLINK", "'US'", "'GB'", "t.co"):
        assert secret not in everything, secret
    bob_links = rows(bob.get("/partner/reports/link.csv", query_string=RANGE))
    assert [(r["link"], r["raw_clicks"], r["sales"]) for r in bob_links] == [(world.bobs.code, "2", "1")]
    # Alice cannot filter on a program she has no link on: the filter refuses it rather than show its data.
    assert alice.get("/partner/reports/", query_string={**RANGE, "program": 999_999}).status_code == 400


def test_staff_drill_down_shows_the_affiliates_own_figures(app, world):
    own = signed_in(app, world.alice).get("/partner/reports/", query_string=RANGE)
    alice_view = figures(own.get_data(as_text=True))
    for person in (world.admin, world.finance):
        client = signed_in(app, person)
        page = client.get(f"/admin/reports/affiliates/{world.alice.id}", query_string=RANGE)
        assert page.status_code == 200 and figures(page.get_data(as_text=True)) == alice_view
        sub = rows(client.get(f"/admin/reports/affiliates/{world.alice.id}/sub1.csv", query_string=RANGE))
        assert [r["sub1"] for r in sub] == ["'" + FORMULA, "(none)"]
        assert client.get(f"/admin/reports/affiliates/{world.admin.id}").status_code == 404
        assert client.get("/admin/reports/affiliates/999999/country").status_code == 404
    bob = signed_in(app, world.bob)
    assert bob.get(f"/admin/reports/affiliates/{world.alice.id}").status_code == 403


def test_staff_overview_totals_every_affiliate(app, world):
    client = signed_in(app, world.admin)
    html = client.get("/admin/reports/", query_string=RANGE).get_data(as_text=True)
    shown = figures(html)
    assert (shown["raw"], shown["human"], shown["sales"], shown["revenue"]) == ("8", "7", "3", "$159.00")
    assert "Alice Example" in html and "Bob Other" in html
    affiliates = rows(client.get("/admin/reports/affiliate.csv", query_string=RANGE))
    assert [(r["affiliate"], r["detail"], r["sales"], r["raw_clicks"]) for r in affiliates] == [
        ("Alice Example", "alice@example.com", "2", "6"),
        ("Bob Other", "bob@example.com", "1", "2"),
    ]
    fraud = client.get("/admin/reports/fraud", query_string=RANGE).get_data(as_text=True)
    assert "Self-referral" in fraud and "Bot: known bot" in fraud
    flags = rows(client.get("/admin/reports/fraud.csv", query_string=RANGE))
    assert {"rule": "self_referral", "action": "reject", "conversions": "1", "awaiting_review": "0"} in flags
    assert client.get("/admin/reports/payouts", query_string=RANGE).status_code == 200
    assert rows(client.get("/admin/reports/payouts.csv", query_string=RANGE)) == []


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/partner/reports/?start=2026-11-31", 400, "Enter a date as YYYY-MM-DD"),
        ("/partner/reports/?start=yesterday", 400, "Enter a date as YYYY-MM-DD"),
        ("/partner/reports/?start=20261110", 400, "Enter a date as YYYY-MM-DD"),
        ("/partner/reports/?start=", 400, "Enter a date as YYYY-MM-DD"),
        ("/partner/reports/?start=2026-11-12&end=2026-11-10", 400, "The end is before the start."),
        ("/partner/reports/?start=2024-01-01&end=2026-01-01", 400, "Choose at most 366 days."),
        ("/partner/reports/?start=0001-01-01&end=0001-01-02", 400, "Choose a date between"),
        ("/partner/reports/?start=9999-12-30&end=9999-12-31", 400, "Choose a date between"),
        ("/partner/reports/?program=abc", 400, "Choose one of the programs listed."),
        ("/partner/reports/?program=999999", 400, "Choose one of the programs listed."),
        ("/partner/reports/country?end=2026-02-30", 400, "Enter a date as YYYY-MM-DD"),
        ("/partner/reports/country.csv?start=x", 400, None),
        ("/partner/reports/planet", 404, None),
        ("/partner/reports/affiliate", 404, None),  # staff only
        ("/partner/reports/planet.csv", 404, None),
        ("/partner/reports/country?page=-1", 400, None),
        ("/partner/reports/country?page=1e3", 400, None),
        ("/partner/reports/country?page=0", 404, None),
        ("/partner/reports/country?page=99", 404, None),
        ("/partner/reports/country?page=" + "9" * 30, 400, None),
    ],
)
def test_bad_input_is_a_clear_4xx(app, world, url, status, message):
    response = signed_in(app, world.alice).get(url)
    assert response.status_code == status
    if message:
        assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/reports/country",
        "/admin/reports/link.csv",
        "/admin/reports/?start=nope",
        "/admin/reports/fraud?end=2026-99-01",
        "/admin/reports/fraud.csv?start=x",
        "/admin/reports/payouts.csv?start=x",
        "/admin/reports/payouts?page=-1",
        "/admin/reports/affiliate?page=2",
    ],
)
def test_bad_staff_input_is_a_clear_4xx(app, world, url):
    assert 400 <= signed_in(app, world.admin).get(url).status_code < 500


def test_pages_paginate_and_keep_their_filters(app, world):
    client = signed_in(app, world.alice)
    page = client.get("/partner/reports/day", query_string={"start": "2026-01-01", "end": "2026-12-31"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Page 1 of 8" in html
    assert "/partner/reports/day?page=2&amp;start=2026-01-01&amp;end=2026-12-31" in html
    last = client.get("/partner/reports/day", query_string={"start": "2026-01-01", "end": "2026-12-31", "page": 8})
    assert "2026-12-31" in last.get_data(as_text=True) and "2026-01-01</th>" not in last.get_data(as_text=True)
    csv_rows = rows(client.get("/partner/reports/day.csv", query_string={"start": "2026-01-01", "end": "2026-12-31"}))
    assert len(csv_rows) == 365, "the CSV has every row, not one page"
