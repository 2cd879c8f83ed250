"""Pseudonyms for erasure: stable within a request, unrelated across requests, never longer than their column."""

from __future__ import annotations

import pytest

from affiliate.services.erasure import NothingToErase, Pseudonyms, is_pseudonym, normalise


def test_a_value_gets_one_pseudonym_per_request_and_another_in_the_next():
    first, second = Pseudonyms(), Pseudonyms()
    assert first("203.0.113.9", 45) == first("203.0.113.9", 45)
    assert first("203.0.113.9", 45) != second("203.0.113.9", 45), "the key is new for each request"
    assert first("203.0.113.9", 45) != first("203.0.113.10", 45)
    assert "203.0.113.9" not in first("203.0.113.9", 45)


def test_pseudonyms_fit_their_column_and_are_left_alone():
    names = Pseudonyms()
    visitor = names("V" * 32, 32)
    assert len(visitor) == 32 and is_pseudonym(visitor)
    assert names(visitor, 32) == visitor, "a pseudonym is not pseudonymised again"
    assert names(None, 32) is None
    email = names.email(" Fran@Example.com ")
    assert email == names.email("fran@example.com") and email.endswith("@erased.invalid") and len(email) <= 254


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "no-at-sign"),
        ("email", ""),
        ("visitor_id", "   "),
        ("phone", "123"),
        ("click_id", "x" * 255),
        ("email", "erased-abc@erased.invalid"),
    ],
)
def test_unusable_identifiers_are_refused(kind, value):
    with pytest.raises(NothingToErase):
        normalise(kind, value)
