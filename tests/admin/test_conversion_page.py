"""A conversion's page in words: its fraud verdict by rule label, its trace's times and matches, for staff in
full and for the credited affiliate with other partners' clicks hidden."""

from __future__ import annotations

import html
import re

from tests.api.helpers import click, world
from tests.factories import Auth, Visitor, make_admin

MOMENT = r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{2}:\d{2}:\d{2} UTC"


def text_of(page: str) -> str:
    main = re.search(r"<main[^>]*>(.*)</main>", page, re.S).group(1)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main)))


def test_staff_read_the_verdict_and_trace_in_words_and_the_affiliate_the_redacted_trace(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click(shopper, links["bob"].code)
    won = click(shopper, links["alice"].code)
    redirector.recorder.flush()
    sale = merchant.sale("words-1", 4_200, click_id=won, visitor_id=shopper.get_cookie("ct_vid").value)
    conversion_id = sale.json["conversion"]["id"]
    staff = app.test_client()
    Auth(staff).login(make_admin(app).email)
    page = text_of(staff.get(f"/admin/conversions/{conversion_id}").get_data(as_text=True))
    assert "Too fast after the click (flagged)" in page and "fewer than the minimum seconds" in page
    assert "too_fast" not in page and "too fast (flag)" not in page
    assert len(re.findall(MOMENT, page)) >= 4, "occurred, reported and each click's time, to the second, in UTC"
    assert "click id" in page and "visitor cookie" in page and "Alice" in page and "Bob" in page
    assert "$42.00" in page

    alice = app.test_client()
    Auth(alice).login(people["alice"].email)
    own = text_of(alice.get(f"/partner/conversions/{conversion_id}").get_data(as_text=True))
    assert "Another partner's click." in own and "another partner" in own and "Bob" not in own
    assert "Too fast" not in own and "Fraud verdict" not in own, "the verdict is for staff"
    assert re.search(MOMENT, own)
