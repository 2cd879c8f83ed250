"""The lists of conversions and commissions the portal shows: staff filters, an affiliate's own, what one earned."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from affiliate.models import Commission, Conversion, ConversionStatus, ConversionType
from affiliate.services import people
from affiliate.services.listing import DESC, Days, Sort, contains, ordered, within

# The staff conversions table's sortable columns.
CONVERSION_SORTS = {
    "occurred": Conversion.occurred_at,
    "order": Conversion.order_id,
    "type": Conversion.type,
    "amount": Conversion.amount_cents,
    "status": Conversion.status,
}
NEWEST = Sort("occurred", DESC)


@dataclass(frozen=True)
class ConversionFilter:
    """What staff narrow the conversions list to; None (or False) leaves that column alone."""

    program_id: int | None = None
    affiliate_id: int | None = None
    type: str | None = None
    status: str | None = None
    unattributed: bool = False
    affiliate: str = ""  # a name, email or referral code (part of one, any case), or an id
    order: str = ""  # part of an order id, any case
    days: Days = field(default_factory=Days)  # when it occurred


def filtered(wanted: ConversionFilter, sort: Sort = NEWEST) -> Select:
    """Conversions matching the filter, newest first unless ``sort`` says otherwise, each with its program and
    affiliate loaded (a statement, for the paginator)."""
    query = select(Conversion).options(selectinload(Conversion.program), selectinload(Conversion.affiliate))
    if wanted.program_id:
        query = query.where(Conversion.program_id == wanted.program_id)
    if wanted.affiliate_id:
        query = query.where(Conversion.affiliate_id == wanted.affiliate_id)
    if wanted.type in set(ConversionType):
        query = query.where(Conversion.type == wanted.type)
    if wanted.status in set(ConversionStatus):
        query = query.where(Conversion.status == wanted.status)
    if wanted.unattributed:
        query = query.where(Conversion.affiliate_id.is_(None))
    if wanted.affiliate:
        query = query.where(Conversion.affiliate_id.in_(people.matching(wanted.affiliate)))
    if wanted.order:
        query = query.where(contains(Conversion.order_id, wanted.order))
    query = query.where(*within(Conversion.occurred_at, wanted.days))
    return ordered(query, sort, CONVERSION_SORTS, Conversion.id)


def by_id(session: Session, ids: Iterable[int]) -> dict[int, Conversion]:
    """The conversions with these ids, each with its program, by id."""
    wanted = set(ids)
    if not wanted:
        return {}
    query = select(Conversion).options(selectinload(Conversion.program)).where(Conversion.id.in_(wanted))
    return {conversion.id: conversion for conversion in session.scalars(query)}


def commissions_of(session: Session, conversion_id: int, beneficiary: int | None = None) -> list[Commission]:
    """What a conversion earned, each with the rule, plan version and group that paid it; with ``beneficiary``,
    only that affiliate's."""
    query = select(Commission).where(Commission.conversion_id == conversion_id)
    if beneficiary is not None:
        query = query.where(Commission.affiliate_id == beneficiary)
    return list(session.scalars(query.order_by(Commission.id)))


def earned_by(session: Session, affiliate_id: int) -> list[Commission]:
    """Every commission someone earned, newest first: a member's referral rewards."""
    return list(
        session.scalars(
            select(Commission).where(Commission.affiliate_id == affiliate_id).order_by(Commission.id.desc())
        )
    )
