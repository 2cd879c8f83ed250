"""The partner home: money cards that agree with the earnings page, a checklist that ticks, the last 30 days."""

from __future__ import annotations

import re
from datetime import timedelta

from babel.dates import format_date

from affiliate.models import utcnow
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.money.test_accrual import report, set_plan
from tests.partner.helpers import cards, give_payout_details, history, signed_in
from tests.reports.helpers import click_record, store_for


def test_the_cards_show_pending_approved_paid_and_what_the_next_payout_needs(app):
    h = history(app)
    alice = signed_in(app, h.alice)
    home = alice.get("/partner/")
    assert home.status_code == 200
    found = cards(home.get_data(as_text=True))
    assert found["pending"].startswith("Pending $10.00")
    assert found["approved"].startswith("Approved $20.00")
    assert found["paid"].startswith("Paid $60.00")
    assert found["next"].startswith("Next payout $30.00 to go"), found["next"]
    assert "reaches the $50.00 minimum" in found["next"]
    assert "$70.00" not in home.get_data(as_text=True), "Bob's money is his"

    earnings = alice.get("/partner/earnings/")
    assert earnings.status_code == 200
    assert cards(earnings.get_data(as_text=True)) == found, "the earnings page shows the very same figures"


def test_a_balance_past_the_minimum_is_the_next_payout_unless_details_are_missing(app):
    h = history(app)
    bob = signed_in(app, h.bob)
    found = cards(bob.get("/partner/").get_data(as_text=True))
    assert found["next"].startswith("Next payout $70.00 Held: add your payout details"), found["next"]
    give_payout_details(app, h.bob)
    found = cards(bob.get("/partner/").get_data(as_text=True))
    assert found["next"] == "Next payout $70.00 Paid in the next payout batch."
    give_payout_details(app, h.bob, days_ago=0)
    assert "Held until" in cards(bob.get("/partner/").get_data(as_text=True))["next"]


def test_a_newcomer_sees_zero_cards_for_their_programs_and_a_checklist_that_ticks(app, redirector):
    program = make_program(app, make_admin(app), name="Hat Shop", minimum_payout_cents=2_500)
    newcomer = make_affiliate(app, name="Nina New")
    client = signed_in(app, newcomer)

    def steps() -> dict[str, bool]:
        html = client.get("/partner/").get_data(as_text=True)
        items = re.findall(r'<li class="(done|todo)" data-step="([a-z]+)">', html)
        return {key: state == "done" for state, key in items}

    html = client.get("/partner/").get_data(as_text=True)
    found = cards(html)
    assert found["pending"].startswith("Pending $0.00") and found["paid"].startswith("Paid $0.00")
    assert found["next"].startswith("Next payout $25.00 to go")
    assert "Add your payout details" in found["next"]
    # An open program: she may promote it at once.
    assert steps() == {"program": True, "link": False, "payout": False, "click": False, "conversion": False}
    assert 'href="/partner/links/new"' in html and 'href="/account/payout"' in html

    link = make_link(app, newcomer, program)
    give_payout_details(app, newcomer)
    assert steps() == {"program": True, "link": True, "payout": True, "click": False, "conversion": False}

    with store_for(app) as store:
        store.insert([click_record(link, utcnow())])
    assert steps()["click"] is True

    report(app, program, newcomer.id, "HAT-1", 4_000)
    html = client.get("/partner/").get_data(as_text=True)
    assert "Get started" not in html and 'class="checklist"' not in html, "all done: the checklist is gone"


def test_the_last_30_days_are_drawn_and_written_out(app, runner):
    program = make_program(app, make_admin(app), name="Cap Shop")
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    link = make_link(app, alice, program)
    now = utcnow()
    bot = click_record(link, now, is_bot=True, bot_reason="known_bot", device_type="bot")
    with store_for(app) as store:
        store.insert([click_record(link, now), click_record(link, now), bot])
    report(app, program, alice.id, "CAP-1", 12_345_600)
    assert runner.invoke(args=["accrue-commissions"]).exit_code == 0
    html = signed_in(app, alice).get("/partner/").get_data(as_text=True)
    assert 'data-figure="clicks">2</dd>' in html, "human clicks only"
    assert 'data-figure="sales">1</dd>' in html
    assert 'data-figure="earned-usd">$12,345.60</dd>' in html, "10% of $123,456.00"
    assert '<title id="chart-home-clicks-title">Human clicks per day</title>' in html
    assert '<title id="chart-home-sales-title">Sales per day</title>' in html
    assert '<title id="chart-home-earned-usd-title">Earned per day, in whole USD</title>' in html
    today = format_date(now, format="medium", locale="en_US")
    row = rf'<tr><th scope="row">{today}</th><td class="num">2</td><td class="num">1</td>\s*'
    row += r'<td class="num">\$12,345.60</td>'
    assert re.search(row, html), "the same numbers in a table, for reading without the chart"
    # The bars are whole dollars; the summary says what was earned, cents and all, as the headline does.
    assert ": $12,345.60 in total; the most, 12345, on" in html


def test_each_program_says_what_it_pays_and_its_terms(app):
    program = make_program(
        app, make_admin(app), name="Terms Shop", hold_days=14, minimum_payout_cents=123_400, cookie_days=45
    )
    set_plan(app, program.id, percent_bps=1_250)
    html = signed_in(app, make_affiliate(app)).get("/partner/").get_data(as_text=True)
    row = re.search(r"<strong>Terms Shop</strong>.*?</tr>", html, re.S).group(0)
    assert "12.5%" in row and "14 days" in row and "$1,234.00" in row
    assert "45-day cookie; last click wins within 30 days" in row
    now = utcnow()
    last_day = (now.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    ends = format_date(last_day, format="medium", locale="en_US")
    assert f"This month: 0 sales (the month ends with {ends}, UTC)." in row
