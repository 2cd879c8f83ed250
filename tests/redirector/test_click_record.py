"""The click's documented keys match what is recorded and stored (import cycles: tests/test_layout.py)."""

from __future__ import annotations

from pathlib import Path

from redirector import create_redirector
from redirector.clickrecord import ClickRecord, LoggedClick
from redirector.clickstore import COLUMNS
from tests.redirector.helpers import setup_link

ROOT = Path(__file__).resolve().parents[2]


def _keys(typed: type) -> set[str]:
    return set(typed.__required_keys__) | set(typed.__optional_keys__)


def test_a_click_record_has_a_key_for_every_stored_column():
    assert _keys(ClickRecord) == set(COLUMNS)


def test_a_logged_click_has_the_keys_the_request_records(app):
    s = setup_link(app)
    red = create_redirector(app.config)
    try:
        pending = red.respond({"REQUEST_METHOD": "GET", "PATH_INFO": f"/r/{s.link.code}", "REMOTE_ADDR": "192.0.2.1"})
        assert set(pending.click) == _keys(LoggedClick)
    finally:
        red.close()
