"""What a pending, rejected or suspended affiliate sees of their own application: the programs it names."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from affiliate.models import Enrollment, Program


def programs_applied_to(session: Session, affiliate_id: int) -> list[tuple[str, str]]:
    """(program name, enrollment status) of every program the affiliate applied to or was enrolled in, by name."""
    found = session.execute(
        select(Program.name, Enrollment.status)
        .join(Enrollment, Enrollment.program_id == Program.id)
        .where(Enrollment.affiliate_id == affiliate_id)
        .order_by(func.lower(Program.name))
    )
    return [(name, status) for name, status in found]
