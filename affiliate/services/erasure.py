"""Erasure: a person's clicks, conversions and member account pseudonymised on request; money kept whole.

**Finding the person.** A request names the person by an email, a merchant's customer id, a
visitor cookie or a click id. From there every copy is gathered until nothing new turns up:
the clicks of each visitor cookie found, the clicks conversions point at, the conversions
of each click, email, customer id (within its program) and member account found, the refunds
of those conversions, the member accounts with those emails or that those conversions were
made by, and the clicks their referrals came from. Device fingerprints are never followed:
one fingerprint is shared by everyone behind one network on one browser build.

**Pseudonyms.** Each personal value becomes ``erased-`` and a keyed hash of it, with a key of 32
random bytes made for this request and never stored: nobody (not even with the database and
the server's secrets) can compute the value back, or test a guess against it, yet one value
gets one pseudonym across the request's rows. Values that already are pseudonyms stay as they
are, so a second request changes nothing.

**What changes.** Clicks: IP, its hash and network, user agent, fingerprint, visitor cookie
(pseudonyms), region and city (cleared), referrer (cut to its scheme and host, which is all a
report reads of it). Conversions: customer email, customer id, IP and fingerprint (pseudonyms)
and the merchant's free-form metadata (cleared), in the conversions and in the webhook messages about them,
sent or waiting. Member accounts (role ``member`` only; an
affiliate's or staff account is never changed here): name, email, website, promotion, payout
details and password (the account can no longer sign in), their sign-ins ended and the sign-in
records pseudonymised too. Sign-in throttles hold only keyed digests of what they count, never an email; the
person's are deleted. Stripe customers: the customer and checkout ids of their binding (pseudonyms), and events
still waiting on them (ignored, their payload dropped).

**What stays.** Every id, time, amount, currency, status and fraud verdict; commissions, the
ledger, payouts, referrals and every rollup (a click's country, device, browser, referrer host
and sub-IDs, the only per-click values rollups hold, are kept). Reports and ``ledger-check``
give the same answers before and after.

The rows are read with FOR UPDATE (on SQLite the transaction holds the write lock already), so
an erasure and, say, a review of the same conversion happen one after the other. The caller
commits.

Why one module: finding a person and pseudonymising every copy share one key per request and one rule for
what counts as theirs; split, a copy could be found by one half and missed by the other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from affiliate.models import (
    AuditLog,
    Click,
    Conversion,
    Delivery,
    OutboxMessage,
    Referral,
    Role,
    StripeCustomer,
    StripeEvent,
    User,
    UserSession,
)
from affiliate.services import audit, throttles
from affiliate.services.accounts import normalise_email

PREFIX = "erased-"
EMAIL_DOMAIN = "@erased.invalid"  # .invalid never resolves (RFC 2606): mail to it goes nowhere
ERASED_NAME = "Erased member"
UNUSABLE_PASSWORD = "!erased"  # noqa: S105 - not a hash: no password verifies against it
KINDS = ("email", "customer_id", "visitor_id", "click_id")
# The webhook events whose message carries a conversion's customer and metadata (webhook_payloads.conversion).
CONVERSION_EVENTS = ("conversion.created", "conversion.flagged", "conversion.approved", "conversion.rejected")
ERASED_WAITING = "Its customer was erased on request: the sale it waited for can no longer be found."
MAX_ROUNDS = 20  # following copies stops here; each round only adds what the last one found


class NothingToErase(Exception):
    """The identifier is empty or not one erasure understands."""


@dataclass(frozen=True)
class Found:
    """The rows of one person, by primary key."""

    clicks: frozenset[int] = frozenset()
    conversions: frozenset[int] = frozenset()
    members: frozenset[int] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.clicks or self.conversions or self.members)


@dataclass
class Erased:
    """What one request found and how many rows it changed (0 changed: erased before, or nothing found)."""

    found: Found
    changed: dict[str, int] = field(default_factory=dict)

    @property
    def changed_rows(self) -> int:
        return sum(self.changed.values())


def is_pseudonym(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


class Pseudonyms:
    """Irreversible, per-request pseudonyms: the same value gives the same pseudonym within a request."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def __call__(self, value: str | None, length: int) -> str | None:
        """The value's pseudonym cut to the column's length; None and pseudonyms stay as they are."""
        if value is None or is_pseudonym(value):
            return value
        digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return (PREFIX + digest)[:length]

    def email(self, value: str | None) -> str | None:
        if value is None or is_pseudonym(value):
            return value
        return self(value.strip().lower(), 64) + EMAIL_DOMAIN


