"""Reports: clicks, conversions and earnings over a range of UTC days, in total, per day and per dimension.

What each figure means is ``affiliate.services.report_figures``, with the types that hold them.

Every report is three grouped queries, folded together here: clicks, conversions and
commissions. Overviews (totals, days, programs, affiliates) read all three from rollups kept
per UTC day, affiliate and program (``affiliate.services.rollups``). A breakdown by one of a
click's dimensions (country, sub-ID, link, ...) reads the click rollups of that dimension and
the range's conversions themselves, each credited to its click's value, through the index on
conversions (affiliate_id, occurred_at).

Why one module: every report is built from the same three queries over the same scope filters, and the
folding of their rows is shared by all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from affiliate.models import (
    Click,
    ClickRollup,
    Commission,
    CommissionRollup,
    Conversion,
    ConversionRollup,
    ConversionStatus,
    ConversionType,
    Link,
    Payout,
    Program,
    User,
)
from affiliate.money import to_decimal
from affiliate.services.accrual import LIVE_COMMISSIONS
from affiliate.services.exports import Cell
from affiliate.services.report_figures import (
    BREAKDOWNS,
    NONE_LABELS,
    ClickCounts,
    Figures,
    Overview,
    PayoutCount,
    Period,
    Row,
    RuleCount,
    Scope,
    reason_label,
    row_currencies,
)
from affiliate.services.rollups import as_date, utc_day
from affiliate.services.traffic import referrer_host

# The click rollup column each breakdown groups by ("value" for the rest).
ROLLUP_KEYS = {"day": ClickRollup.day, "program": ClickRollup.program_id, "affiliate": ClickRollup.affiliate_id}
# What a conversion is grouped by: its own column, or its click's ("day" is computed per database).
CONVERSION_KEYS: dict[str, ColumnElement] = {
    "program": Conversion.program_id,
    "affiliate": Conversion.affiliate_id,
    "link": Click.link_id,
    "campaign": Click.link_id,
    "country": Click.country,
    "device": Click.device_type,
    "browser": Click.browser,
    "referrer": Click.referrer,
    **{f"sub{n}": getattr(Click, f"sub{n}") for n in range(1, 6)},
}
CLICK_KEYED = {"link", "campaign", "country", "device", "browser", "referrer", "sub1", "sub2", "sub3", "sub4", "sub5"}


def overview(session: Session, scope: Scope, period: Period) -> Overview:
    """Totals, every day, and per program and per affiliate, from the rollups.

    Each of the three sources is summed by day, by program and by affiliate in the database,
    so a few hundred rows come back however many affiliates and days there are.
    """
    groups: dict[str, dict[object, Figures]] = {
        "day": {day: Figures() for day in period.days},
        "program": {},
        "affiliate": {},
    }
    statuses: dict[str, dict[str, int]] = {}
    for key, found in groups.items():

        def row(value: object, found: dict = found, key: str = key) -> Figures:
            return found.setdefault(as_date(value) if key == "day" else value, Figures())

        for (value,), counts in _click_counts(session, scope, period, "total", (key,)).items():
            row(value).add_clicks(counts)
        for value, kind, currency, count, cents in _rolled_up_conversions(session, scope, period, key):
            row(value).add_conversions(kind, currency, count, cents)
        for value, status, currency, own, cents in _rolled_up_commissions(session, scope, period, key):
            if own and status in LIVE_COMMISSIONS:
                row(value).add_earned(currency, cents)
            if key == "program":  # every commission is in exactly one program's rows
                by_currency = statuses.setdefault(status, {})
                by_currency[currency] = by_currency.get(currency, 0) + cents
    total = Figures()
    for figures in groups["program"].values():
        total.add_clicks(figures.clicks)
        total.signups, total.sales = total.signups + figures.signups, total.sales + figures.sales
        for currency, cents in figures.revenue.items():
            total.revenue[currency] = total.revenue.get(currency, 0) + cents
        for currency, cents in figures.earned.items():
            total.add_earned(currency, cents)
    return Overview(
        total=total,
        commissions=statuses,
        days=[Row(day, day.isoformat(), figures) for day, figures in groups["day"].items()],
        programs=_sorted(_label(session, "program", groups["program"], {})),
        affiliates=_sorted(_label(session, "affiliate", groups["affiliate"], {})),
    )


def breakdown(session: Session, scope: Scope, period: Period, name: str) -> list[Row]:
    """The period's figures per value of one breakdown, sorted for reading ("day" in date order)."""
    if name in ("day", "program", "affiliate"):
        whole = overview(session, scope, period)
        return {"day": whole.days, "program": whole.programs, "affiliate": whole.affiliates}[name]
    spec = BREAKDOWNS[name]
    rows: dict[object, Figures] = {}
    clicks = {
        values[0]: counts for values, counts in _click_counts(session, scope, period, spec.rollup, (name,)).items()
    }
    links: dict[int, Link] = {}
    if name in ("link", "campaign"):
        ids = {int(value) for value in clicks} | set(_converted_link_ids(session, scope, period))
        links = _load_links(session, scope, ids)
    for value, counts in clicks.items():
        rows.setdefault(_normalise(name, value, links), Figures()).add_clicks(counts)
    if spec.has_none:
        rest = _click_counts(session, scope, period, "total", ())[()].less(clicks.values())
        if rest.raw or rest.human or rest.unique:
            rows.setdefault(None, Figures()).add_clicks(rest)
    if name != "excluded":

        def row(value: object) -> Figures:
            if name == "referrer" and value is not None:
                value = referrer_host(value)  # the rollups keep the host; the click keeps the URL
            return rows.setdefault(_normalise(name, value, links), Figures())

        for (value,), kind, currency, count, cents in _conversion_counts(session, scope, period, (name,)):
            row(value).add_conversions(kind, currency, count, cents)
        for (value,), status, currency, own, cents in _commission_sums(session, scope, period, (name,)):
            if own and status in LIVE_COMMISSIONS:
                row(value).add_earned(currency, cents)
    labelled = _label(session, name, rows, links)
    return sorted(labelled, key=lambda r: r.key) if name == "day" else _sorted(labelled)


