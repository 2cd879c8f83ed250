"""A stored attribution trace in words: how a click matched, what became of it, and when it was made."""

from __future__ import annotations

from datetime import datetime

from affiliate.formatting import NOTHING, when
from affiliate.services.attribution import CODE_NAMES, MATCH_NAMES

MATCHED_BY = {**MATCH_NAMES, **CODE_NAMES, "binding": "returning customer"}
OUTCOMES = {"won": "won", "lost": "lost", "ignored": "ignored"}
# A fraud verdict's action on one rule, as the conversion's page says it.
VERDICT_ACTIONS = {"allow": "recorded only", "flag": "flagged", "reject": "rejected"}


def matched_by(value: str | None) -> str:
    """How a click or code matched: "click_id" -> "click id", None -> "—"."""
    return MATCHED_BY.get(value or "") or (value.replace("_", " ") if value else NOTHING)


def trace_time(value: str | None) -> str:
    """A trace's ISO 8601 time as the portal writes moments: "Dec 5, 2026, 14:03:07 UTC"."""
    if not value:
        return NOTHING
    try:
        return when(datetime.fromisoformat(value), seconds=True)
    except ValueError:
        return value


def verdict_action(value: str | None) -> str:
    """What a fired rule did to the conversion: "flag" -> "flagged"."""
    return VERDICT_ACTIONS.get(value or "") or (value or "").replace("_", " ")