def normalise(kind: str, value: str) -> str:
    """The identifier as it is stored: emails lower case, all trimmed; raise NothingToErase when unusable."""
    if kind not in KINDS:
        raise NothingToErase(f"Unknown identifier {kind!r}: use one of {', '.join(KINDS)}.")
    value = (value or "").strip()
    if not value or len(value) > 254:
        raise NothingToErase("Give the identifier: 1 to 254 characters.")
    if is_pseudonym(value):
        raise NothingToErase("That is a pseudonym: whoever it stood for is erased already.")
    if kind == "email":
        if "@" not in value:
            raise NothingToErase("That is not an email address.")
        value = value.lower()
    return value


def find(session: Session, kind: str, value: str, *, lock: bool = False) -> Found:
    """Every click, conversion and member account of the person the identifier names."""
    value = normalise(kind, value)
    emails: set[str] = {value} if kind == "email" else set()
    customers: set[tuple[int | None, str]] = {(None, value)} if kind == "customer_id" else set()
    visitors: set[str] = {value} if kind == "visitor_id" else set()
    clicks: set[int] = set()
    conversions: set[int] = set()
    members: set[int] = set()
    if kind == "click_id":
        clicks |= set(session.scalars(_locked(select(Click.id).where(Click.click_id == value), lock)))

    for _ in range(MAX_ROUNDS):
        before = (len(clicks), len(conversions), len(members), len(emails), len(customers), len(visitors))
        if emails:
            members |= set(
                session.scalars(
                    _locked(select(User.id).where(func.lower(User.email).in_(emails), User.role == Role.MEMBER), lock)
                )
            )
        if visitors:
            clicks |= set(session.scalars(_locked(select(Click.id).where(Click.visitor_id.in_(visitors)), lock)))
        if members:
            clicks |= {
                c
                for c in session.scalars(select(Referral.click_id).where(Referral.referred_id.in_(members)))
                if c is not None
            }
        matches = []
        if emails:
            matches.append(func.lower(Conversion.customer_email).in_(emails))
            for email in sorted(email for email in emails if not email.isascii()):
                matches.append(Conversion.id.in_(_conversions_with_email(session, email)))
        for program_id, customer in customers:
            same = Conversion.customer_external_id == customer
            matches.append(same if program_id is None else same & (Conversion.program_id == program_id))
        if clicks:
            matches.append(Conversion.click_id.in_(clicks))
        if members:
            matches.append(Conversion.customer_user_id.in_(members))
        if conversions:
            matches.append(Conversion.refund_of_id.in_(conversions))
        if matches:
            rows = session.execute(
                _locked(
                    select(
                        Conversion.id,
                        Conversion.click_id,
                        Conversion.customer_email,
                        Conversion.customer_external_id,
                        Conversion.program_id,
                        Conversion.customer_user_id,
                        Conversion.refund_of_id,
                    ).where(or_(*matches)),
                    lock,
                )
            ).all()
            for row in rows:
                conversions.add(row.id)
                clicks |= {row.click_id} - {None}
                if row.refund_of_id is not None:
                    conversions.add(row.refund_of_id)
                if row.customer_email and not is_pseudonym(row.customer_email):
                    emails.add(row.customer_email.strip().lower())
                if row.customer_external_id and not is_pseudonym(row.customer_external_id):
                    customers.add((row.program_id, row.customer_external_id))
                if row.customer_user_id is not None:
                    members |= set(
                        session.scalars(
                            select(User.id).where(User.id == row.customer_user_id, User.role == Role.MEMBER)
                        )
                    )
        if clicks:
            visitors |= {
                v
                for v in session.scalars(select(Click.visitor_id).where(Click.id.in_(clicks)))
                if v and not is_pseudonym(v)
            }
        if members:
            emails |= {
                e.strip().lower()
                for e in session.scalars(select(User.email).where(User.id.in_(members)))
                if not is_pseudonym(e)
            }
        if before == (len(clicks), len(conversions), len(members), len(emails), len(customers), len(visitors)):
            break
    return Found(frozenset(clicks), frozenset(conversions), frozenset(members))


