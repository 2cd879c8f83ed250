"""Report arithmetic and CSV shape: rates and EPC rounded explicitly, money as numbers, text neutralised."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from affiliate.reports.charts import bar_chart, nice_ceiling
from affiliate.services.exports import write_csv
from affiliate.services.report_figures import Figures, Row, reason_label
from affiliate.services.reports import csv_table


def test_rates_and_epc_are_rounded_half_even_and_absent_without_human_clicks():
    f = Figures(raw=9, human=8, unique=8, human_in={"USD": 8}, signups=1, sales=0, earned={"USD": 1})
    assert f.conversion_rate == Decimal("12.50") and f.excluded == 1
    assert f.epc("USD") == Decimal("0.0012")  # 0.01 / 8 = 0.00125 -> half even
    assert Figures(human=3, sales=1).conversion_rate == Decimal("33.33")
    assert Figures(raw=5).conversion_rate is None and Figures(raw=5).epc("USD") is None
    assert Figures(human=1, human_in={"JPY": 1}, earned={"JPY": 100}).epc("JPY") == Decimal("100.0000")
    # Each currency's earnings over the human clicks of the programs paying in it, never all of them.
    mixed = Figures(human=30, human_in={"USD": 10, "EUR": 20}, earned={"USD": 1000, "EUR": 1000})
    assert (mixed.epc("USD"), mixed.epc("EUR")) == (Decimal("1.0000"), Decimal("0.5000"))
    assert Figures(human=5, human_in={"USD": 5}, earned={"EUR": 100}).epc("EUR") is None


def test_refunds_take_revenue_away_in_their_currency():
    f = Figures()
    f.add_conversions("sale", "USD", 2, 5000)
    f.add_conversions("refund", "USD", 1, 7000)
    f.add_conversions("sale", "EUR", 1, 100)
    f.add_conversions("signup", "USD", 3, 0)
    assert (f.sales, f.signups, f.revenue) == (3, 3, {"USD": -2000, "EUR": 100})
    assert f.currencies == ["EUR", "USD"]


def test_csv_table_keeps_money_numeric_and_text_neutralised():
    rows = [
        Row(
            "=1+1",
            "=1+1",
            Figures(raw=4, human=2, unique=1, human_in={"USD": 2}, sales=1, revenue={"USD": -1000}, earned={"USD": 50}),
            "-detail",
        ),
        Row(None, "(none)", Figures(raw=1, human=1, unique=1, revenue={"EUR": 250})),
    ]
    header, table = csv_table("sub1", rows)
    parsed = list(csv.reader(io.StringIO(write_csv(table, header), newline="")))
    assert parsed[0] == [
        "sub1",
        "detail",
        "raw_clicks",
        "human_clicks",
        "unique_clicks",
        "excluded_clicks",
        "signups",
        "sales",
        "conversion_rate_percent",
        "revenue_EUR",
        "earned_EUR",
        "epc_EUR",
        "revenue_USD",
        "earned_USD",
        "epc_USD",
    ]
    assert parsed[1] == [
        "'=1+1",
        "'-detail",
        "4",
        "2",
        "1",
        "2",
        "0",
        "1",
        "50.00",
        "0.00",
        "0.00",
        "",  # no human click on a program paying in EUR: no EUR EPC
        "-10.00",
        "0.50",
        "0.2500",
    ]
    assert parsed[2][:2] == ["(none)", ""] and parsed[2][9] == "2.50"
    header, table = csv_table("excluded", [Row("rule:click_flooding", "Fraud rule: click flooding", Figures(raw=3))])
    assert (header, table) == (
        ("reason", "reason_code", "clicks"),
        [["Fraud rule: click flooding", "rule:click_flooding", 3]],
    )


def test_reason_labels():
    assert reason_label("bot:link_preview") == "Bot: link preview"
    assert reason_label("rule:cookie_stuffing") == "Fraud rule: cookie stuffing"
    assert reason_label("rule:affiliate_inactive") == "Affiliate not active"


def test_nice_ceiling():
    assert [nice_ceiling(n) for n in (0, 1, 2, 3, 7, 10, 11, 99, 101, 250, 5001)] == [
        1,
        1,
        2,
        5,
        10,
        10,
        20,
        100,
        200,
        500,
        10000,
    ]


def test_bar_chart_fits_its_box_and_says_what_it_shows():
    points = [(f"2026-11-{day:02d}", value) for day, value in zip(range(1, 31), [0, 3, 7] * 10, strict=True)]
    chart = bar_chart("c", "Human clicks per day", points)
    assert len(chart.bars) == 30 and len(chart.x_labels) <= 6
    for bar in chart.bars:
        assert chart.left <= bar.x and bar.x + bar.width <= chart.width and 0 <= bar.y <= chart.bottom
        assert abs(bar.y + bar.height - chart.bottom) < 0.01, "bars stand on the axis"
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.value == 7 and [tick.value for tick in chart.ticks] == [0, 5, 10]
    assert chart.ticks[0].y == chart.bottom and chart.ticks[-1].y < tallest.y, "the axis ends above the tallest bar"
    assert chart.summary == "From 2026-11-01 to 2026-11-30: 100 in total; the most, 7, on 2026-11-03."
    assert bar_chart("e", "Nothing", [("2026-11-01", 0)]).summary == "On 2026-11-01: none."
    assert bar_chart("e", "Nothing", []).bars == []


def test_an_axis_labels_only_whole_numbers_once():
    for tallest, labels in ((1, [0, 1]), (3, [0, 5]), (7, [0, 5, 10]), (0, [0, 1])):
        chart = bar_chart("c", "Clicks", [("2026-11-01", tallest), ("2026-11-02", 0)])
        assert [str(tick.value) for tick in chart.ticks] == [str(label) for label in labels], tallest
