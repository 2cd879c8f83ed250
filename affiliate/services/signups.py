"""The hosted signup (refer-a-friend): a new member, who referred them, and the signup conversion."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from affiliate.models import (
    Click,
    Conversion,
    ConversionType,
    Program,
    ProgramStatus,
    Referral,
    Role,
    User,
    UserStatus,
)
from affiliate.services import accounts
from affiliate.services.conversions import ConversionRequest, announce, record_conversion
from affiliate.services.enrollment import admits, enrollment_status
from affiliate.services.screening import screen

REFERRAL_CODE = re.compile(r"[A-Za-z0-9]{4,16}")


@dataclass(frozen=True)
class Signup:
    """What the signup form and the request carry."""

    name: str
    email: str
    password: str
    ref: str | None = None  # a referral code from ?ref=
    program_id: int | None = None
    click_id: str | None = None  # ?ct_click= or the program's click cookie
    visitor_id: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class SignupResult:
    member: User
    referral: Referral | None
    conversion: Conversion | None


def find_referrer(session: Session, code: str | None) -> User | None:
    """The active affiliate or member a referral code belongs to; None for unknown or malformed codes."""
    if not code or not REFERRAL_CODE.fullmatch(code):
        return None
    user = session.scalar(select(User).where(User.referral_code == code.upper()))
    if user is None or user.status != UserStatus.ACTIVE or user.role not in (Role.AFFILIATE, Role.MEMBER):
        return None
    return user


def signup_program(session: Session, program_id: int | None, click_id: str | None) -> Program | None:
    """The program a hosted signup counts for: the one asked for, else the clicked one's, else the oldest active."""
    active = Program.status == ProgramStatus.ACTIVE
    if program_id is not None:
        program = session.scalar(select(Program).where(Program.id == program_id, active))
        if program is not None:
            return program
    if click_id:
        program = session.scalar(
            select(Program).join(Click, Click.program_id == Program.id).where(Click.click_id == click_id, active)
        )
        if program is not None:
            return program
    return session.scalar(select(Program).where(active).order_by(Program.id).limit(1))


def sign_up(
    session: Session, signup: Signup, *, password_hash: str, min_password_length: int, now: datetime
) -> SignupResult:
    """Create the member, credit whoever referred them, and record the signup conversion.

    The referrer is the owner of the referral code if it is valid and not the new member's
    own address; otherwise the affiliate whose click attribution finds. An unknown,
    malformed or own code is ignored without a word: the person signs up either way.
    ``password_hash`` is ``signup.password`` hashed by the caller before its write transaction.
    Raises accounts.WeakPassword or accounts.EmailTaken.
    """
    accounts.check_password(signup.password, min_length=min_password_length, email=signup.email)
    referrer = find_referrer(session, signup.ref)
    if referrer is not None and referrer.email == accounts.normalise_email(signup.email):
        referrer = None
    member = accounts.create_user(
        session,
        name=signup.name,
        email=signup.email,
        password_hash=password_hash,
        role=Role.MEMBER,
        status=UserStatus.ACTIVE,
        now=now,
        referred_by=referrer,
    )
    program = signup_program(session, signup.program_id, signup.click_id)
    conversion = None
    if program is not None:
        report = ConversionRequest(
            type=ConversionType.SIGNUP,
            order_id=f"member-{member.id}",
            amount_cents=0,
            currency=program.currency,
            customer_external_id=f"member-{member.id}",
            customer_email=member.email,
            click_id=signup.click_id,
            visitor_id=signup.visitor_id,
            fingerprint=signup.fingerprint,
            customer_user_id=member.id,
        )
        recorded = record_conversion(session, program, report, now=now, quiet=True)
        conversion = recorded.conversion
        if conversion.waiting_for_click is not None:
            # Credited when its click is stored (credit_late_signup); the referral code's owner, if any, is
            # this member's referrer already.
            return SignupResult(member, _add_referral(session, member, referrer, program, None, now), conversion)
        paused = program.status != ProgramStatus.ACTIVE
        if (
            conversion.affiliate_id is None
            and referrer is not None
            and _code_credits(session, program, referrer, paused=paused)
        ):
            _credit_referral_code(session, conversion, referrer, now=now)
        if recorded.created:
            announce(session, conversion, now=now)  # once credited, so postbacks reach the referrer's tracker
    if referrer is None and conversion is not None and conversion.affiliate_id is not None:
        referrer = session.get(User, conversion.affiliate_id)
        member.referred_by_id = referrer.id
    return SignupResult(member, _add_referral(session, member, referrer, program, conversion, now), conversion)


def credit_late_signup(session: Session, conversion: Conversion, *, now: datetime) -> None:
    """Finish a hosted signup whose conversion waited for its click, as sign_up would have on the spot.

    Before it is announced: credit the member's referral code when no click won, or else make the
    credited affiliate the member's referrer, with the referral, when the member came without a code.
    """
    member = session.get(User, conversion.customer_user_id) if conversion.customer_user_id else None
    if member is None or conversion.type != ConversionType.SIGNUP:
        return
    if conversion.affiliate_id is None:
        referrer = session.get(User, member.referred_by_id) if member.referred_by_id else None
        paused = json.loads(conversion.decision_trace or "{}").get("paused", False)  # as when it arrived
        if referrer is not None and _code_credits(session, conversion.program, referrer, paused=paused):
            _credit_referral_code(session, conversion, referrer, now=now)
        return
    if member.referred_by_id is None:
        member.referred_by_id = conversion.affiliate_id
        referrer = session.get(User, conversion.affiliate_id)
        _add_referral(session, member, referrer, conversion.program, conversion, conversion.created_at)


def _add_referral(
    session: Session,
    member: User,
    referrer: User | None,
    program: Program | None,
    conversion: Conversion | None,
    now: datetime,
) -> Referral | None:
    if referrer is None:
        return None
    referral = Referral(
        referrer_id=referrer.id,
        referred_id=member.id,
        program_id=program.id if program else None,
        click_id=conversion.click_id if conversion else None,
        created_at=now,
    )
    session.add(referral)
    session.flush()
    return referral


def _code_credits(session: Session, program: Program, referrer: User, *, paused: bool) -> bool:
    """Whether a referral code may credit its owner in this program: not when it was paused as the signup arrived,
    and an affiliate only while the program admits them (a removed one earns nothing there, by link or by code). A
    member refers as a person, enrolled nowhere."""
    if paused:
        return False
    if referrer.role != Role.AFFILIATE:
        return True
    return admits(program.enrollment, enrollment_status(session, program.id, referrer.id))


def _credit_referral_code(session: Session, conversion: Conversion, referrer: User, *, now: datetime) -> None:
    """No click won, but the person came with a valid referral code: credit its owner, say so, and screen it.

    Attribution screened the conversion while it was credited to no one, which scores nothing: credited now, it
    goes through the fraud rules as any attributed conversion does (a referrer signing themselves up under an
    address alias from their own device is self-referral, however they came).
    """
    trace = json.loads(conversion.decision_trace or "{}")
    trace.update(
        affiliate_id=referrer.id,
        matched_by="referral_code",
        summary="No qualifying click; the person signed up with the referrer's referral code.",
    )
    trace.setdefault("trace", []).append(
        {
            "outcome": "won",
            "reason": "referral_code",
            "matched_by": "referral_code",
            "affiliate_id": referrer.id,
            "detail": "No qualifying click; the signup came with this referrer's referral code.",
        }
    )
    conversion.affiliate_id = referrer.id
    conversion.decision_trace = json.dumps(trace)
    screen(session, conversion, None, now=now)
