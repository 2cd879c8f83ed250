"""Every CSV download keeps a hostile text as inert cells, whether a spreadsheet splits it on ``,``, ``;`` or tab.

A value such as ``Bob;=2+5;x`` (an affiliate's name, a campaign, a sub-ID, a device or browser a click reported)
is quoted, so split on ``,`` it is exactly one cell; split on ``;`` or tab no piece of it starts a cell with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return. Amounts stay plain numbers.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from affiliate.services.exports import FORMATS, FORMULA_TRIGGERS, PayoutLine, payout_file, write_csv
from affiliate.services.report_figures import BREAKDOWNS
from tests.factories import Auth, make_affiliate, make_link
from tests.reports.conftest import RANGE
from tests.reports.helpers import click_record, store_for

HOSTILE = "Bob;=2+5;x"
OTHERS = ("=1+1", "\t=tab", "+plus;-minus\t@at", 'quote";=HYPERLINK("http://evil.test")', 'x;"=1+1')
NUMBER = re.compile(r"-?\d+(\.\d+)?%?")
SEPARATORS = (",", ";", "\t")


def assert_inert(text: str, *values: str) -> None:
    """No cell of ``text`` is a live formula under any separator; each value is one whole cell under ``,``."""
    for separator in SEPARATORS:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=separator):
            for cell in row:
                assert NUMBER.fullmatch(cell) or not cell.startswith(FORMULA_TRIGGERS), (separator, cell, row)
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    for value in values:
        whole = [cell for cell in cells if cell.replace("'", "") == value.replace("'", "")]
        assert whole, (value, "is not one cell of the file")


def test_writer_quotes_text_cells_after_numbers_and_neutralises_every_piece():
    rows = [["ref", -1250, value, 3, value] for value in (HOSTILE, *OTHERS)]
    text = write_csv(rows, header=["ref", "amount", "name", "count", "again"])
    assert_inert(text, HOSTILE, *OTHERS)
    assert text.splitlines()[1] == '"ref",-1250,"Bob;\'=2+5;x",3,"Bob;\'=2+5;x"'


def test_payout_files_are_inert(app):
    for name in FORMATS:
        destination = f"{HOSTILE} GB82WEST12345698765432" if name == "bank" else "bob@example.com"
        lines = [PayoutLine(7, 3, HOSTILE, name, destination, 12_345, "USD")]
        text = payout_file(name, lines)
        assert_inert(text, *([HOSTILE] if "Bob" in text else []))  # PayPal's file has no name column


def _signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def test_every_report_download_is_inert(app, world):
    bob = make_affiliate(app, name=HOSTILE, email="hostile@example.com")
    link = make_link(app, bob, world.program, campaign=HOSTILE, subs=(HOSTILE, *OTHERS))
    record = click_record(
        link,
        datetime(2026, 11, 11, 9, tzinfo=UTC),
        sub1=HOSTILE,
        sub2=OTHERS[0],
        sub3=OTHERS[1],
        sub4=OTHERS[2],
        sub5=OTHERS[3],
        device_type=HOSTILE,
        browser=HOSTILE,
        country="US",
        referrer="https://evil.example/;=2+5",
    )
    with store_for(app) as store:
        store.insert([record])
    query = "?" + "&".join(f"{key}={value}" for key, value in RANGE.items())
    staff, affiliate = _signed_in(app, world.admin), _signed_in(app, bob)
    downloads = [
        (affiliate, f"/partner/reports/{name}.csv") for name, spec in BREAKDOWNS.items() if not spec.staff_only
    ] + [(staff, f"/admin/reports/{name}.csv") for name in BREAKDOWNS]
    downloads += [(staff, f"/admin/reports/affiliates/{bob.id}/{name}.csv") for name in BREAKDOWNS]
    downloads += [
        (staff, "/admin/reports/fraud.csv"),
        (staff, "/admin/reports/payouts.csv"),
        (staff, "/finance/payouts/yearly.csv"),
        (affiliate, "/partner/earnings/statement.csv"),
    ]
    found = served = 0
    for client, url in downloads:
        response = client.get(url + query)
        if response.status_code == 404 and url.startswith("/admin/reports/"):
            continue  # a breakdown staff do not have program-wide
        assert response.status_code == 200 and response.mimetype == "text/csv", url
        served += 1
        text = response.get_data(as_text=True)
        assert_inert(text)
        if HOSTILE in text.replace("'", ""):
            assert_inert(text, HOSTILE)
            found += 1
    # The hostile name, campaign, sub-ID, device and browser reach the breakdowns that show them.
    assert served >= 30 and found >= 8, (served, found)