def erase(
    session: Session, kind: str, value: str, *, actor_id: int | None, now: datetime, via: str, secret: str
) -> Erased:
    """Pseudonymise every copy of the person the identifier names, and audit it (the caller commits). ``secret``
    is the server's secret key, which the sign-in throttles' keys are digests with."""
    found = find(session, kind, value, lock=True)
    names = Pseudonyms()
    customers, emails = _identities(session, found)
    # The identifier itself too: a subscriber on a trial, or whose first invoice still waits, has no conversion
    # yet; a person who only mistyped a password or asked for a reset has no account.
    if kind == "customer_id":
        customers.add((None, normalise(kind, value)))
    elif kind == "email":
        emails.add(normalise_email(normalise(kind, value)))
    for email in emails:
        throttles.forget(session, secret, email)
    conversions = _erase_conversions(session, found.conversions, names)
    changed = {
        "clicks": _erase_clicks(session, found.clicks, names),
        "conversions": len(conversions),
        "messages": _erase_messages(session, found.conversions, names),
        "stripe_customers": _erase_stripe_customers(session, customers, names),
        "members": 0,
        "sign_ins": 0,
    }
    for member in session.scalars(select(User).where(User.id.in_(found.members)).with_for_update()):
        account, sign_ins = _erase_member(session, member, names, now=now)
        changed["sign_ins"] += sign_ins
        if account or sign_ins:
            changed["members"] += 1
            audit.record(
                session,
                actor_id=actor_id,
                action="user.erase",
                subject_type="user",
                subject_id=member.id,
                before=None,
                after={"erased": True},
                now=now,
                note=f"pseudonymised on request ({via})",
            )
    for conversion_id in conversions:
        audit.record(
            session,
            actor_id=actor_id,
            action="conversion.erase",
            subject_type="conversion",
            subject_id=conversion_id,
            before=None,
            after={"erased": True},
            now=now,
            note=f"customer pseudonymised on request ({via})",
        )
    # The request itself, with the kind of identifier but never its value: the log must not keep what was erased.
    audit.record(
        session,
        actor_id=actor_id,
        action="person.erase",
        subject_type="erasure",
        subject_id=0,
        before=None,
        now=now,
        note=f"erasure by {kind} ({via})",
        after={
            "clicks": len(found.clicks),
            "conversions": len(found.conversions),
            "members": len(found.members),
            "changed": changed,
        },
    )
    return Erased(found, changed)


def _conversions_with_email(session: Session, email: str) -> list[int]:
    """The conversions whose customer email is ``email`` in any case, where it has letters beyond ASCII.

    The databases' lower() folds only ASCII here (SQLite always, PostgreSQL in a cluster without a locale), and
    the API keeps the case of an address's local part: ``Élise@example.com`` is stored as sent. So the letters
    beyond ASCII are left to a LIKE wildcard, and the few rows that pattern finds are compared in Python.
    """
    pattern = "".join(
        "_" if not character.isascii() else "\\" + character if character in "%_\\" else character
        for character in email
    )
    rows = session.execute(
        select(Conversion.id, Conversion.customer_email).where(Conversion.customer_email.ilike(pattern, escape="\\"))
    ).all()
    return [row.id for row in rows if row.customer_email.strip().lower() == email]


def _locked(statement, lock: bool):
    return statement.with_for_update() if lock else statement


def _erase_clicks(session: Session, ids: frozenset[int], names: Pseudonyms) -> int:
    columns = (
        Click.id,
        Click.ip,
        Click.ip_hash,
        Click.ip_prefix,
        Click.user_agent,
        Click.fingerprint,
        Click.visitor_id,
        Click.region,
        Click.city,
        Click.referrer,
    )
    count = 0
    for row in session.execute(select(*columns).where(Click.id.in_(ids)).with_for_update()).all() if ids else ():
        values = {
            "ip": names(row.ip, 45),
            "ip_hash": names(row.ip_hash, 64),
            "ip_prefix": names(row.ip_prefix, 45),
            "user_agent": names(row.user_agent, 64),
            "fingerprint": names(row.fingerprint, 64),
            "visitor_id": names(row.visitor_id, 32),
            "region": None,
            "city": None,
            "referrer": _origin(row.referrer),
        }
        if any(getattr(row, name) != value for name, value in values.items()):
            session.execute(update(Click).where(Click.id == row.id).values(**values))
            count += 1
    return count