def csv_table(dimension: str, rows: list[Row]) -> tuple[tuple[str, ...], list[list[Cell]]]:
    """A breakdown as CSV columns for ``write_csv``: text cells (neutralised there), counts as int, money as Decimal."""
    if dimension == "excluded":
        return ("reason", "reason_code", "clicks"), [[row.label, row.key, row.figures.raw] for row in rows]
    money_in = row_currencies(rows)
    header = (
        dimension,
        "detail",
        "raw_clicks",
        "human_clicks",
        "unique_clicks",
        "excluded_clicks",
        "signups",
        "sales",
        "conversion_rate_percent",
        *(f"{kind}_{currency}" for currency in money_in for kind in ("revenue", "earned", "epc")),
    )
    table = []
    for row in rows:
        f = row.figures
        money: list[Cell] = []
        for currency in money_in:
            money += [
                to_decimal(f.revenue.get(currency, 0), currency),
                to_decimal(f.earned.get(currency, 0), currency),
                f.epc(currency),
            ]
        table.append(
            [row.label, row.detail, f.raw, f.human, f.unique, f.excluded, f.signups, f.sales, f.conversion_rate, *money]
        )
    return header, table


def conversion_flags(session: Session, scope: Scope, period: Period) -> list[RuleCount]:
    """Conversions in the period per fraud rule that flagged or rejected them (one may count under several)."""
    stmt = select(Conversion.fraud_reasons, Conversion.status).where(
        Conversion.occurred_at >= period.start_at,
        Conversion.occurred_at < period.end_at,
        Conversion.fraud_reasons.is_not(None),
        *_conversion_scope(scope),
    )
    counts: dict[tuple[str, str], list[int]] = {}
    for reasons, status in session.execute(stmt):
        for rule, action in _fired(reasons):
            entry = counts.setdefault((rule, action), [0, 0])
            entry[0] += 1
            entry[1] += status == ConversionStatus.FLAGGED
    return sorted(
        (RuleCount(rule, action, n, waiting) for (rule, action), (n, waiting) in counts.items()),
        key=lambda c: (-c.conversions, c.rule, c.action),
    )


