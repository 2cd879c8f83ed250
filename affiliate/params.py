"""What lists read from URLs: ids that fit the database's keys, page numbers that fit an OFFSET, a sort, search
text and a range of days.

A number a database column cannot hold is no id of anything: a path with one answers 404 (no route matches), and
a query filter with one is ignored, as a filter that is not a number always was. Page numbers are clamped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from flask import request
from werkzeug.routing import IntegerConverter

from affiliate.extensions import db
from affiliate.services.listing import ASC, DESC, Days, Sort

# Most tables' keys are INTEGER, 32 bits on PostgreSQL (a larger number sent for one is an error there, not
# "no such row"); conversions, commissions, clicks and the ledger have 64-bit keys (models.tracking.BigId).
ID_MAX = 2**31 - 1
BIG_ID_MAX = 2**63 - 1
PAGE_SIZE = 50  # rows on one page of any list
# A list whose rows staff tick to act on many at once (moving affiliates between groups) shows more per page.
TICKING_PAGE_SIZE = 100
PAGE_MAX = 1_000_000  # far past any list's last page; keeps (page - 1) * per_page well inside 64 bits
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class IdConverter(IntegerConverter):
    """``<int:...>`` in routes: ASCII digits from 1 up to the largest key a 32-bit id column holds."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = ID_MAX, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class BigIdConverter(IdConverter):
    """``<bigid:...>``: the ids of the tables with 64-bit keys (conversions, commissions)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = BIG_ID_MAX, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def parse_id(text: str | None, *, big: bool = False) -> int | None:
    """``text`` as a row id, or None unless it is plain ASCII digits naming a possible key (``big``: of a table
    with 64-bit keys)."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if 1 <= value <= (BIG_ID_MAX if big else ID_MAX) else None


def query_id(name: str) -> int | None:
    """The id in query argument ``name``, or None for a missing or impossible one."""
    return parse_id(request.args.get(name))


def form_ids(name: str = "ids", *, big: bool = False) -> list[int]:
    """The distinct, possible ids posted under ``name``, in order; anything else is dropped."""
    return sorted({value for value in (parse_id(text, big=big) for text in request.form.getlist(name)) if value})


def page_number() -> int:
    """The ?page= asked for, 1 when it is missing or not a number, and never past PAGE_MAX."""
    text = request.args.get("page", "")
    if not (text.isascii() and text.isdigit()):
        return 1
    return max(1, min(int(text[:8]), PAGE_MAX))


def paginate(stmt, per_page: int = PAGE_SIZE):
    """One page of ``stmt``; the page size is the view's, never the visitor's."""
    return db.paginate(stmt, page=page_number(), per_page=per_page, max_per_page=per_page, error_out=False)


def sort_param(keys: Iterable[str], default: Sort) -> Sort:
    """The ?sort= and ?dir= asked for, when ``keys`` offers that sort; otherwise ``default`` (a direction that is
    neither asc nor desc keeps the default's)."""
    key = request.args.get("sort", "")
    direction = request.args.get("dir", "")
    if key not in set(keys):
        key = default.key
    if direction not in (ASC, DESC):
        direction = default.dir
    return Sort(key, direction, chosen=(key, direction) != (default.key, default.dir))


def text_param(name: str, limit: int = 100) -> str:
    """A search text from the query, trimmed and cut to ``limit`` characters."""
    return (request.args.get(name) or "").strip()[:limit]


def days_param(first: str = "start", last: str = "end") -> tuple[Days, list[str]]:
    """The range of days in ?start= and ?end= (YYYY-MM-DD, both ends included), and what was wrong with them:
    a date that cannot be read is left out, and so is a range that ends before it starts."""
    errors = []
    found: dict[str, date | None] = {}
    for name, label in ((first, "From"), (last, "To")):
        text = (request.args.get(name) or "").strip()
        found[name] = None
        if not text:
            continue
        if not DAY.fullmatch(text):
            errors.append(f"{label}: enter a date as YYYY-MM-DD, such as 2026-03-31; “{text[:20]}” was left out.")
            continue
        try:
            found[name] = date.fromisoformat(text)
        except ValueError:
            errors.append(f"{label}: {text} is not a date in the calendar; it was left out.")
    days = Days(found[first], found[last])
    if days.first and days.last and days.last < days.first:
        errors.append("The range ends before it starts: the dates were left out.")
        days = Days()
    return days, errors


@dataclass(frozen=True)
class ListFilters:
    """The filters the staff lists of conversions and commissions share, read from the query: a program (by id, from
    a select), an affiliate (a name, email or referral code, or an id), part of an order id and a range of days.
    ``args`` holds the usable ones as query arguments, for links that keep them; ``errors`` says what was left out."""

    program_id: int | None
    affiliate: str
    order: str
    days: Days
    errors: list[str]
    args: dict[str, str]


def list_filters() -> ListFilters:
    """The shared filters of the request's query (see ListFilters)."""
    program_id = query_id("program")
    affiliate, order = text_param("affiliate"), text_param("order")
    days, errors = days_param()
    args = {"program": str(program_id) if program_id else "", "affiliate": affiliate, "order": order}
    if days.first:
        args["start"] = days.first.isoformat()
    if days.last:
        args["end"] = days.last.isoformat()
    return ListFilters(program_id, affiliate, order, days, errors, {k: v for k, v in args.items() if v})