def _origin(referrer: str | None) -> str | None:
    """Scheme and host of a referrer (what the referrer rollup reads), without the path and query."""
    if not referrer:
        return referrer
    try:
        parts = urlsplit(referrer.strip())
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    return f"{parts.scheme or 'https'}://{host}/"


def _identities(session: Session, found: Found) -> tuple[set[tuple[int | None, str]], set[str]]:
    """The person's customer ids (with their program) and emails, as stored before they are pseudonymised."""
    customers: set[tuple[int | None, str]] = set()
    emails: set[str] = set()
    if found.conversions:
        for program_id, customer, email in session.execute(
            select(Conversion.program_id, Conversion.customer_external_id, Conversion.customer_email).where(
                Conversion.id.in_(found.conversions)
            )
        ):
            if customer and not is_pseudonym(customer):
                customers.add((program_id, customer))
            if email and not is_pseudonym(email):
                emails.add(normalise_email(email))
    if found.members:
        emails.update(
            normalise_email(email) for email in session.scalars(select(User.email).where(User.id.in_(found.members)))
        )
    return customers, emails


def _erase_stripe_customers(session: Session, customers: set[tuple[int | None, str]], names: Pseudonyms) -> int:
    """The Stripe customers among them: their binding keeps what referred them, under pseudonyms of the customer
    and checkout ids; Stripe events still waiting on them, with the customer's details in their payload, end as
    ignored with the payload dropped (the binding they waited for can no longer be found). Returns how many
    customers changed."""
    changed = 0
    for program_id, customer in sorted(customers, key=lambda pair: (pair[0] or 0, pair[1])):
        # A customer id given as the identifier is looked for in every program, as its conversions are.
        in_program = [] if program_id is None else [StripeCustomer.program_id == program_id]
        for bound in session.scalars(
            select(StripeCustomer).where(*in_program, StripeCustomer.customer_id == customer).with_for_update()
        ):
            bound.customer_id = names(customer, 255)
            bound.checkout_session_id = names(bound.checkout_session_id, 255)
            changed += 1
        waiting = [] if program_id is None else [StripeEvent.program_id == program_id]
        session.execute(
            update(StripeEvent)
            .where(*waiting, StripeEvent.status == "waiting", StripeEvent.waiting_for == customer)
            .values(status="ignored", detail=ERASED_WAITING, waiting_for=None, payload=None)
        )
    return changed


def _erase_conversions(session: Session, ids: frozenset[int], names: Pseudonyms) -> list[int]:
    """Pseudonymise the conversions' customer; return the ids of those that changed."""
    columns = (
        Conversion.id,
        Conversion.customer_email,
        Conversion.customer_external_id,
        Conversion.customer_ip,
        Conversion.customer_fingerprint,
        Conversion.extra,
    )
    changed = []
    for row in session.execute(select(*columns).where(Conversion.id.in_(ids)).with_for_update()).all() if ids else ():
        values = {
            "customer_email": names.email(row.customer_email),
            "customer_external_id": names(row.customer_external_id, 128),
            "customer_ip": names(row.customer_ip, 45),
            "customer_fingerprint": names(row.customer_fingerprint, 64),
            "extra": None,
        }
        if any(getattr(row, name) != value for name, value in values.items()):
            session.execute(update(Conversion).where(Conversion.id == row.id).values(**values))
            changed.append(row.id)
    return changed


