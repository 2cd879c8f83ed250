"""The money invariants a balanced ledger cannot show (`flask ledger-check`): every amount is the one the rules allow.

``ledger.check`` proves the books balance; these prove what was booked: refunds stay within their sale,
a rejected conversion earns nothing, a commission comes from an evaluated conversion and is accrued once,
refunds took back exactly each commission's share of what was refunded, and a commission linked to a payout
names a payout of its own affiliate and currency (docs/money.md).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from affiliate.models import (
    Commission,
    CommissionStatus,
    Conversion,
    ConversionStatus,
    ConversionType,
    LedgerEntry,
    LedgerTransaction,
    Payout,
)
from affiliate.services.accrual import LIVE_COMMISSIONS
from affiliate.services.ledger import Problem


def check(session: Session) -> list[Problem]:
    """The money invariants a balanced ledger cannot show: every amount is the one the rules allow."""
    problems = []
    refunds = aliased(Conversion)
    refunded = (
        select(refunds.refund_of_id.label("sale_id"), func.sum(refunds.amount_cents).label("total"))
        .where(refunds.type == ConversionType.REFUND)
        .group_by(refunds.refund_of_id)
        .subquery()
    )
    over = session.execute(
        select(Conversion.id, Conversion.amount_cents, refunded.c.total)
        .join(refunded, refunded.c.sale_id == Conversion.id)
        .where(refunded.c.total > Conversion.amount_cents)
    ).all()
    for sale_id, amount, total in over:
        problems.append(Problem("refunds_within_sale", f"sale {sale_id} of {amount} has {int(total)} refunded"))
    live_on_rejected = session.execute(
        select(Commission.id, Commission.conversion_id)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Conversion.status == ConversionStatus.REJECTED, Commission.status.in_(LIVE_COMMISSIONS))
    ).all()
    for commission_id, conversion_id in live_on_rejected:
        problems.append(
            Problem(
                "rejected_earns_nothing", f"commission {commission_id} of rejected conversion {conversion_id} is live"
            )
        )
    unevaluated = session.execute(
        select(Commission.id, Commission.conversion_id)
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Conversion.evaluated_at.is_(None))
    ).all()
    for commission_id, conversion_id in unevaluated:
        problems.append(
            Problem("evaluated_once", f"commission {commission_id} of conversion {conversion_id}, never evaluated")
        )
    accrued = set(session.scalars(select(LedgerTransaction.reference).where(LedgerTransaction.kind == "accrual")))
    for commission_id in session.scalars(select(Commission.id).order_by(Commission.id)):
        if f"commission:{commission_id}" in accrued:
            continue
        problems.append(Problem("accrued_once", f"commission {commission_id} has no accrual in the ledger"))
    problems += _check_reversals(session)
    problems += _check_payout_links(session)
    return problems


def _check_payout_links(session: Session) -> list[Problem]:
    """Every commission linked to a payout names one that exists, of the commission's affiliate and currency.

    No foreign key guards this link (a batch writes up to a million at once), so this is where a dangling or
    crossed link would show."""
    crossed = session.execute(
        select(Commission.id, Commission.payout_id, Payout.id)
        .outerjoin(Payout, Payout.id == Commission.payout_id)
        .where(
            Commission.payout_id.is_not(None),
            (Payout.id.is_(None))
            | (Payout.affiliate_id != Commission.affiliate_id)
            | (Payout.currency != Commission.currency),
        )
    ).all()
    return [
        Problem(
            "linked_to_own_payout",
            f"commission {commission_id} is linked to "
            + (f"payout {payout_id}, which does not exist" if found is None else f"payout {payout_id} of another"),
        )
        for commission_id, payout_id, found in crossed
    ]


def _check_reversals(session: Session) -> list[Problem]:
    """Per commission: refunds reversed at most the commission, and exactly floor(c x F / S)."""
    reversed_by: dict[int, int] = defaultdict(int)
    rows = session.execute(
        select(LedgerTransaction.reference, LedgerEntry.amount_cents)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.kind == "reversal", LedgerEntry.account.like("affiliate_%"))
    )
    for reference, amount in rows:
        reversed_by[int(reference.rsplit(":", 1)[1])] += int(amount)
    processed = aliased(Conversion)
    refunded = (
        select(func.coalesce(func.sum(processed.amount_cents), 0))
        .where(processed.refund_of_id == Conversion.id, processed.evaluated_at.is_not(None))
        .scalar_subquery()
    )
    problems = []
    for commission_id, amount, status, sale_amount, sale_status, total in session.execute(
        select(
            Commission.id,
            Commission.amount_cents,
            Commission.status,
            Conversion.amount_cents,
            Conversion.status,
            refunded,
        )
        .join(Conversion, Conversion.id == Commission.conversion_id)
        .where(Conversion.type == ConversionType.SALE)
    ):
        done = reversed_by.get(commission_id, 0)
        if done > amount:
            problems.append(
                Problem("reversal_within_commission", f"commission {commission_id} of {amount} had {done} reversed")
            )
            continue
        if status == CommissionStatus.REJECTED or sale_status == ConversionStatus.REJECTED or not sale_amount:
            continue
        share = amount * int(total) // sale_amount
        if done != share:
            problems.append(
                Problem(
                    "reversal_is_refunded_share",
                    f"commission {commission_id}: {done} reversed where the refunds' share is {share}",
                )
            )
    return problems