def payout_summary(session: Session, period: Period) -> tuple[list[PayoutCount], list[PayoutCount]]:
    """Payouts built in the period by status and currency, and payouts marked paid in the period by currency."""
    built = session.execute(
        select(Payout.status, Payout.currency, func.count(), func.sum(Payout.amount_cents))
        .where(Payout.created_at >= period.start_at, Payout.created_at < period.end_at)
        .group_by(Payout.status, Payout.currency)
        .order_by(Payout.currency, Payout.status)
    ).all()
    paid = session.execute(
        select(Payout.currency, func.count(), func.sum(Payout.amount_cents))
        .where(Payout.paid_at >= period.start_at, Payout.paid_at < period.end_at)
        .group_by(Payout.currency)
        .order_by(Payout.currency)
    ).all()
    return (
        [PayoutCount(status, currency, n, int(cents)) for status, currency, n, cents in built],
        [PayoutCount("paid", currency, n, int(cents)) for currency, n, cents in paid],
    )


def _click_counts(
    session: Session, scope: Scope, period: Period, dimension: str, keys: tuple[str, ...]
) -> dict[tuple, ClickCounts]:
    """Summed rollups of one dimension per key tuple; with no keys, one total under () (zeros without clicks).

    Each count also keeps its human clicks per currency (of the clicked program), so a currency's EPC divides
    that currency's earnings by the clicks of the programs that pay in it, never by every program's clicks.
    """
    columns = [ROLLUP_KEYS.get(key, ClickRollup.value) for key in keys]
    sums = (func.sum(ClickRollup.raw_clicks), func.sum(ClickRollup.human_clicks), func.sum(ClickRollup.unique_clicks))
    stmt = select(*columns, ClickRollup.program_id, *sums).where(
        ClickRollup.dimension == dimension, ClickRollup.day >= period.start, ClickRollup.day <= period.end
    )
    stmt = stmt.group_by(*columns, ClickRollup.program_id)
    if scope.affiliate_id is not None:
        stmt = stmt.where(ClickRollup.affiliate_id == scope.affiliate_id)
    if scope.program_id is not None:
        stmt = stmt.where(ClickRollup.program_id == scope.program_id)
    currencies = dict(session.execute(select(Program.id, Program.currency)).all())
    found: dict[tuple, ClickCounts] = {}
    for row in session.execute(stmt):
        *values, program_id, raw, human, unique = row
        if raw is not None:
            counts = found.setdefault(tuple(values), ClickCounts())
            counts.add(int(raw), int(human), int(unique), {currencies.get(program_id, ""): int(human)})
    return found if keys else {(): found.get((), ClickCounts())}


ROLLUP_GROUPS = {"day": "day", "program": "program_id", "affiliate": "affiliate_id"}


def _rolled_up_conversions(
    session: Session, scope: Scope, period: Period, key: str
) -> Iterator[tuple[object, str, str, int, int]]:
    """(day, program or affiliate, type, currency, count, cents) from the conversion rollups.

    Rejected conversions are left out, and so are refunds of rejected sales (filed under their sale's status).
    """
    group = (getattr(ConversionRollup, ROLLUP_GROUPS[key]), ConversionRollup.kind, ConversionRollup.currency)
    stmt = (
        select(*group, func.sum(ConversionRollup.conversion_count), func.sum(ConversionRollup.amount_cents))
        .where(
            ConversionRollup.day >= period.start,
            ConversionRollup.day <= period.end,
            ConversionRollup.status != ConversionStatus.REJECTED,
        )
        .group_by(*group)
    )
    if scope.affiliate_id is not None:
        stmt = stmt.where(ConversionRollup.affiliate_id == scope.affiliate_id)
    if scope.program_id is not None:
        stmt = stmt.where(ConversionRollup.program_id == scope.program_id)
    for value, kind, currency, count, cents in session.execute(stmt):
        yield value, kind, currency, int(count), int(cents)