def _erase_messages(session: Session, ids: frozenset[int], names: Pseudonyms) -> int:
    """Pseudonymise the customer in the webhook messages about these conversions, sent or waiting, and clear
    their metadata, as the conversions themselves were; return how many messages changed.

    A message's body is its event as written (sorted keys, no spaces), so the conversion's id is found as text
    first and the body parsed to be sure.
    """
    if not ids:
        return 0
    named = or_(*(Delivery.body.contains(f'"id":{conversion_id},') for conversion_id in sorted(ids)))
    rows = session.execute(
        select(Delivery.id, Delivery.body)
        .where(Delivery.event.in_(CONVERSION_EVENTS), Delivery.body.is_not(None), named)
        .with_for_update()
    ).all()
    changed = 0
    for row in rows:
        message = json.loads(row.body)
        data = message.get("data") or {}
        if data.get("id") not in ids:
            continue
        customer = data.get("customer") or {}
        data["customer"] = {
            "external_id": names(customer.get("external_id"), 128),
            "email": names.email(customer.get("email")),
        }
        data["metadata"] = {}
        body = json.dumps(message, separators=(",", ":"), sort_keys=True)
        if body != row.body:
            session.execute(update(Delivery).where(Delivery.id == row.id).values(body=body))
            changed += 1
    return changed


def _erase_quotes(session: Session, member_id: int, quoted: set[str], names: Pseudonyms) -> int:
    """Pseudonymise the member's details where the audit log quotes them (an address confirmed, payout details
    changed): the entries stay, saying what happened and when, without saying to whom. Return how many changed."""
    if not quoted:
        return 0
    folded = {value.strip().lower() for value in quoted}

    def erased(value):
        if isinstance(value, dict):
            return {key: erased(item) for key, item in value.items()}
        if isinstance(value, list):
            return [erased(item) for item in value]
        if isinstance(value, str) and value.strip().lower() in folded:
            return names.email(value) if "@" in value else names(value, 64)
        return value

    changed = 0
    entries = session.execute(
        select(AuditLog.id, AuditLog.before, AuditLog.after)
        .where(AuditLog.subject_type == "user", AuditLog.subject_id == member_id)
        .with_for_update()
    ).all()
    for entry in entries:
        values = {
            column: json.dumps(erased(json.loads(text)), sort_keys=True) if text else text
            for column, text in (("before", entry.before), ("after", entry.after))
        }
        if values != {"before": entry.before, "after": entry.after}:
            session.execute(update(AuditLog).where(AuditLog.id == entry.id).values(**values))
            changed += 1
    return changed


def _erase_member(session: Session, member: User, names: Pseudonyms, *, now: datetime) -> tuple[bool, int]:
    """Pseudonymise a member's account and end their sign-ins; return whether the account changed, and the
    number of sign-ins changed."""
    email = member.email
    account = not is_pseudonym(email)
    quoted = {
        getattr(member, name)
        for name in ("email", "name", "website", "promotion", "payout_email", "payout_account_name", "payout_iban")
        if getattr(member, name) and not is_pseudonym(getattr(member, name))
    }
    if account:
        member.email = names.email(email)
        member.name = ERASED_NAME
        member.password_hash = UNUSABLE_PASSWORD
        member.password_changed_at = now
    for name in (
        "website",
        "promotion",
        "status_reason",
        "payout_method",
        "payout_email",
        "payout_account_name",
        "payout_iban",
    ):
        if getattr(member, name) is not None:
            setattr(member, name, None)
            account = True
    sign_ins = 0
    for sign_in in session.scalars(select(UserSession).where(UserSession.user_id == member.id).with_for_update()):
        values = {
            "ip": names(sign_in.ip, 45),
            "user_agent": names(sign_in.user_agent, 64),
            "fingerprint": names(sign_in.fingerprint, 64),
            "visitor_id": names(sign_in.visitor_id, 32),
        }
        if any(getattr(sign_in, name) != value for name, value in values.items()) or sign_in.revoked_at is None:
            for name, value in values.items():
                setattr(sign_in, name, value)
            sign_in.revoked_at = sign_in.revoked_at or now
            sign_ins += 1
    if _erase_quotes(session, member.id, quoted, names):
        account = True
    # Mail to them, sent or waiting, holds their name and address: it goes (waiting mail is not sent).
    if session.execute(
        delete(OutboxMessage).where(
            or_(OutboxMessage.user_id == member.id, func.lower(OutboxMessage.to_address) == email.lower())
        )
    ).rowcount:
        account = True
    return account, sign_ins
