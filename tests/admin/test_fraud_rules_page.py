"""The fraud rules page names each rule, what it does when it fires and its thresholds in words."""

from __future__ import annotations

import re

from affiliate.services.fraud import DESCRIPTIONS
from tests.factories import Auth, csrf_token, make_admin, make_program


def test_rules_and_their_settings_read_as_words_and_save_by_their_values(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    browser = app.test_client()
    Auth(browser).login(admin.email)
    url = f"/admin/programs/{program.id}/fraud/"
    page = browser.get(url).get_data(as_text=True)
    for label in ("Self-referral", "Click flooding", "Paid ad traffic", "Clicks per minute", "Flag for review"):
        assert label in page
    assert "not fbclid" in DESCRIPTIONS["paid_traffic"] and "not fbclid" in page
    shown = re.sub(r"<[^>]+>", " ", page)  # the text people read, without attribute values
    assert not re.search(r"\b(self_referral|click_flooding|per_minute|min_unactivated_share|allow)\b", shown)
    saved = browser.post(url, data={"csrf_token": csrf_token(page), "too_fast.action": "off"}, follow_redirects=True)
    assert "1 rule changed" in saved.get_data(as_text=True)
    assert re.search(r'<option value="off"\s+selected>Off</option>', saved.get_data(as_text=True))
