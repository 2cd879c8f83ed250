"""Tracking links: creating them, pausing them, and counting their clicks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import ClickRollup, Link, Program, ProgramStatus, User
from affiliate.services import enrollment, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.urls import InvalidUrl, host_of, resolve_deep_link

# Letters and digits without look-alikes; 57**8 ~ 2**46.7 codes.
LINK_ALPHABET = "23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
LINK_CODE_LENGTH = 8


class LinkError(Exception):
    """A link could not be created or changed; ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LinkRequest:
    program_id: int
    campaign: str | None
    subs: tuple[str | None, str | None, str | None, str | None, str | None]
    deep_link: str | None


@dataclass(frozen=True)
class ClickCounts:
    raw: int = 0
    human: int = 0
    unique: int = 0


def generate_link_code() -> str:
    return "".join(secrets.choice(LINK_ALPHABET) for _ in range(LINK_CODE_LENGTH))


def program_hosts(program: Program) -> frozenset[str]:
    """Hosts a program's links may send shoppers to: its destination's host and its allowlist."""
    return frozenset({host_of(program.destination_url), *program.allowed_host_list})


def create_link(
    session: Session, affiliate: User, request: LinkRequest, *, now: datetime, allow_http_loopback: bool = False
) -> Link:
    """Create a link for an active affiliate on an active program, with a fresh unique code; the program's
    webhook endpoints are told.

    ``allow_http_loopback`` is the ALLOW_HTTP_LOOPBACK_DESTINATIONS setting, for deep links on a local demo.
    """
    if not affiliate.can_use_partner_pages:
        raise LinkError("Only approved affiliates can create links.")
    program = session.get(Program, request.program_id)
    if program is None or program.status != ProgramStatus.ACTIVE:
        raise LinkError("Choose an active program.", field="program_id")
    if not enrollment.can_promote(session, program, affiliate.id):
        raise LinkError("You are not enrolled in this program; apply or ask for an invitation.", field="program_id")
    deep_link = None
    if request.deep_link:
        try:
            deep_link = resolve_deep_link(
                request.deep_link,
                program.destination_url,
                program_hosts(program),
                allow_http_loopback=allow_http_loopback,
            )
        except InvalidUrl as error:
            raise LinkError(str(error), field="deep_link") from None
    for _ in range(8):
        link = Link(
            code=generate_link_code(),
            affiliate_id=affiliate.id,
            program_id=program.id,
            campaign=request.campaign,
            sub1=request.subs[0],
            sub2=request.subs[1],
            sub3=request.subs[2],
            sub4=request.subs[3],
            sub5=request.subs[4],
            deep_link=deep_link,
            active=True,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(link)
                session.flush()
        except IntegrityError:
            continue
        webhooks.emit(session, program.id, "link.created", payloads.link(link), now=now)
        return link
    raise RuntimeError("could not draw a unique link code")


def set_link_active(session: Session, affiliate: User, link_id: int, *, active: bool) -> Link:
    """Pause or resume one of the affiliate's own links."""
    link = session.get(Link, link_id)
    if link is None or link.affiliate_id != affiliate.id:
        raise LinkError("No such link.")
    link.active = active
    return link


def click_counts(session: Session, affiliate_id: int, link_ids: list[int]) -> dict[int, ClickCounts]:
    """Raw, human and unique clicks per link of the affiliate, all time.

    Read from the rollups, which outlive purged raw clicks; human and unique are as
    ``affiliate.services.traffic`` defines them.
    """
    if not link_ids:
        return {}
    rows = session.execute(
        select(
            ClickRollup.value,
            func.sum(ClickRollup.raw_clicks),
            func.sum(ClickRollup.human_clicks),
            func.sum(ClickRollup.unique_clicks),
        )
        .where(
            ClickRollup.affiliate_id == affiliate_id,
            ClickRollup.dimension == "link",
            ClickRollup.value.in_([str(link_id) for link_id in link_ids]),
        )
        .group_by(ClickRollup.value)
    ).all()
    return {int(value): ClickCounts(int(raw), int(human), int(unique)) for value, raw, human, unique in rows}


def count_of(session: Session, affiliate_id: int) -> int:
    """How many links an affiliate has made."""
    return session.scalar(select(func.count()).where(Link.affiliate_id == affiliate_id))


def links_of(affiliate_id: int) -> Select:
    """An affiliate's links, newest first (a statement, for the paginator)."""
    return select(Link).where(Link.affiliate_id == affiliate_id).order_by(Link.created_at.desc(), Link.id.desc())
