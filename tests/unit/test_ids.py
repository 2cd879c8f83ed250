"""Click ids carry the time they were issued, which lets a fast conversion wait for its click."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from affiliate.ids import issued_at, new_id


def test_an_id_says_when_it_was_issued_to_the_millisecond():
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    value = new_id()
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    assert len(value) == 32 and before <= issued_at(value) <= after


def test_ids_of_another_form_have_no_time():
    for value in ("", "short", "!" * 32, "not-a-click-id-at-all-000000000", "ILOU" * 8):
        assert issued_at(value) is None, value
