"""What the staff tables share: an order chosen from a whitelist of columns, text search, and a range of days.

A table offers its columns by key (``{"amount": Conversion.amount_cents, ...}``); the view reads ``?sort=`` and
``?dir=`` into a ``Sort`` (``affiliate.params.sort_param``), and the read orders by the chosen column with the
row's id as the tie-break, so rows with equal values keep one order from page to page. A key that is not offered
never reaches SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, func

ASC, DESC = "asc", "desc"


@dataclass(frozen=True)
class Sort:
    """A table's order: the key of a column it offers, and the direction."""

    key: str
    dir: str = ASC
    chosen: bool = field(default=True, compare=False)  # False: the table's own order, nobody asked for it

    @property
    def descending(self) -> bool:
        return self.dir == DESC

    def args(self) -> dict[str, str]:
        """The order as query arguments, for links that keep it (the pager, a form's action); none for the table's
        own order, so those links stay as short as before."""
        return {"sort": self.key, "dir": self.dir} if self.chosen else {}


def ordered(query: Select, sort: Sort, columns: Mapping[str, ColumnElement], tie_break: ColumnElement) -> Select:
    """``query`` ordered by the column ``sort`` names, then by ``tie_break`` in the same direction."""
    column = columns.get(sort.key, tie_break)
    if sort.descending:
        return query.order_by(column.desc(), tie_break.desc())
    return query.order_by(column.asc(), tie_break.asc())


def contains(column: ColumnElement, text: str) -> ColumnElement:
    """``column`` contains ``text``, in any case; ``%`` and ``_`` in the text are matched as themselves."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


@dataclass(frozen=True)
class Days:
    """A range of whole UTC days, either end open (None)."""

    first: date | None = None
    last: date | None = None

    def __bool__(self) -> bool:
        return self.first is not None or self.last is not None


def within(column: ColumnElement, days: Days) -> list[ColumnElement]:
    """Conditions keeping ``column`` inside ``days``: from the first day's midnight, up to the end of the last day."""
    conditions = []
    if days.first is not None:
        conditions.append(column >= datetime.combine(days.first, time.min, tzinfo=UTC))
    if days.last is not None and days.last < date.max:
        conditions.append(column < datetime.combine(days.last + timedelta(days=1), time.min, tzinfo=UTC))
    return conditions
