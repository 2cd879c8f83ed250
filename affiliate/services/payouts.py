"""Payout batches, maker-checker: built from the ledger, approved by a second person, each payout settled once.

A batch is ``draft`` when built, ``approved`` by a second person, ``exported`` once its first provider
file is made (paying and marking paid go on from there), ``closed`` when its last payout is marked paid or
failed, or ``cancelled`` while still a draft. Every
file made is recorded with its SHA-256; a second file of the same format is only made when the person
confirms it, as uploading both pays everyone in them twice.

Ledger moves: building a batch reserves each affiliate's payable balance (debit
``affiliate_payable:<id>``, credit ``payout_clearing``); a payout marked paid leaves clearing for
``cash``; a failed payout, or any payout of a cancelled batch, returns to the affiliate's payable
balance. Every state change is a guarded UPDATE (only from the expected state), so concurrent clicks
settle a payout once.

Programs: the minimum is the lowest of every program in the currency, paused ones included, since
pausing a program stops new clicks and conversions, not the payment of what was already earned.

Holds: a suspended affiliate's payout is ``held`` (with the reason) when the batch is built, approved
or exported, or when someone tries to mark it paid; a held payout is never approved, exported or paid.
Marking it failed returns its amount to the affiliate's balance for a later batch.

Why one module: every function is a step of the same batch's life, guarded by the same state checks and
booked with the same ledger legs, so the steps are read in order here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from affiliate import bulk, mail, notifications
from affiliate.models import (
    BatchStatus,
    Commission,
    CommissionStatus,
    LedgerEntry,
    Payout,
    PayoutBatch,
    PayoutExport,
    PayoutStatus,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.models.accounts import payout_details_complete
from affiliate.money import format_amount
from affiliate.services import audit, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.services.batches import UNSETTLED
from affiliate.services.exports import FORMATS, PayoutLine, payout_file
from affiliate.services.ledger import IN_CHUNK, Leg, payable_turn, post, post_new

COOLING_OFF = timedelta(hours=72)
# A batch whose commissions are more than one in SCAN_SHARE of the table links them reading the table in order.
SCAN_SHARE = 8
PAYABLE, PAYABLE_END = "affiliate_payable:", "affiliate_payable;"  # every affiliate's payable account, as a range


EXPORTABLE = (BatchStatus.APPROVED, BatchStatus.EXPORTED, BatchStatus.CLOSED)
OPEN = (BatchStatus.APPROVED, BatchStatus.EXPORTED)  # approved, payouts being paid: closed by the last one settled


class PayoutError(ValueError):
    """A payout action that is not allowed; the message says why."""


class RepeatExport(PayoutError):
    """The batch already had a file of this format: making another needs the person's confirmation."""

    def __init__(self, earlier: list[PayoutExport]) -> None:
        super().__init__("This file was exported before: uploading it again pays everyone in it twice.")
        self.earlier = earlier


class DetailsChanged(PayoutError):
    """Affiliates changed their payout details after the batch was built, and the approver did not acknowledge it."""

    def __init__(self, changed: list[Changed]) -> None:
        names = ", ".join(change.name for change in changed)
        super().__init__(
            f"Payout details changed since this batch was built: {names}. The files use the details "
            "as they were at the build; tick the acknowledgement to approve anyway."
        )
        self.changed = changed


@dataclass(frozen=True)
class Changed:
    affiliate_id: int
    name: str
    changed_at: datetime


@dataclass(frozen=True)
class Exported:
    text: str
    record: PayoutExport


@dataclass(frozen=True)
class Held:
    affiliate_id: int
    reason: str


