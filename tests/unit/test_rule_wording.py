"""Fraud rules in words: every rule has a name and a sentence, and no sentence says what its code does not do."""

from __future__ import annotations

import re

from affiliate.services.fraud import (
    ACTION_LABELS,
    DEFAULT_RULES,
    DESCRIPTIONS,
    LABELS,
    PAID_CLICK_PARAMS,
    SETTING_LABELS,
    Action,
    paid_click_params,
    rule_label,
    setting_label,
)

# Click ids ad networks and social sites add to links: the rule's list and the ones it leaves out.
KNOWN_CLICK_IDS = (*PAID_CLICK_PARAMS, "fbclid", "gclsrc", "mc_eid", "igshid", "s_kwcid")


def test_every_rule_has_a_label_and_one_sentence_and_every_threshold_a_name():
    for rule, setting in DEFAULT_RULES.items():
        assert LABELS.get(rule) and "_" not in LABELS[rule], rule
        description = DESCRIPTIONS.get(rule, "")
        assert description.endswith(".") and description[0].isupper(), rule
        assert description.count(". ") == 0, f"{rule}: one sentence"
        assert all(key in SETTING_LABELS for key in setting.settings), rule
    assert set(LABELS) == set(DESCRIPTIONS) == set(DEFAULT_RULES)
    assert set(ACTION_LABELS) == {action.value for action in Action}


def test_labels_read_as_words():
    assert rule_label("self_referral") == "Self-referral" and rule_label("click_flooding") == "Click flooding"
    assert rule_label("retired_rule") == "Retired rule" and rule_label(None) == ""
    assert setting_label("per_minute") == "Clicks per minute" and setting_label("new_threshold") == "New threshold"


def test_the_paid_traffic_description_names_exactly_the_click_ids_the_rule_counts():
    counted, _, left_out = DESCRIPTIONS["paid_traffic"].partition("; not ")
    named = {name for name in KNOWN_CLICK_IDS if re.search(rf"\b{name}\b", counted)}
    assert named == set(PAID_CLICK_PARAMS)
    assert re.search(r"\bfbclid\b", left_out) and "fbclid" not in PAID_CLICK_PARAMS
    assert paid_click_params({"fbclid"}) == () and paid_click_params({"gclid", "fbclid"}) == ("gclid",)
