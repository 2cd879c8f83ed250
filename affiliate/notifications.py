"""Who hears about what: each notification kind, who it goes to, and the opt-outs that silence it.

A notification is rendered and put in the outbox in the transaction of the event it tells about
(affiliate/services/outbox.py), so it is sent exactly when the event happened. Every kind but the
security notices can be turned off on the person's Notifications page or with the unsubscribe link
in the mail itself (RFC 8058 one-click, so a mail client's "unsubscribe" button works too).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from affiliate import mail
from affiliate.models import (
    Commission,
    Conversion,
    NotificationOptOut,
    OutboxMessage,
    PayoutMethod,
    Program,
    Role,
    User,
    UserStatus,
)
from affiliate.money import format_amount
from affiliate.services import outbox


@dataclass(frozen=True)
class Kind:
    label: str
    roles: frozenset[str]
    security: bool = False  # always sent: it tells the owner about their own account's safety


EVERYONE = frozenset(Role)
KINDS: dict[str, Kind] = {
    "application_received": Kind("A new affiliate application", frozenset({Role.ADMIN})),
    "application_decided": Kind("Your application approved or declined", frozenset({Role.AFFILIATE})),
    "enrolled": Kind("Enrolled in a program", frozenset({Role.AFFILIATE})),
    "commission_new": Kind("A new commission", frozenset({Role.AFFILIATE})),
    "commissions_approved": Kind("Commissions approved", frozenset({Role.AFFILIATE})),
    "conversion_rejected": Kind("A conversion rejected", frozenset({Role.AFFILIATE})),
    "payout_sent": Kind("A payout sent", frozenset({Role.AFFILIATE})),
    "payout_failed": Kind("A payout failed", frozenset({Role.AFFILIATE})),
    "batch_awaiting_approval": Kind("A payout batch waiting for approval", frozenset({Role.FINANCE})),
    "password_reset": Kind("Password reset link", EVERYONE, security=True),
    "email_verification": Kind("Email address confirmation", EVERYONE, security=True),
    "password_changed": Kind("Password changed", EVERYONE, security=True),
    "payout_details_changed": Kind("Payout details changed", EVERYONE, security=True),
    "new_sign_in": Kind("Sign-in from a new device", EVERYONE, security=True),
    "second_factor_changed": Kind("Two-factor sign-in changed", EVERYONE, security=True),
    # Sent whatever the settings: a webhook or postback that stopped is something its owner must act on.
    "endpoint_disabled": Kind("A webhook or postback turned off after failing", EVERYONE, security=True),
}


def optional_kinds(role: str) -> list[tuple[str, Kind]]:
    """The kinds a person of ``role`` receives and may turn off, in the order they are listed."""
    return [(name, kind) for name, kind in KINDS.items() if not kind.security and role in kind.roles]


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="clicktrail.unsubscribe")


def unsubscribe_token(user_id: int, kind: str) -> str:
    return _serializer().dumps([user_id, kind])


def read_unsubscribe_token(token: str) -> tuple[int, str] | None:
    """The (user id, kind) an unsubscribe link names, or None if it was not made here."""
    try:
        value = _serializer().loads(token)
    except BadData:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or value[1] not in KINDS
        or KINDS[value[1]].security
    ):
        return None
    return value[0], value[1]


def opted_out(session: Session, user_id: int) -> set[str]:
    return set(session.scalars(select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user_id)))


def set_opt_outs(session: Session, user: User, off: set[str], *, now: datetime) -> None:
    """Make exactly ``off`` (of the kinds the person may turn off) silent."""
    allowed = {name for name, _ in optional_kinds(user.role)}
    off = off & allowed
    session.execute(
        delete(NotificationOptOut).where(NotificationOptOut.user_id == user.id, NotificationOptOut.kind.not_in(off))
    )
    for kind in off:
        opt_out(session, user.id, kind, now=now)


def opt_out(session: Session, user_id: int, kind: str, *, now: datetime) -> None:
    """Silence one kind for one person; doing it twice (a double click on unsubscribe) changes nothing."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(NotificationOptOut)
        .values(user_id=user_id, kind=kind, created_at=now)
        .on_conflict_do_nothing(index_elements=["user_id", "kind"])
    )


def send(
    session: Session, user: User, kind: str, *, subject: str, now: datetime, template: str | None = None, **context
) -> OutboxMessage | None:
    """Queue one notification to ``user`` unless they turned its kind off; security notices always go."""
    spec = KINDS[kind]
    if not spec.security and kind in opted_out(session, user.id):
        return None
    unsubscribe_url = None
    if not spec.security:
        unsubscribe_url = mail.external_url("auth.unsubscribe", token=unsubscribe_token(user.id, kind))
    text, html = mail.render(
        template or kind,
        user=user,
        subject=subject,
        kind_label=spec.label,
        unsubscribe_url=unsubscribe_url,
        settings_url=mail.external_url("account_notifications.settings"),
        **context,
    )
    return outbox.queue(
        session,
        kind=kind,
        to=user.email,
        subject=subject,
        text=text,
        html=html,
        now=now,
        user_id=user.id,
        unsubscribe_url=unsubscribe_url,
    )


def send_to_role(
    session: Session, role: Role, kind: str, *, subject: str, now: datetime, exclude: int | None = None, **context
) -> int:
    """Queue a notification to every active user of ``role`` (but ``exclude``); how many were queued."""
    people = session.scalars(
        select(User).where(User.role == role, User.status == UserStatus.ACTIVE).order_by(User.id)
    ).all()
    return sum(
        send(session, person, kind, subject=subject, now=now, **context) is not None
        for person in people
        if person.id != exclude
    )