def build_batch(
    session: Session, currency: str, *, actor: User, now: datetime, cooling_off: timedelta = COOLING_OFF
) -> tuple[PayoutBatch | None, list[Held]]:
    """A draft batch of every affiliate whose approved balance reaches the minimum; amounts come from the ledger."""
    # Builds of one currency take turns (PostgreSQL: row locks; SQLite: writers are serial anyway), so
    # the second reads the balances the first left and cannot reserve the same money twice; and no commission is
    # approved or freed between the balances read and the commissions linked.
    payable_turn(session, currency, shared=False)
    session.execute(select(Program.id).where(Program.currency == currency).with_for_update(key_share=True)).all()
    minimum = session.scalar(select(func.min(Program.minimum_payout_cents)).where(Program.currency == currency))
    if minimum is None:
        raise PayoutError(f"No program pays in {currency}.")
    owed = session.execute(
        select(LedgerEntry.account, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.account >= PAYABLE, LedgerEntry.account < PAYABLE_END, LedgerEntry.currency == currency)
        .group_by(LedgerEntry.account)
    ).all()  # grouped in the index's order, from the index alone
    # Credits are what an affiliate is owed.
    # A minimum of 0.00 still pays only what is owed: nobody is paid nothing.
    due = {int(account.removeprefix(PAYABLE)): -int(total) for account, total in owed if -int(total) >= max(minimum, 1)}
    held: list[Held] = []
    rows = []
    for affiliate in _payees(session, sorted(due)):
        changed = affiliate.payout_details_changed_at
        snapshot = {
            "affiliate_id": affiliate.id,
            "amount_cents": due[affiliate.id],
            "currency": currency,
            "method": affiliate.payout_method,
            "destination": _destination(affiliate),
            "payee_name": affiliate.name,
            "created_at": now,
        }
        complete = payout_details_complete(affiliate)
        if affiliate.status == UserStatus.SUSPENDED and complete:
            # Reserved but held, so the batch page says why this affiliate is not being paid.
            rows.append({**snapshot, "status": PayoutStatus.HELD, "hold_reason": _suspended(affiliate)})
        elif not complete:
            held.append(Held(affiliate.id, "no payout details"))
        elif changed is not None and now - changed < cooling_off:
            until = changed + cooling_off
            held.append(
                Held(
                    affiliate.id,
                    f"payout details changed {changed:%Y-%m-%d %H:%M} UTC: held until {until:%Y-%m-%d %H:%M} UTC",
                )
            )
        else:
            rows.append({**snapshot, "status": PayoutStatus.PENDING, "hold_reason": None})
    if not any(row["status"] == PayoutStatus.PENDING for row in rows):
        return None, held + [Held(row["affiliate_id"], row["hold_reason"]) for row in rows]
    batch = PayoutBatch(
        currency=currency, created_by_id=actor.id, created_at=now, total_cents=sum(row["amount_cents"] for row in rows)
    )
    session.add(batch)
    session.flush()
    # The table's insert, not the ORM's: the ORM sends each run of rows with the same non-None keys as a
    # statement of its own, and held payouts (with a reason) come between pending ones (without).
    bulk.insert_rows(session, Payout.__table__, [{**row, "batch_id": batch.id} for row in rows])
    payout_ids = dict(session.execute(select(Payout.affiliate_id, Payout.id).where(Payout.batch_id == batch.id)).all())
    post_new(
        session,
        "payout_reserve",
        [
            (
                f"payout:{payout_ids[row['affiliate_id']]}",
                [
                    Leg(f"affiliate_payable:{row['affiliate_id']}", row["amount_cents"], currency, row["affiliate_id"]),
                    Leg("payout_clearing", -row["amount_cents"], currency),
                ],
            )
            for row in rows
        ],
        now=now,
    )
    _link_commissions(session, batch.id, currency, [row["affiliate_id"] for row in rows])
    _audit(session, actor.id, "payout_batch.build", "payout_batch", batch.id, None, BatchStatus.DRAFT, now)
    notifications.send_to_role(
        session,
        Role.FINANCE,
        "batch_awaiting_approval",
        subject=f"Payout batch #{batch.id} waits for your approval",
        now=now,
        exclude=actor.id,
        batch=batch,
        maker=actor,
        payouts=len(rows),
        held=sum(row["status"] == PayoutStatus.HELD for row in rows),
        batch_url=mail.external_url("finance_payouts.show", batch_id=batch.id),
    )
    return batch, held