def _rolled_up_commissions(
    session: Session, scope: Scope, period: Period, key: str
) -> Iterator[tuple[object, str, str, bool, int]]:
    """(day, program or affiliate, status, currency, own, cents) from the commission rollups."""
    group = (
        getattr(CommissionRollup, ROLLUP_GROUPS[key]),
        CommissionRollup.status,
        CommissionRollup.currency,
        CommissionRollup.own,
    )
    stmt = (
        select(*group, func.sum(CommissionRollup.amount_cents))
        .where(CommissionRollup.day >= period.start, CommissionRollup.day <= period.end)
        .group_by(*group)
    )
    if scope.affiliate_id is not None:
        stmt = stmt.where(CommissionRollup.affiliate_id == scope.affiliate_id)
    if scope.program_id is not None:
        stmt = stmt.where(CommissionRollup.program_id == scope.program_id)
    for value, status, currency, own, cents in session.execute(stmt):
        yield value, status, currency, bool(own), int(cents)


def _conversion_counts(
    session: Session, scope: Scope, period: Period, keys: tuple[str, ...]
) -> Iterator[tuple[tuple, str, str, int, int]]:
    """(key values, type, currency, count, cents) of the scope's attributed conversions in the period."""
    sale = aliased(Conversion)
    columns = [_conversion_column(session, key) for key in keys]
    group = [*columns, Conversion.type, Conversion.currency]
    stmt = (
        select(*group, func.count(), func.sum(Conversion.amount_cents))
        .select_from(Conversion)
        .outerjoin(sale, sale.id == Conversion.refund_of_id)
        .where(
            Conversion.occurred_at >= period.start_at,
            Conversion.occurred_at < period.end_at,
            *_conversion_scope(scope),
            # A rejected sale is not revenue, so neither is its refund.
            or_(
                and_(Conversion.type != ConversionType.REFUND, Conversion.status != ConversionStatus.REJECTED),
                and_(Conversion.type == ConversionType.REFUND, sale.status != ConversionStatus.REJECTED),
            ),
        )
        .group_by(*group)
    )
    if CLICK_KEYED.intersection(keys):
        stmt = stmt.outerjoin(Click, Click.id == Conversion.click_id)
    for row in session.execute(stmt):
        *values, kind, currency, count, cents = row
        yield tuple(values), kind, currency, int(count), int(cents or 0)


def _commission_sums(
    session: Session, scope: Scope, period: Period, keys: tuple[str, ...]
) -> Iterator[tuple[tuple, str, str, bool, int]]:
    """(key values, status, currency, own, cents) of the scope's commissions on conversions in the period.

    ``own``: the commission is the converting affiliate's, not a second tier for their recruiter.
    """
    own = Commission.affiliate_id == Conversion.affiliate_id
    columns = [Commission.affiliate_id if key == "affiliate" else _conversion_column(session, key) for key in keys]
    group = [*columns, Commission.status, Commission.currency, own]
    stmt = (
        select(*group, func.sum(Commission.amount_cents))
        .select_from(Commission)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Conversion.occurred_at >= period.start_at, Conversion.occurred_at < period.end_at)
        .group_by(*group)
    )
    if scope.affiliate_id is not None:
        stmt = stmt.where(Commission.affiliate_id == scope.affiliate_id)
    if scope.program_id is not None:
        stmt = stmt.where(Conversion.program_id == scope.program_id)
    if CLICK_KEYED.intersection(keys):
        stmt = stmt.outerjoin(Click, Click.id == Conversion.click_id)
    for row in session.execute(stmt):
        *values, status, currency, is_own, cents = row
        yield tuple(values), status, currency, bool(is_own), int(cents)