# What each commission kind is, in an affiliate's words (a referee's reward goes to a member, who is not told).
COMMISSION_KINDS = {
    "earning": "commission",
    "raise": "raise of an earlier sale, as this month reached a better tier",
    "second_tier": "second tier, on a sale of a partner you recruited",
    "referrer_reward": "reward for referring a new member",
    "performance_bonus": "performance bonus of the month",
}
# Why a conversion was rejected, as its affiliate may read it: which kind of check it failed, never the evidence
# (addresses, devices, thresholds) that would teach someone how to pass it.
REJECTION_REASONS = {
    "bot": "the traffic looked automated",
    "click_flooding": "its link received far more clicks than a person makes",
    "duplicate_click": "it repeated a click already counted",
    "cookie_stuffing": "the click did not come from a visitor choosing the link",
    "self_referral": "the customer appears to be the affiliate themself",
    "too_fast": "it followed its click too quickly",
    "click_spamming": "its clicks did not look like people choosing the link",
    "existing_customer": "the customer was already a customer",
    "disposable_email": "the customer used a throwaway email address",
    "paid_traffic": "it came from paid advertising the program does not allow",
    "blocked_country": "it came from a country the program does not accept",
    "country_mismatch": "the click and the purchase came from different countries",
    "conversion_rate_outlier": "the link converts far above what is plausible",
    "shared_device": "one device placed many conversions",
    "coupon_leak": "the coupon is being used far beyond your own audience",
}


def rejection_reasons(fraud_reasons: str | None) -> list[str]:
    """The redacted reasons of a conversion's fraud verdict (the rules that fired, in words); empty when a
    reviewer rejected it without a rule firing."""
    try:
        fired = json.loads(fraud_reasons or "[]")
    except ValueError:
        return []
    rules = [entry.get("rule") for entry in fired if isinstance(entry, dict)] if isinstance(fired, list) else []
    return list(dict.fromkeys(REJECTION_REASONS[rule] for rule in rules if rule in REJECTION_REASONS))


PAYOUT_METHODS = {PayoutMethod.PAYPAL: "PayPal", PayoutMethod.WISE: "Wise", PayoutMethod.BANK: "bank transfer"}


def tell_affiliate(
    session: Session, user_id: int, kind: str, *, subject: str, now: datetime, **context
) -> OutboxMessage | None:
    """Queue a notification to the affiliate ``user_id``; nobody else hears (a member's reward, a staff account)."""
    user = session.get(User, user_id)
    if user is None or user.role != Role.AFFILIATE:
        return None
    return send(session, user, kind, subject=subject, now=now, **context)


def one_line(text: str, limit: int = 80) -> str:
    """Typed text (a name, a program's name) fit for a subject: no mail header may hold a line break."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def payout_destination(method: str, destination: str) -> str:
    """Where a payout goes, as its affiliate recognises it: their PayPal or Wise address, or the last
    digits of their bank account (a mailbox is no place for a whole IBAN)."""
    if method == PayoutMethod.BANK:
        return f"the bank account ending {destination.strip()[-4:]}"
    return destination


def new_commissions(session: Session, conversion: Conversion, commissions: list[Commission], *, now: datetime) -> None:
    """Tell each affiliate in one mail what evaluating one conversion credited them: its commission, the raises
    of earlier sales a better tier brings, a bonus, or a recruiter's second tier. A tier crossed then means one
    mail, not one per raise, and each person's opt-outs are read once."""
    if not commissions:
        return
    program = session.get(Program, conversion.program_id)
    earnings_url = mail.external_url("partner_earnings.index")
    for affiliate_id, theirs in _by_affiliate(commissions).items():
        total = format_amount(sum(c.amount_cents for c in theirs), conversion.currency)
        subject = f"New commission{'s' if len(theirs) > 1 else ''}: {total} in {one_line(program.name)}"
        tell_affiliate(
            session,
            affiliate_id,
            "commission_new",
            subject=subject,
            now=now,
            commissions=theirs,
            program=program,
            conversion=conversion,
            kind_names=COMMISSION_KINDS,
            earnings_url=earnings_url,
        )


def commissions_approved(session: Session, commissions: list[Commission], *, now: datetime, by_hand: bool) -> None:
    """Tell each affiliate in one mail that commissions of theirs were approved: by finance (listed), or by rule
    once their hold passed (counted and totalled per currency, however many one run approved)."""
    if not commissions:
        return
    earnings_url = mail.external_url("partner_earnings.index")
    for affiliate_id, theirs in _by_affiliate(commissions).items():
        totals: dict[str, int] = defaultdict(int)
        for commission in theirs:
            totals[commission.currency] += commission.amount_cents
        in_words = " and ".join(format_amount(cents, currency) for currency, cents in sorted(totals.items()))
        what = f"{len(theirs)} commissions" if len(theirs) > 1 else "Commission"
        programs = {c.program_id: session.get(Program, c.program_id) for c in theirs} if by_hand else {}
        tell_affiliate(
            session,
            affiliate_id,
            "commissions_approved",
            subject=f"{what} approved: {in_words}",
            now=now,
            commissions=theirs,
            count=len(theirs),
            totals=sorted(totals.items()),
            by_hand=by_hand,
            programs=programs,
            kind_names=COMMISSION_KINDS,
            earnings_url=earnings_url,
        )


def _by_affiliate(commissions: list[Commission]) -> dict[int, list[Commission]]:
    people: dict[int, list[Commission]] = defaultdict(list)
    for commission in commissions:
        people[commission.affiliate_id].append(commission)
    return people