def _link_commissions(session: Session, batch_id: int, currency: str, affiliate_ids: list[int]) -> None:
    """Each approved commission not yet in a payout joins its affiliate's payout in the batch: one UPDATE ... FROM.

    Found through the (affiliate, status) index, a batch's commissions are read in affiliate order, one
    table page per row, scattered; when they are a good share of the table, reading the whole table in
    order and finding each row's payout is about twice as fast. PostgreSQL's planner chooses between the
    two once it knows how many payouts the batch has (the rows were just written, so they are analyzed
    first); SQLite has no statistics to choose with, so the index's entries are counted first (from the
    index alone).
    """
    affiliate = Commission.affiliate_id
    if bulk.postgresql(session):
        # Holds a lock on the payouts table's statistics until the build commits: builds in other currencies
        # wait here for this one, which only batches contend for.
        session.execute(text("ANALYZE payouts"))
    else:
        candidates = 0
        for start in range(0, len(affiliate_ids), IN_CHUNK):
            chunk = affiliate_ids[start : start + IN_CHUNK]
            candidates += session.scalar(
                select(func.count())
                .select_from(Commission)
                .where(Commission.affiliate_id.in_(chunk), Commission.status == CommissionStatus.APPROVED)
            )
        highest = session.scalar(select(func.max(Commission.id))) or 0
        if candidates * SCAN_SHARE > highest:
            affiliate = Commission.affiliate_id + 0  # not the indexed column: the table is read in order instead
    session.execute(
        update(Commission)
        .where(
            Payout.batch_id == batch_id,
            Payout.affiliate_id == affiliate,
            Commission.currency == currency,
            Commission.status == CommissionStatus.APPROVED,
            Commission.payout_id.is_(None),
        )
        .values(payout_id=Payout.id)
        .execution_options(synchronize_session=False)
    )


# What a batch reads of each affiliate: rows of these columns, not User objects, as a batch reads thousands and
# the ORM's bookkeeping for each object cost more than the query.
_PAYEE = (
    User.id,
    User.name,
    User.status,
    User.status_reason,
    User.payout_method,
    User.payout_email,
    User.payout_iban,
    User.payout_account_name,
    User.payout_details_changed_at,
)


def _payees(session: Session, ids: list[int]) -> list:
    payees: list = []
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        payees.extend(session.execute(select(*_PAYEE).where(User.id.in_(chunk)).order_by(User.id)))
    return payees


def details_changed(session: Session, batch: PayoutBatch, *, lock: bool = False) -> list[Changed]:
    """Affiliates of the batch's unsettled payouts whose payout details changed after it was built.

    With ``lock``, every affiliate of those payouts is locked (PostgreSQL), not only those who changed,
    so no change can land between this read and the approval that depends on it.
    """
    query = (
        select(User.id, User.name, User.payout_details_changed_at)
        .join(Payout, Payout.affiliate_id == User.id)
        .where(
            Payout.batch_id == batch.id,
            Payout.status.in_([PayoutStatus.PENDING, PayoutStatus.APPROVED, PayoutStatus.HELD]),
        )
        .order_by(User.id)
    )
    if lock:
        query = query.with_for_update(of=User, key_share=True)
    return [Changed(*row) for row in session.execute(query).all() if row[2] is not None and row[2] > batch.created_at]


def approve_batch(
    session: Session, batch: PayoutBatch, *, approver: User, now: datetime, acknowledged: frozenset[int] = frozenset()
) -> None:
    """The second person approves a draft batch; its creator cannot.

    Whoever approves must acknowledge, by affiliate, every change of payout details made after the
    build (the files pay the details as they were then). Payouts of suspended affiliates are held. The webhook
    endpoints of every program paying in the batch's currency hear ``payout_batch.approved``.
    """
    if approver.id == batch.created_by_id:
        raise PayoutError("The person who built a batch cannot approve it; a second finance user must.")
    _lock_batch(session, batch)
    # Locked so that no change of details or suspension slips in between this check and the approval.
    changed = details_changed(session, batch, lock=True)
    unacknowledged = [change for change in changed if change.affiliate_id not in acknowledged]
    if unacknowledged:
        raise DetailsChanged(unacknowledged)
    updated = session.execute(
        update(PayoutBatch)
        .where(PayoutBatch.id == batch.id, PayoutBatch.status == BatchStatus.DRAFT)
        .values(status=BatchStatus.APPROVED, approved_by_id=approver.id, approved_at=now)
    ).rowcount
    if not updated:
        raise PayoutError("Only a draft batch can be approved.")
    hold_suspended(session, batch, PayoutStatus.PENDING, actor=approver, now=now)
    session.execute(
        update(Payout)
        .where(Payout.batch_id == batch.id, Payout.status == PayoutStatus.PENDING)
        .values(status=PayoutStatus.APPROVED)
    )
    note = None
    if changed:
        note = "acknowledged payout details changed since the build: " + ", ".join(c.name for c in changed)
    _audit(
        session,
        approver.id,
        "payout_batch.approve",
        "payout_batch",
        batch.id,
        BatchStatus.DRAFT,
        BatchStatus.APPROVED,
        now,
        note=note,
    )
    statuses = dict(
        session.execute(
            select(Payout.status, func.count()).where(Payout.batch_id == batch.id).group_by(Payout.status)
        ).all()
    )
    approved, held = statuses.get(PayoutStatus.APPROVED, 0), statuses.get(PayoutStatus.HELD, 0)
    data = payloads.payout_batch(batch, payouts=approved, held=held, approved_at=now)
    webhooks.emit_everywhere(session, "payout_batch.approved", data, now=now, currency=batch.currency)
    session.expire(batch)


