"""The double-entry ledger: balanced, idempotent postings in integer cents, and checks of its invariants.

Every movement of money is one transaction of two or more entries (legs) whose amounts sum to
zero per currency: debits positive, credits negative. A transaction is named by (kind,
reference), unique in the database, so posting the same business event twice stores it once.
Rows are never updated or deleted; the database refuses it (migration 0004). A correction is
a new transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate import bulk
from affiliate.models import LedgerEntry, LedgerTransaction

IN_CHUNK = 5000  # values per IN (...) list: well inside SQLite's and PostgreSQL's limits
# The PostgreSQL advisory lock (this key, the currency) that approvals take shared and payout builds, cancellations
# and failed payouts take exclusively (payable_turn).
PAYABLE_TURN_KEY = 0x50617942


class UnbalancedPosting(ValueError):
    """Legs that do not sum to zero per currency, or too few of them."""


class ConflictingPosting(ValueError):
    """The (kind, reference) was already posted with other legs."""


@dataclass(frozen=True)
class Leg:
    account: str  # e.g. "commission_expense", "affiliate_payable:42", "payout_clearing"
    amount_cents: int  # debit positive, credit negative
    currency: str
    affiliate_id: int | None = None


@dataclass(frozen=True)
class Posted:
    transaction: LedgerTransaction
    created: bool


@dataclass(frozen=True)
class Problem:
    invariant: str
    detail: str


def post(
    session: Session, kind: str, reference: str, legs: Sequence[Leg], *, now: datetime, memo: str | None = None
) -> Posted:
    """Record one balanced transaction, once: the same (kind, reference) with the same legs is a no-op."""
    _check_balanced(legs)
    existing = _find(session, kind, reference)
    if existing is not None:
        return Posted(_same_or_conflict(session, existing, legs), created=False)
    transaction = LedgerTransaction(kind=kind, reference=reference, memo=memo, created_at=now)
    try:
        with session.begin_nested():
            session.add(transaction)
            session.flush()
            session.add_all(
                LedgerEntry(
                    transaction_id=transaction.id,
                    account=leg.account,
                    affiliate_id=leg.affiliate_id,
                    amount_cents=leg.amount_cents,
                    currency=leg.currency,
                )
                for leg in legs
            )
            session.flush()
    except IntegrityError:
        existing = _find(session, kind, reference)
        if existing is None:
            raise
        return Posted(_same_or_conflict(session, existing, legs), created=False)
    return Posted(transaction, created=True)


def post_new(session: Session, kind: str, postings: Sequence[tuple[str, Sequence[Leg]]], *, now: datetime) -> None:
    """Record many balanced transactions of one kind whose references are new by construction, in bulk.

    For postings named after rows made in the same transaction (a batch's fresh payouts): no lookup
    of earlier postings is needed, and should one exist after all, the unique (kind, reference) refuses
    the whole statement, so nothing is posted twice.
    """
    for _, legs in postings:
        _check_balanced(legs)
    if not postings:
        return
    # Core inserts of the tables, not the ORM's: the ORM leaves out a key whose value is None and sends each run
    # of rows with the same keys as its own statement, so legs with and without an affiliate, alternating,
    # went one statement per leg.
    transactions = LedgerTransaction.__table__
    if bulk.postgresql(session):
        fresh = bulk.new_ids(session, transactions, len(postings))
        ids = dict(zip((reference for reference, _ in postings), fresh, strict=True))
        bulk.insert_rows(
            session,
            transactions,
            [
                {"id": ids[reference], "kind": kind, "reference": reference, "memo": None, "created_at": now}
                for reference, _ in postings
            ],
        )
    else:  # a transaction's id comes back with its reference
        made = session.execute(
            insert(transactions).returning(transactions.c.reference, transactions.c.id),
            [{"kind": kind, "reference": reference, "memo": None, "created_at": now} for reference, _ in postings],
        )
        ids = dict(made.all())
    bulk.insert_rows(
        session,
        LedgerEntry.__table__,
        [
            {
                "transaction_id": ids[reference],
                "account": leg.account,
                "affiliate_id": leg.affiliate_id,
                "amount_cents": leg.amount_cents,
                "currency": leg.currency,
            }
            for reference, legs in postings
            for leg in legs
        ],
    )


def payable_turn(session: Session, currency: str, *, shared: bool) -> None:
    """Wait for a turn at the money of ``currency`` that commissions carry into payouts, held to the commit.

    A payout build reads the approved balances, then links every approved commission not yet in a payout to the
    payouts it made from them: two statements, and on PostgreSQL each sees what was committed when it began. A
    commission approved in between (or freed by another batch's cancellation or failed payout) would join a payout
    that does not carry its money, be marked paid with it, and leave its money for the next batch. So approvals
    (``shared``: they never wait for each other) and what builds or returns payouts (exclusive) take turns per
    currency. SQLite's single writer already makes them.
    """
    if bulk.postgresql(session):
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(
            text(f"SELECT {function}(:key, :currency)"),
            {"key": PAYABLE_TURN_KEY, "currency": int.from_bytes(currency.encode(), "big")},
        )


def balance(session: Session, account: str, currency: str) -> int:
    """An account's balance in cents (debits minus credits)."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
            LedgerEntry.account == account, LedgerEntry.currency == currency
        )
    )
    return int(total)  # SUM of BIGINT is NUMERIC on PostgreSQL


