"""Clicks stored the way the ingester stores them, and an independent recount of the rollups from raw clicks."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Click, ClickRollup, Link
from affiliate.services.traffic import human_click, unique_click
from redirector.clickstore import COLUMNS, ClickStore
from redirector.engines import make_engine
from tests.redirector.helpers import CHROME

_ids = itertools.count(1)


def click_record(link: Link, at: datetime, **fields) -> dict:
    """A click as the ingester receives it from the click log (decoded), before judging."""
    n = next(_ids)
    click = dict.fromkeys(COLUMNS)
    click.update(
        click_id=f"T{n:09d}" + "x" * 22,
        link_id=link.id,
        affiliate_id=link.affiliate_id,
        program_id=link.program_id,
        clicked_at=at,
        ip=f"198.51.100.{n % 250 + 1}",
        user_agent=CHROME,
        visitor_id=f"V{n:031d}",
        fingerprint=f"{n:032x}",
        is_bot=False,
        is_unique=True,
        fraud_score=0,
    )
    click.update(fields)
    return click


@contextmanager
def store_for(app) -> Iterator[ClickStore]:
    """The ingester's ClickStore on the app's database."""
    store = ClickStore(
        make_engine(app.config["SQLALCHEMY_DATABASE_URI"], immediate=True),
        timedelta(seconds=app.config["UNIQUE_CLICK_WINDOW_SECONDS"]),
    )
    try:
        yield store
    finally:
        store.engine.dispose()


def stored_rollups(app) -> dict[tuple, list[int]]:
    with app.app_context():
        return {
            (r.dimension, r.day, r.affiliate_id, r.program_id, r.value): [r.raw_clicks, r.human_clicks, r.unique_clicks]
            for r in db.session.scalars(select(ClickRollup))
        }


def recount(app) -> dict[tuple, list[int]]:
    """The rollups as raw clicks give them, computed without the rollup code: an oracle for it.

    Human and unique come from the SQL definitions, so this also checks that the ingester's
    Python verdicts agree with them.
    """
    expected: dict[tuple, list[int]] = {}
    with app.app_context():
        human = set(db.session.scalars(select(Click.id).where(human_click())))
        unique = set(db.session.scalars(select(Click.id).where(unique_click())))
        for c in db.session.scalars(select(Click)):
            base = (c.clicked_at.astimezone(UTC).date(), c.affiliate_id, c.program_id)
            pairs = [("total", ""), ("link", str(c.link_id))]
            host = _host(c.referrer)
            for dimension, value in (
                ("country", c.country),
                ("device", c.device_type),
                ("browser", c.browser),
                ("referrer", host),
                ("sub1", c.sub1),
                ("sub2", c.sub2),
                ("sub3", c.sub3),
                ("sub4", c.sub4),
                ("sub5", c.sub5),
            ):
                if value:
                    pairs.append((dimension, value))
            if c.id not in human:
                if c.is_bot:
                    pairs.append(("excluded", f"bot:{c.bot_reason}"))
                else:
                    rule = next(f["rule"] for f in json.loads(c.fraud_reasons) if f["action"] == "reject")
                    pairs.append(("excluded", f"rule:{rule}"))
            for dimension, value in pairs:
                counts = expected.setdefault((dimension, *base, value), [0, 0, 0])
                counts[0] += 1
                counts[1] += c.id in human
                counts[2] += c.id in unique
    return expected


def _host(referrer: str | None) -> str | None:
    try:
        return urlsplit(referrer).hostname if referrer else None
    except ValueError:  # "http://[::1": no host to credit
        return None