def hold_suspended(session: Session, batch: PayoutBatch, status: PayoutStatus, *, actor: User, now: datetime) -> int:
    """Hold the batch's payouts in ``status`` whose affiliate is suspended now; how many were held."""
    suspended = session.execute(
        select(Payout.id, User.status_reason)
        .join(User, User.id == Payout.affiliate_id)
        .where(Payout.batch_id == batch.id, Payout.status == status, User.status == UserStatus.SUSPENDED)
        .order_by(Payout.id)
        .with_for_update(of=User, key_share=True)
    ).all()
    held = 0
    for payout_id, reason in suspended:
        held += _hold(session, payout_id, status, _suspended_reason(reason), actor=actor, now=now)
    return held


def _hold(session: Session, payout_id: int, status: str, reason: str, *, actor: User, now: datetime) -> int:
    changed = session.execute(
        update(Payout)
        .where(Payout.id == payout_id, Payout.status == status)
        .values(status=PayoutStatus.HELD, hold_reason=reason)
    ).rowcount
    if changed:
        _audit(session, actor.id, "payout.held", "payout", payout_id, status, PayoutStatus.HELD, now, note=reason)
    return changed


def cancel_batch(session: Session, batch: PayoutBatch, *, actor: User, reason: str, now: datetime) -> int:
    """Cancel a draft batch: every payout's amount returns to its affiliate's balance; how many payouts."""
    payable_turn(session, batch.currency, shared=False)  # its commissions are freed: not while a build links
    _lock_batch(session, batch)
    updated = session.execute(
        update(PayoutBatch)
        .where(PayoutBatch.id == batch.id, PayoutBatch.status == BatchStatus.DRAFT)
        .values(status=BatchStatus.CANCELLED)
    ).rowcount
    if not updated:
        raise PayoutError("Only a draft batch can be cancelled; an approved one is paid, or its payouts marked failed.")
    live = (PayoutStatus.PENDING, PayoutStatus.HELD)
    payouts = session.execute(
        select(Payout.id, Payout.affiliate_id, Payout.amount_cents, Payout.currency, Payout.status)
        .where(Payout.batch_id == batch.id, Payout.status.in_(live))
        .order_by(Payout.id)
    ).all()
    session.execute(
        update(Payout).where(Payout.batch_id == batch.id, Payout.status.in_(live)).values(status=PayoutStatus.CANCELLED)
    )
    if payouts:
        post_new(
            session,
            "payout_cancel",
            [
                (
                    f"payout:{p.id}",
                    [
                        Leg("payout_clearing", p.amount_cents, p.currency),
                        Leg(f"affiliate_payable:{p.affiliate_id}", -p.amount_cents, p.currency, p.affiliate_id),
                    ],
                )
                for p in payouts
            ],
            now=now,
        )
        # The commissions they carried are free to join a later batch.
        session.execute(
            update(Commission)
            .where(
                Commission.affiliate_id.in_(select(Payout.affiliate_id).where(Payout.batch_id == batch.id)),
                Commission.status == CommissionStatus.APPROVED,
                Commission.payout_id.in_(select(Payout.id).where(Payout.batch_id == batch.id)),
            )
            .values(payout_id=None)
            .execution_options(synchronize_session=False)
        )
        for p in payouts:
            _audit(session, actor.id, "payout.cancelled", "payout", p.id, p.status, PayoutStatus.CANCELLED, now)
    _audit(
        session,
        actor.id,
        "payout_batch.cancel",
        "payout_batch",
        batch.id,
        BatchStatus.DRAFT,
        BatchStatus.CANCELLED,
        now,
        note=reason,
    )
    session.expire(batch)
    return len(payouts)


