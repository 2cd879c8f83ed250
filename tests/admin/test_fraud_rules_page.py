"""The fraud rules page names each rule, what it does when it fires and its thresholds in words."""

from __future__ import annotations

import re

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import FraudRule
from affiliate.services.fraud import DEFAULT_RULES, DESCRIPTIONS
from tests.factories import Auth, csrf_token, make_admin, make_program


def _signed_in_on_the_rules_page(app):
    """A program, an admin's browser signed in, and the program's fraud rules page."""
    admin = make_admin(app)
    program = make_program(app, admin)
    browser = app.test_client()
    Auth(browser).login(admin.email)
    return program, browser, f"/admin/programs/{program.id}/fraud/"


def test_rules_and_their_settings_read_as_words_and_save_by_their_values(app):
    _, browser, url = _signed_in_on_the_rules_page(app)
    page = browser.get(url).get_data(as_text=True)
    for label in ("Self-referral", "Click flooding", "Paid ad traffic", "Clicks per minute", "Flag for review"):
        assert label in page
    assert "not fbclid" in DESCRIPTIONS["paid_traffic"] and "not fbclid" in page
    shown = re.sub(r"<[^>]+>", " ", page)  # the text people read, without attribute values
    assert not re.search(r"\b(self_referral|click_flooding|per_minute|min_unactivated_share|allow)\b", shown)
    saved = browser.post(url, data={"csrf_token": csrf_token(page), "too_fast.action": "off"}, follow_redirects=True)
    assert "1 rule changed" in saved.get_data(as_text=True)
    assert re.search(r'<option value="off"\s+selected>Off</option>', saved.get_data(as_text=True))


def test_a_number_field_that_is_not_a_plain_whole_number_is_a_form_error_and_changes_nothing(app):
    """One field at a time, the others left as they are: digits int() refuses (superscripts, other scripts), signs,
    decimals, blanks, NUL and numbers out of range each get the field's own message."""
    program, browser, url = _signed_in_on_the_rules_page(app)
    before = browser.get(url).get_data(as_text=True)
    token = csrf_token(before)
    fields = [f"{name}.weight" for name in DEFAULT_RULES] + [
        f"{name}.{key}"
        for name, rule in DEFAULT_RULES.items()
        for key, value in rule.settings.items()
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    assert len(fields) > len(DEFAULT_RULES)
    for field in fields:
        for value in ("²", "¹²", "١٢", "-1", "+5", "1.5", "", " ", "\x00", "9" * 30, "9" * 5000):
            answer = browser.post(url, data={"csrf_token": token, field: value})
            assert answer.status_code == 422, (field, value)
            assert "Enter a whole number" in answer.get_data(as_text=True), (field, value)
    with app.app_context():
        stored = db.session.scalars(select(FraudRule).where(FraudRule.program_id == program.id)).all()
        assert stored == [], "nothing was saved"
