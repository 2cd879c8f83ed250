"""Numbers taken from URLs: ids that fit the database's keys, and page numbers that fit an OFFSET.

A number a database column cannot hold is no id of anything: a path with one answers 404 (no route matches), and
a query filter with one is ignored, as a filter that is not a number always was. Page numbers are clamped.
"""

from __future__ import annotations

from flask import request
from werkzeug.routing import IntegerConverter

from affiliate.extensions import db

# Most tables' keys are INTEGER, 32 bits on PostgreSQL (a larger number sent for one is an error there, not
# "no such row"); conversions, commissions, clicks and the ledger have 64-bit keys (models.tracking.BigId).
ID_MAX = 2**31 - 1
BIG_ID_MAX = 2**63 - 1
PAGE_SIZE = 50  # rows on one page of any list
# A list whose rows staff tick to act on many at once (moving affiliates between groups) shows more per page.
TICKING_PAGE_SIZE = 100
PAGE_MAX = 1_000_000  # far past any list's last page; keeps (page - 1) * per_page well inside 64 bits


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