def awaiting_payment(session: Session, batch: PayoutBatch) -> list[PayoutLine]:
    """Approved payouts not yet paid, failed or held, as the files list them: details and name from the build."""
    rows = session.scalars(
        select(Payout).where(Payout.batch_id == batch.id, Payout.status == PayoutStatus.APPROVED).order_by(Payout.id)
    ).all()
    return [PayoutLine(p.id, batch.id, p.payee_name, p.method, p.destination, p.amount_cents, p.currency) for p in rows]


def export_batch(
    session: Session, batch: PayoutBatch, format_name: str, *, actor: User, now: datetime, repeat: bool = False
) -> Exported:
    """Make a provider file of the batch and record it; the first file moves the batch to ``exported``.

    A second file of the same format is refused unless ``repeat`` says the person confirmed it.
    Raises ExportError (from the file) or PayoutError; the caller commits what it returns.
    """
    _lock_batch(session, batch)
    status = session.scalar(select(PayoutBatch.status).where(PayoutBatch.id == batch.id))
    if status not in EXPORTABLE:
        raise PayoutError("Only an approved batch can be exported: a second finance user approves it first.")
    earlier = session.scalars(
        select(PayoutExport)
        .where(PayoutExport.batch_id == batch.id, PayoutExport.format == format_name)
        .order_by(PayoutExport.id)
    ).all()
    if earlier and not repeat:
        raise RepeatExport(list(earlier))
    hold_suspended(session, batch, PayoutStatus.APPROVED, actor=actor, now=now)
    lines = awaiting_payment(session, batch)
    text = payout_file(format_name, lines)
    mine = [line for line in lines if line.method == FORMATS[format_name].method]
    record = PayoutExport(
        batch_id=batch.id,
        format=format_name,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        payout_count=len(mine),
        total_cents=sum(line.amount_cents for line in mine),
        repeat=bool(earlier),
        exported_by_id=actor.id,
        exported_at=now,
    )
    session.add(record)
    session.flush()
    note = f"{format_name} file, {len(mine)} payouts, sha256 {record.sha256}"
    if earlier:
        note = (
            f"repeat export, {format_name} file number {len(earlier) + 1}, confirmed not to be uploaded twice; {note}"
        )
    action = "payout_batch.export_repeat" if earlier else "payout_batch.export"
    audit.record(
        session,
        actor_id=actor.id,
        action=action,
        subject_type="payout_batch",
        subject_id=batch.id,
        before={"status": str(status)},
        after={"status": str(BatchStatus.EXPORTED if status == BatchStatus.APPROVED else status)},
        now=now,
        note=note,
    )
    session.execute(
        update(PayoutBatch)
        .where(PayoutBatch.id == batch.id, PayoutBatch.status == BatchStatus.APPROVED)
        .values(status=BatchStatus.EXPORTED)
    )
    session.expire(batch)
    return Exported(text, record)


