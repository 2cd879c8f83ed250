"""Programs: creating and editing what affiliates promote."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import (
    Adjustment,
    AttributionModel,
    CommissionPlan,
    CommissionTier,
    Conversion,
    ConversionType,
    EnrollmentPolicy,
    Link,
    Program,
    ProgramStatus,
    User,
)
from affiliate.services import audit, enrollment
from affiliate.services.commissions import REVENUE
from affiliate.services.plans import PLAN_BEGINNING


class ProgramError(Exception):
    """A program change was refused; ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ProgramSettings:
    name: str
    description: str | None
    status: ProgramStatus
    destination_url: str
    allowed_hosts: tuple[str, ...]
    fallback_url: str | None
    attribution_window_days: int
    cookie_days: int
    attribution_model: AttributionModel
    hold_days: int
    currency: str
    minimum_payout_cents: int
    enrollment: str = "open"
    code_precedence: str = "click"  # "code": a coupon wins over another affiliate's qualifying click


def snapshot(program: Program) -> dict:
    return {
        "name": program.name,
        "description": program.description,
        "status": program.status,
        "destination_url": program.destination_url,
        "allowed_hosts": tuple(program.allowed_host_list),
        "fallback_url": program.fallback_url,
        "attribution_window_days": program.attribution_window_days,
        "cookie_days": program.cookie_days,
        "attribution_model": program.attribution_model,
        "hold_days": program.hold_days,
        "currency": program.currency,
        "minimum_payout_cents": program.minimum_payout_cents,
        "enrollment": program.enrollment,
        "code_precedence": program.code_precedence,
    }


def save_program(
    session: Session, program: Program | None, settings: ProgramSettings, *, actor: User, now: datetime
) -> Program:
    """Create a program (with an empty default commission plan) or update one."""
    clash = session.scalar(
        select(Program.id).where(Program.name == settings.name, Program.id != (program.id if program else -1))
    )
    if clash is not None:
        raise ProgramError("Another program already has this name.", field="name")
    if program is not None and settings.currency != program.currency:
        _check_currency_can_change(session, program)
    before = snapshot(program) if program else None
    creating = program is None
    if creating:
        program = Program(created_at=now)
    values = asdict(settings)
    values["allowed_hosts"] = "\n".join(settings.allowed_hosts)
    for key, value in values.items():
        setattr(program, key, value)
    program.updated_at = now
    try:
        with session.begin_nested():
            if creating:
                session.add(program)
                # The program's first plan covers all of its history, however far back a sale is dated.
                session.add(
                    CommissionPlan(program=program, effective_from=PLAN_BEGINNING, recurring_months=0, created_at=now)
                )
            session.flush()
    except IntegrityError:
        raise ProgramError("Another program already has this name.", field="name") from None
    if (
        before is not None
        and before["enrollment"] == EnrollmentPolicy.OPEN
        and program.enrollment != before["enrollment"]
    ):
        enrollment.keep_promoters(session, program, actor_id=actor.id, now=now)
    after = snapshot(program)
    if before != after:
        audit.record(
            session,
            actor_id=actor.id,
            action="program.created" if creating else "program.updated",
            subject_type="program",
            subject_id=program.id,
            before=before,
            after=after,
            now=now,
        )
    return program


def _check_currency_can_change(session: Session, program: Program) -> None:
    """A program's amounts are stored in its currency's minor units: once money is recorded in it, or its plan
    names an amount, another currency would read those numbers as something else (5.00 USD as 500 yen), and what
    is owed in the old one could no longer be paid out. The currency is fixed from then on."""
    program_id, currency = program.id, program.currency
    # FOR UPDATE, not the money services' NO KEY UPDATE: a sale being stored holds a key-share lock on the program
    # until it commits, so this waits for it and then counts it; one that starts after waits for this change.
    session.execute(select(Program.id).where(Program.id == program_id).with_for_update()).all()
    money = (
        select(Conversion.id)
        .where(Conversion.program_id == program_id, Conversion.type != ConversionType.SIGNUP)  # a signup has none
        .union_all(select(Adjustment.id).where(Adjustment.program_id == program_id))
    )
    if session.scalar(select(money.limit(1).subquery().c.id)) is not None:
        raise ProgramError(
            f"This program has recorded sales or adjustments in {currency}; its currency can no longer change. "
            "Create another program for the new currency.",
            field="currency",
        )
    # A tier names an amount when its threshold is revenue or it pays a flat amount.
    priced_tier = exists().where(
        CommissionTier.plan_id == CommissionPlan.id,
        or_(CommissionPlan.tier_basis == REVENUE, CommissionTier.flat_cents > 0),
    )
    priced = or_(
        CommissionPlan.flat_cents > 0,
        CommissionPlan.referrer_reward_cents > 0,
        CommissionPlan.referee_reward_cents > 0,
        CommissionPlan.bonus_cents > 0,
        priced_tier,
    )
    if session.scalar(select(exists().where(CommissionPlan.program_id == program_id, priced))):
        raise ProgramError(
            f"This program's commission plan names amounts in {currency} (a flat amount, a reward, a bonus or "
            "revenue tiers); its currency can no longer change. Create another program for the new currency.",
            field="currency",
        )


def by_name(session: Session) -> list[Program]:
    """Every program, by name: the choices of a program filter."""
    return list(session.scalars(select(Program).order_by(Program.name)))


def promoted_by(session: Session, affiliate_id: int) -> list[Program]:
    """The programs an affiliate has links on, by name: the only ones their report filter offers."""
    linked = select(Link.program_id).where(Link.affiliate_id == affiliate_id)
    return list(session.scalars(select(Program).where(Program.id.in_(linked)).order_by(Program.name)))


def names(session: Session, ids: set[int]) -> dict[int, str]:
    """Each program's name by id, for the ids given."""
    return dict(session.execute(select(Program.id, Program.name).where(Program.id.in_(ids))).all())


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Program))