def check(session: Session) -> list[Problem]:
    """Every ledger invariant that does not hold, with the offending rows; empty when all hold."""
    problems = []
    unbalanced = session.execute(
        select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount_cents))
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount_cents) != 0)
        .order_by(LedgerEntry.transaction_id)
    ).all()
    for transaction_id, currency, total in unbalanced:
        problems.append(Problem("balanced", f"transaction {transaction_id} sums to {int(total)} {currency}"))
    legs = (
        select(LedgerEntry.transaction_id, func.count().label("legs")).group_by(LedgerEntry.transaction_id).subquery()
    )
    thin = session.execute(
        select(LedgerTransaction.id, func.coalesce(legs.c.legs, 0))
        .outerjoin(legs, legs.c.transaction_id == LedgerTransaction.id)
        .where(func.coalesce(legs.c.legs, 0) < 2)
        .order_by(LedgerTransaction.id)
    ).all()
    for transaction_id, count in thin:
        problems.append(Problem("two_or_more_legs", f"transaction {transaction_id} has {count} entries"))
    total = session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount_cents)).group_by(LedgerEntry.currency)
    ).all()
    for currency, amount in total:
        if int(amount):
            problems.append(Problem("books_balance", f"all {currency} entries sum to {int(amount)}"))
    return problems


def _check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedPosting("a transaction needs two or more legs")
    sums: dict[str, int] = defaultdict(int)
    for leg in legs:
        if not isinstance(leg.amount_cents, int) or isinstance(leg.amount_cents, bool):
            raise UnbalancedPosting("amounts are integer cents")
        sums[leg.currency] += leg.amount_cents
    off = {currency: total for currency, total in sums.items() if total}
    if off:
        raise UnbalancedPosting(f"legs do not balance: {off}")


# Looked up for every posting: built once, as building the select() cost more than running it.
_BY_REFERENCE = select(LedgerTransaction).where(
    LedgerTransaction.kind == bindparam("kind"), LedgerTransaction.reference == bindparam("reference")
)


def _find(session: Session, kind: str, reference: str) -> LedgerTransaction | None:
    return session.scalar(_BY_REFERENCE, {"kind": kind, "reference": reference})


def _same_or_conflict(session: Session, existing: LedgerTransaction, legs: Sequence[Leg]) -> LedgerTransaction:
    stored = session.execute(
        select(LedgerEntry.account, LedgerEntry.amount_cents, LedgerEntry.currency, LedgerEntry.affiliate_id).where(
            LedgerEntry.transaction_id == existing.id
        )
    ).all()
    wanted = sorted((leg.account, leg.amount_cents, leg.currency, leg.affiliate_id) for leg in legs)
    if sorted(tuple(row) for row in stored) != wanted:
        raise ConflictingPosting(f"{existing.kind} {existing.reference} was posted with other legs")
    return existing