def mark_paid(session: Session, payout: Payout, *, reference: str, actor: User, now: datetime) -> bool:
    """Settle an approved payout once (told to the webhook endpoints of the programs paying in its currency);
    False when it was not (any longer) approved.

    A payout whose affiliate is suspended is held instead (and False returned): the caller commits the hold.
    The last payout of the batch to be settled closes it (``close_if_settled``).
    """
    # The batch first, as every action on a batch takes its locks (batch, then affiliates and payouts).
    _lock_batch_id(session, payout.batch_id)
    affiliate = session.execute(
        select(User.status, User.status_reason).where(User.id == payout.affiliate_id).with_for_update(key_share=True)
    ).one()
    if affiliate.status == UserStatus.SUSPENDED:
        _hold(
            session, payout.id, PayoutStatus.APPROVED, _suspended_reason(affiliate.status_reason), actor=actor, now=now
        )
        session.expire(payout)
        return False
    changed = session.execute(
        update(Payout)
        .where(Payout.id == payout.id, Payout.status == PayoutStatus.APPROVED)
        .values(status=PayoutStatus.PAID, external_reference=reference[:255], paid_at=now)
    ).rowcount
    if not changed:
        return False
    post(
        session,
        "payout_paid",
        f"payout:{payout.id}",
        [
            Leg("payout_clearing", payout.amount_cents, payout.currency),
            Leg("cash", -payout.amount_cents, payout.currency),
        ],
        now=now,
    )
    session.execute(
        update(Commission)
        .where(
            Commission.affiliate_id == payout.affiliate_id,
            Commission.payout_id == payout.id,
            Commission.status == CommissionStatus.APPROVED,
        )
        .values(status=CommissionStatus.PAID)
    )
    _audit(session, actor.id, "payout.paid", "payout", payout.id, PayoutStatus.APPROVED, PayoutStatus.PAID, now)
    data = payloads.payout(payout, status=PayoutStatus.PAID, reference=reference[:255], paid_at=now)
    webhooks.emit_everywhere(session, "payout.paid", data, now=now, currency=payout.currency)
    _tell(
        session,
        payout,
        "payout_sent",
        f"Payout sent: {format_amount(payout.amount_cents, payout.currency)}",
        reference=reference[:255],
        now=now,
    )
    close_if_settled(session, payout.batch_id, actor=actor, now=now)
    session.expire(payout)
    return True


@dataclass(frozen=True)
class Settled:
    """What marking many payouts paid did, payout ids by outcome."""

    paid: list[int]
    already_paid: list[int]
    failed: list[int]  # marked failed before: not paid
    held: list[int]  # held (the affiliate is suspended), now or before: not paid
    not_approved: list[int]  # its batch is not approved yet, or it was cancelled

    def sentence(self, reference: str) -> str:
        """What was done, for the person who did it: "2 payouts marked paid (reference X); 1 was already paid." """
        paid = len(self.paid)
        done = f"{paid} payout{'s' if paid != 1 else ''} marked paid" + (f" (reference {reference})" if paid else "")
        parts = [done]
        for ids, said in (
            (self.already_paid, "already paid"),
            (self.failed, "marked failed before, so not paid"),
            (self.held, "held (the affiliate is suspended), so not paid"),
            (self.not_approved, "not approved, so not paid"),
        ):
            if ids:
                parts.append(f"{len(ids)} {'was' if len(ids) == 1 else 'were'} {said}")
        return "; ".join(parts) + "."


def mark_many_paid(
    session: Session, batch: PayoutBatch, payout_ids: list[int], *, reference: str, actor: User, now: datetime
) -> Settled:
    """Mark the batch's payouts ``payout_ids`` paid with one reference, each exactly as ``mark_paid`` does (the same
    guarded update, ledger entry, audit entry, webhook and mail), so none is paid twice; those that cannot be paid
    are reported by why. An id that is not a payout of this batch refuses the whole request before anything
    changes."""
    wanted = sorted(set(payout_ids))
    payouts = list(session.scalars(select(Payout).where(Payout.id.in_(wanted)).order_by(Payout.id)))
    if not wanted or len(payouts) != len(wanted) or any(p.batch_id != batch.id for p in payouts):
        raise PayoutError(f"Tick payouts of batch #{batch.id} only: nothing was marked paid.")
    outcome: dict[str, list[int]] = {name: [] for name in ("paid", "already_paid", "failed", "held", "not_approved")}
    for payout in payouts:
        if mark_paid(session, payout, reference=reference, actor=actor, now=now):
            outcome["paid"].append(payout.id)
            continue
        status = session.scalar(select(Payout.status).where(Payout.id == payout.id))
        kind = {PayoutStatus.PAID: "already_paid", PayoutStatus.FAILED: "failed", PayoutStatus.HELD: "held"}
        outcome[kind.get(status, "not_approved")].append(payout.id)
    session.expire(batch)
    return Settled(**outcome)


