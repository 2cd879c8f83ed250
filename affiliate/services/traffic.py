"""What counts as a human, a unique and an excluded click: the one definition pages, reports and rollups share.

- **raw**: every stored click.
- **human**: not a bot (``is_bot``) and not rejected by a fraud rule (``fraud_action`` is not
  ``reject``). Clicks a rule only flagged or allowed still count: they are people until
  finance decides otherwise, and they can win attribution.
- **unique**: human, and the recorder marked it unique (``is_unique``): the first click of its
  visitor or device on that link inside ``UNIQUE_CLICK_WINDOW_SECONDS``.
- **excluded**: raw minus human. Each excluded click has one reason: ``bot:<bot reason>`` for a
  bot, else ``rule:<rule>`` for the first fraud rule that rejected it, so reasons add up to
  the excluded count.

The SQL expressions (for queries over clicks) and the Python functions (for the ingester's
rollups, computed before the row is written) must agree; tests compare the two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, or_

from affiliate.models import Click

REJECT = "reject"
UNKNOWN_REASON = "unknown"

# Dimensions kept in click_rollups, with the click field each reads. "total" has the value "";
# a click with no value for a dimension (no country, no sub2) adds to no row of it, so a report
# shows the difference from the total as "none".
DIMENSIONS: tuple[str, ...] = (
    "total", "link", "country", "device", "browser", "referrer", "sub1", "sub2", "sub3", "sub4", "sub5", "excluded",
)  # fmt: skip
VALUE_MAX = 255


def is_human(is_bot: bool | None, fraud_action: str | None) -> bool:
    """A person's click: not a bot, not rejected by a fraud rule."""
    return not is_bot and fraud_action != REJECT


def is_unique_human(is_bot: bool | None, fraud_action: str | None, is_unique: bool | None) -> bool:
    """A human click that is its visitor's or device's first on the link inside the unique window."""
    return is_human(is_bot, fraud_action) and bool(is_unique)


def exclusion_reason(is_bot: bool | None, bot_reason: str | None, fraud_reasons: str | None) -> str:
    """Why a non-human click is left out: its bot reason, else the first rule that rejected it."""
    if is_bot:
        return f"bot:{bot_reason or UNKNOWN_REASON}"
    try:
        fired = json.loads(fraud_reasons or "[]")
    except ValueError:
        fired = []
    for entry in fired if isinstance(fired, list) else []:
        if isinstance(entry, dict) and entry.get("action") == REJECT and entry.get("rule"):
            return f"rule:{entry['rule']}"[:VALUE_MAX]
    return f"rule:{UNKNOWN_REASON}"


def human_click() -> ColumnElement[bool]:
    """SQL: the clicks ``is_human`` accepts."""
    return and_(Click.is_bot.is_(False), or_(Click.fraud_action.is_(None), Click.fraud_action != REJECT))


def unique_click() -> ColumnElement[bool]:
    """SQL: the clicks ``is_unique_human`` accepts."""
    return and_(human_click(), Click.is_unique.is_(True))


@lru_cache(maxsize=4096)  # referrers repeat, and parsing is most of what rolling up a click costs
def referrer_host(referrer: str | None) -> str | None:
    """The host a click came from ("www.youtube.com"), lower case; None when there is none or it is not a URL."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer.strip()).hostname
    except ValueError:
        return None
    return host[:VALUE_MAX] if host else None


def dimension_values(click: Mapping) -> list[tuple[str, str]]:
    """The (dimension, value) pairs one click adds to, "total" first."""
    pairs = [("total", ""), ("link", str(click["link_id"]))]
    for dimension, value in (
        ("country", click.get("country")),
        ("device", click.get("device_type")),
        ("browser", click.get("browser")),
        ("referrer", referrer_host(click.get("referrer"))),
        ("sub1", click.get("sub1")),
        ("sub2", click.get("sub2")),
        ("sub3", click.get("sub3")),
        ("sub4", click.get("sub4")),
        ("sub5", click.get("sub5")),
    ):
        if value:
            pairs.append((dimension, value[:VALUE_MAX]))
    if not is_human(click.get("is_bot"), click.get("fraud_action")):
        pairs.append(
            ("excluded", exclusion_reason(click.get("is_bot"), click.get("bot_reason"), click.get("fraud_reasons")))
        )
    return pairs