def _conversion_column(session: Session, key: str) -> ColumnElement:
    if key == "day":
        return utc_day(session, Conversion.occurred_at)
    return CONVERSION_KEYS[key]


def _conversion_scope(scope: Scope) -> list[ColumnElement]:
    where = [
        Conversion.affiliate_id.is_not(None)
        if scope.affiliate_id is None
        else Conversion.affiliate_id == scope.affiliate_id
    ]
    if scope.program_id is not None:
        where.append(Conversion.program_id == scope.program_id)
    return where


def _converted_link_ids(session: Session, scope: Scope, period: Period) -> list[int]:
    """Links whose clicks led to conversions in the period (those clicks may be older than the period)."""
    return list(
        session.scalars(
            select(Click.link_id.distinct())
            .join(Conversion, Conversion.click_id == Click.id)
            .where(
                Conversion.occurred_at >= period.start_at,
                Conversion.occurred_at < period.end_at,
                *_conversion_scope(scope),
            )
        )
    )


def _load_links(session: Session, scope: Scope, ids: set[int]) -> dict[int, Link]:
    if not ids:
        return {}
    stmt = select(Link).where(Link.id.in_(ids))
    if scope.affiliate_id is not None:
        stmt = stmt.where(Link.affiliate_id == scope.affiliate_id)
    return {link.id: link for link in session.scalars(stmt)}


def _normalise(name: str, value: object, links: dict[int, Link]) -> object:
    """One key per row, however the value was read (rollup text, click column, SQL date)."""
    if value is None or value == "":
        return None
    if name == "day":
        return as_date(value)
    if name in ("link", "program", "affiliate"):
        return int(value)
    if name == "campaign":
        link = links.get(int(value))
        return link.campaign if link is not None and link.campaign else None
    return value


def _label(session: Session, name: str, rows: dict[object, Figures], links: dict[int, Link]) -> list[Row]:
    ids = [key for key in rows if key is not None]
    names: dict[object, tuple[str, str]] = {}
    if name == "program" and ids:
        names = {
            pid: (title, "")
            for pid, title in session.execute(select(Program.id, Program.name).where(Program.id.in_(ids)))
        }
    elif name == "affiliate" and ids:
        names = {
            uid: (person, email)
            for uid, person, email in session.execute(select(User.id, User.name, User.email).where(User.id.in_(ids)))
        }
    elif name == "link":
        names = {key: (links[key].code, links[key].campaign or "") for key in ids if key in links}
    elif name == "excluded":
        names = {key: (reason_label(key), "") for key in ids}
    labelled = []
    for key, figures in rows.items():
        if key is None:
            label, detail = NONE_LABELS.get(name, "(none)"), ""
        elif name == "day":
            label, detail = key.isoformat(), ""
        else:
            label, detail = names.get(
                key, (str(key) if name not in ("link", "program", "affiliate") else f"#{key}", "")
            )
        labelled.append(Row(key, label, figures, detail))
    return labelled


def _sorted(rows: list[Row]) -> list[Row]:
    """Busiest first (conversions, then human and raw clicks), the "none" row last."""
    return sorted(
        rows, key=lambda r: (r.key is None, -r.figures.conversions, -r.figures.human, -r.figures.raw, r.label)
    )


def _fired(reasons: str | None) -> list[tuple[str, str]]:
    """(rule, action) of the rules that flagged or rejected, from a stored verdict."""
    try:
        fired = json.loads(reasons or "[]")
    except ValueError:
        return []
    if not isinstance(fired, list):
        return []
    return [
        (entry["rule"], entry["action"])
        for entry in fired
        if isinstance(entry, dict) and entry.get("rule") and entry.get("action") in ("flag", "reject")
    ]