def close_if_settled(session: Session, batch_id: int, *, actor: User, now: datetime) -> bool:
    """Close an approved or exported batch once none of its payouts is left to pay (each paid or failed), with its
    audit entry; False when some are left, or it was closed already.

    The batch is locked (the callers lock it first), so of two people settling its last two payouts at once the
    second sees the first's and closes it."""
    _lock_batch_id(session, batch_id)
    left = session.scalar(select(func.count()).where(Payout.batch_id == batch_id, Payout.status.in_(UNSETTLED)))
    if left:
        return False
    before = session.scalar(select(PayoutBatch.status).where(PayoutBatch.id == batch_id))
    closed = session.execute(
        update(PayoutBatch)
        .where(PayoutBatch.id == batch_id, PayoutBatch.status.in_(OPEN))
        .values(status=BatchStatus.CLOSED)
    ).rowcount
    if closed:
        _audit(
            session,
            actor.id,
            "payout_batch.close",
            "payout_batch",
            batch_id,
            before,
            BatchStatus.CLOSED,
            now,
            note="every payout is paid or failed",
        )
    return bool(closed)


def mark_failed(session: Session, payout: Payout, *, reason: str, actor: User, now: datetime) -> bool:
    """An approved or held payout that was not made: its amount returns to the affiliate's balance (told to the
    webhook endpoints of the programs paying in its currency). The last payout of the batch to be settled closes
    it."""
    payable_turn(session, payout.currency, shared=False)  # its commissions are freed: not while a build links
    _lock_batch_id(session, payout.batch_id)
    before = session.scalar(select(Payout.status).where(Payout.id == payout.id).with_for_update(key_share=True))
    if before not in (PayoutStatus.APPROVED, PayoutStatus.HELD):
        return False
    changed = session.execute(
        update(Payout)
        .where(Payout.id == payout.id, Payout.status == before)
        .values(status=PayoutStatus.FAILED, failure_reason=reason[:1000])
    ).rowcount
    if not changed:
        return False
    post(
        session,
        "payout_failed",
        f"payout:{payout.id}",
        [
            Leg("payout_clearing", payout.amount_cents, payout.currency),
            Leg(f"affiliate_payable:{payout.affiliate_id}", -payout.amount_cents, payout.currency, payout.affiliate_id),
        ],
        now=now,
    )
    session.execute(
        update(Commission)
        .where(Commission.affiliate_id == payout.affiliate_id, Commission.payout_id == payout.id)
        .values(payout_id=None)
    )
    _audit(session, actor.id, "payout.failed", "payout", payout.id, before, PayoutStatus.FAILED, now, note=reason)
    data = payloads.payout(payout, status=PayoutStatus.FAILED)
    webhooks.emit_everywhere(session, "payout.failed", data, now=now, currency=payout.currency)
    _tell(
        session,
        payout,
        "payout_failed",
        f"Payout failed: {format_amount(payout.amount_cents, payout.currency)}",
        reason=reason[:1000],
        now=now,
    )
    close_if_settled(session, payout.batch_id, actor=actor, now=now)
    session.expire(payout)
    return True


def _tell(session: Session, payout: Payout, kind: str, subject: str, *, now: datetime, **context) -> None:
    """Mail a payout's affiliate: the amount, and where it went as their own payout details name it."""
    notifications.tell_affiliate(
        session,
        payout.affiliate_id,
        kind,
        subject=subject,
        now=now,
        payout=payout,
        method=notifications.PAYOUT_METHODS.get(payout.method, payout.method),
        destination=notifications.payout_destination(payout.method, payout.destination),
        earnings_url=mail.external_url("partner_earnings.index"),
        payout_url=mail.external_url("account.payout"),
        **context,
    )


def _lock_batch(session: Session, batch: PayoutBatch) -> None:
    """Actions on one batch take turns on PostgreSQL, as SQLite's single writer makes them."""
    _lock_batch_id(session, batch.id)


def _lock_batch_id(session: Session, batch_id: int) -> None:
    session.execute(select(PayoutBatch.id).where(PayoutBatch.id == batch_id).with_for_update(key_share=True)).all()


def _suspended(affiliate) -> str:
    return _suspended_reason(affiliate.status_reason)


def _suspended_reason(reason: str | None) -> str:
    return f"affiliate suspended: {reason}" if reason else "affiliate suspended"


def _destination(affiliate) -> str:
    if affiliate.payout_iban:
        return f"{affiliate.payout_account_name} {affiliate.payout_iban}"
    return affiliate.payout_email or ""


def _audit(session, actor_id, action, subject_type, subject_id, before, after, now, note=None) -> None:
    audit.record(
        session,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=None if before is None else {"status": str(before)},
        after={"status": str(after)},
        now=now,
        note=note,
    )
