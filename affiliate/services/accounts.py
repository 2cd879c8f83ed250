"""Accounts: applying, deciding applications, signing in, passwords, profiles.

The logins a sign-in starts (their tokens, devices, and ending them) are ``services.user_sessions``.

Why one module: every function here reads or writes the account's own row (its status, email, password hash,
payout details) under the same rules: one stored form of an email, one password policy, guarded updates.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate import mail, notifications
from affiliate.models import Role, User, UserStatus
from affiliate.services import audit, throttles, user_sessions, webhooks
from affiliate.services import webhook_payloads as payloads

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 10  # 31**10 ~ 2**49.5 codes
MAX_PASSWORD_LENGTH = 256


class AccountError(Exception):
    """A business rule refused an account change; the message is safe to show."""


class EmailTaken(AccountError):
    """An account with this email exists already."""


class WeakPassword(AccountError):
    """The password does not meet the policy."""


class InvalidCredentials(AccountError):
    """The email and password do not match an account."""


class InvalidTransition(AccountError):
    """The affiliate's status does not allow that decision."""


@dataclass(frozen=True)
class ThrottlePolicy:
    """Sign-in limits: per email tried from one address, and per address whatever the email (docs/sign-in.md)."""

    account_address: throttles.Limit
    address: throttles.Limit
    secret: str  # the server's secret key, which the throttles' keys are digests with


@dataclass(frozen=True)
class AffiliateApplication:
    name: str
    email: str
    password: str
    website: str | None
    promotion: str | None


@dataclass(frozen=True)
class PayoutDetails:
    method: str | None
    email: str | None
    account_name: str | None
    iban: str | None


def generate_referral_code() -> str:
    """Return a fresh random referral code from an alphabet without look-alike characters."""
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def normalise_email(email: str) -> str:
    """The form an account's address is stored and looked up in: trimmed, lower case (``+tags`` kept), and in
    Unicode's composed form (NFC), so ``josé`` typed with a combining accent is the same address as with ``é``."""
    return unicodedata.normalize("NFC", email.strip()).lower()


def check_password(password: str, *, min_length: int, email: str | None = None) -> None:
    """Raise WeakPassword unless the password meets the policy (length first, NIST 800-63B)."""
    if len(password) < min_length:
        raise WeakPassword(f"Use at least {min_length} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    if len(set(password)) < 4:
        raise WeakPassword("Use a less repetitive password.")
    if email and password.strip().lower() in {email.lower(), email.split("@")[0].lower()}:
        raise WeakPassword("Your password must not be your email address.")


def create_user(
    session: Session,
    *,
    name: str,
    email: str,
    password_hash: str,
    role: Role,
    status: UserStatus,
    now: datetime,
    website: str | None = None,
    promotion: str | None = None,
    referred_by: User | None = None,
) -> User:
    """Add a user with a unique referral code; raise EmailTaken if the email is in use.

    Codes are random, so a collision is possible but rare: each try runs in a savepoint
    and a clash on the unique index just draws again. The password comes hashed: the caller
    hashes it before opening its write transaction (hashing holds no lock others wait for).
    """
    email = normalise_email(email)
    for _ in range(8):
        user = User(
            name=name.strip(),
            email=email,
            password_hash=password_hash,
            role=role,
            status=status,
            referral_code=generate_referral_code(),
            referred_by_id=referred_by.id if referred_by else None,
            website=website,
            promotion=promotion,
            password_changed_at=now,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(user)
                session.flush()
            return user
        except IntegrityError:
            if session.scalar(select(User.id).where(User.email == email)) is not None:
                raise EmailTaken("An account with this email already exists.") from None
    raise RuntimeError("could not draw a unique referral code")


def apply_as_affiliate(
    session: Session,
    application: AffiliateApplication,
    *,
    password_hash: str,
    now: datetime,
    recruiter: User | None = None,
) -> User:
    """Create a pending affiliate account from an application, its password hashed beforehand; ``recruiter``
    is the affiliate whose link brought them (they earn the second tier). Every active admin is told, and every
    program's webhook endpoints."""
    user = create_user(
        session,
        name=application.name,
        email=application.email,
        password_hash=password_hash,
        role=Role.AFFILIATE,
        status=UserStatus.PENDING,
        now=now,
        website=application.website,
        promotion=application.promotion,
        referred_by=recruiter,
    )
    subject = f"New affiliate application: {notifications.one_line(user.name)}"
    affiliate_url = mail.external_url("admin_affiliates.show", user_id=user.id)
    notifications.send_to_role(
        session,
        Role.ADMIN,
        "application_received",
        subject=subject,
        now=now,
        applicant=user,
        affiliate_url=affiliate_url,
    )
    webhooks.emit_everywhere(session, "affiliate.applied", payloads.affiliate(user), now=now)
    return user


# action -> (statuses it may start from, status it leads to, whether a reason is required)
# Webhook events of the decisions: an affiliate reactivated is approved again; a declined application is
# no event, as its applicant never was an affiliate of any program.
EVENTS = {"approve": "affiliate.approved", "reactivate": "affiliate.approved", "suspend": "affiliate.suspended"}
TRANSITIONS: dict[str, tuple[tuple[UserStatus, ...], UserStatus, bool]] = {
    "approve": ((UserStatus.PENDING, UserStatus.REJECTED), UserStatus.ACTIVE, False),
    "reject": ((UserStatus.PENDING,), UserStatus.REJECTED, True),
    "suspend": ((UserStatus.ACTIVE,), UserStatus.SUSPENDED, True),
    "reactivate": ((UserStatus.SUSPENDED,), UserStatus.ACTIVE, False),
}


def decide_affiliate(
    session: Session, user: User, action: str, *, reason: str | None, actor: User, now: datetime
) -> User:
    """Approve, reject, suspend or reactivate an affiliate with a guarded status change; a decided application
    is mailed to the applicant (with the reason when declined), and every program's webhook endpoints hear of
    approvals and suspensions."""
    if action not in TRANSITIONS:
        raise InvalidTransition("Unknown action.")
    sources, target, needs_reason = TRANSITIONS[action]
    reason = (reason or "").strip() or None
    if needs_reason and not reason:
        raise InvalidTransition(f"Give a reason to {action} an affiliate.")
    if user.role != Role.AFFILIATE:
        raise InvalidTransition("Only affiliate accounts are approved or suspended.")
    before = user.status
    changed = session.execute(
        update(User)
        .where(User.id == user.id, User.status.in_([s.value for s in sources]))
        .values(status=target, status_reason=reason, decided_at=now)
    ).rowcount
    if changed != 1:
        raise InvalidTransition(f"Cannot {action} an affiliate who is {user.status}.")
    session.refresh(user)
    audit.record(
        session,
        actor_id=actor.id,
        action=f"affiliate.{action}",
        subject_type="user",
        subject_id=user.id,
        before={"status": before},
        after={"status": target.value},
        note=reason,
        now=now,
    )
    if action in ("approve", "reject"):
        decided = "approved" if action == "approve" else "declined"
        notifications.send(
            session,
            user,
            "application_decided",
            subject=f"Your Clicktrail application was {decided}",
            now=now,
            decided=decided,
            reason=reason,
            home_url=mail.external_url("partner.home"),
            account_url=mail.external_url("account.profile"),
        )
    if action in EVENTS:
        data = payloads.affiliate(user, previous_status=str(before))
        webhooks.emit_everywhere(session, EVENTS[action], data, now=now)
    return user


_dummy_hashes: dict[tuple[int, int, int], str] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hashes[key]


@dataclass(frozen=True)
class StoredPassword:
    """What checking a sign-in needs, read while its attempt is counted; None for an unknown email."""

    user_id: int | None
    password_hash: str | None
    password_changed_at: datetime | None = None


def sign_in_keys(policy: ThrottlePolicy, email: str, ip: str) -> list[tuple[throttles.Limit, str]]:
    return [
        (policy.account_address, throttles.key_of(policy.secret, normalise_email(email)[:254], ip)),
        (policy.address, throttles.key_of(policy.secret, ip)),
    ]


def begin_sign_in(session: Session, *, email: str, ip: str, policy: ThrottlePolicy, now: datetime) -> StoredPassword:
    """Count a sign-in attempt and read the stored hash; raise throttles.Throttled if it must wait.

    Signing in is three steps so that the slow password check runs with no transaction open:
    this one (the caller commits it at once), ``verify_password`` outside any transaction, then
    ``finish_sign_in``. The attempt counts as a failure until ``finish_sign_in`` forgives it, so
    parallel guesses cannot outrun the count.
    """
    throttles.count_attempt(session, sign_in_keys(policy, email, ip), now=now)
    row = session.execute(
        select(User.id, User.password_hash, User.password_changed_at).where(User.email == normalise_email(email)[:254])
    ).one_or_none()
    return StoredPassword(row.id, row.password_hash, row.password_changed_at) if row else StoredPassword(None, None)


def verify_password(hasher: PasswordHasher, stored: StoredPassword, password: str) -> bool:
    """Whether the password is right; an unknown email still pays for one hash so timing does not tell."""
    try:
        hasher.verify(stored.password_hash or _dummy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return stored.user_id is not None


def finish_sign_in(
    session: Session,
    stored: StoredPassword,
    *,
    email: str,
    ip: str,
    policy: ThrottlePolicy,
    new_hash: str | None,
) -> User:
    """After a right password: forgive the attempt and store a stronger hash if one was made.

    Raises InvalidCredentials if the password was changed while it was being checked (a change sets
    ``password_changed_at``; a stronger hash of the same password stored by another sign-in does not). The row stays
    locked to the commit, so a change of password made meanwhile either came first (and is seen here) or waits and
    then signs this new session out with the others; and a stronger hash of the old password never overwrites it.
    """
    user = session.get(User, stored.user_id, populate_existing=True, with_for_update=True)
    if user is None or user.password_changed_at != stored.password_changed_at:
        raise InvalidCredentials("Email or password is incorrect.")
    account_address, address = sign_in_keys(policy, email, ip)
    throttles.forgive(session, clear=[account_address], give_back=[address])
    # Another sign-in at the same moment may have stored its own stronger hash of the same password first.
    if new_hash is not None and user.password_hash == stored.password_hash:
        user.password_hash = new_hash
    return user


def change_password(session: Session, user: User, *, old_hash: str, new_hash: str, now: datetime) -> None:
    """Replace the password checked as ``old_hash`` and end every login of the account, this one included.

    The caller checks the current password and hashes the new one before its write transaction;
    raises InvalidCredentials if the password changed meanwhile.
    """
    _replace_password(session, user, old_hash, new_hash, now=now, refused="Your current password is incorrect.")
    audit.record(
        session,
        actor_id=user.id,
        action="user.password_changed",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after=None,
        now=now,
    )


def _replace_password(
    session: Session, user: User, old_hash: str, new_hash: str, *, now: datetime, refused: str
) -> None:
    """Swap ``old_hash`` for ``new_hash`` in one guarded update and sign the account out everywhere; raises
    InvalidCredentials with ``refused`` if the password is no longer ``old_hash``."""
    changed = session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == old_hash)
        .values(password_hash=new_hash, password_changed_at=now)
    ).rowcount
    if changed != 1:
        raise InvalidCredentials(refused)
    session.refresh(user)
    user_sessions.end_all_sessions(session, user, now=now)


def reset_password(session: Session, user: User, *, old_hash: str, new_hash: str, now: datetime) -> None:
    """Set the password from a reset link checked against ``old_hash`` and end every login of the account.

    Raises InvalidCredentials if the password changed since the link was checked (the link is used up).
    Following the mailed link proves the address, so an unconfirmed email counts as confirmed from now.
    """
    session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == old_hash, User.email_verified_at.is_(None))
        .values(email_verified_at=now)
    )
    refused = "This reset link has been used already. Ask for a new one."
    _replace_password(session, user, old_hash, new_hash, now=now, refused=refused)
    audit.record(
        session,
        actor_id=user.id,
        action="user.password_reset",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after=None,
        now=now,
    )


def confirm_email(session: Session, user: User, *, now: datetime) -> bool:
    """Mark the account's email as confirmed; False if it already was."""
    changed = session.execute(
        update(User).where(User.id == user.id, User.email_verified_at.is_(None)).values(email_verified_at=now)
    ).rowcount
    session.refresh(user)
    if changed:
        audit.record(
            session,
            actor_id=user.id,
            action="user.email_verified",
            subject_type="user",
            subject_id=user.id,
            before=None,
            after={"email": user.email},
            now=now,
        )
    return bool(changed)


def update_payout_details(session: Session, user: User, details: PayoutDetails, *, now: datetime) -> bool:
    """Store new payout details; return whether they changed (a change starts a cooling-off period)."""
    before = {
        "method": user.payout_method,
        "email": user.payout_email,
        "account_name": user.payout_account_name,
        "iban": user.payout_iban,
    }
    after = {
        "method": details.method,
        "email": details.email,
        "account_name": details.account_name,
        "iban": details.iban,
    }
    if before == after:
        return False
    user.payout_method = details.method
    user.payout_email = details.email
    user.payout_account_name = details.account_name
    user.payout_iban = details.iban
    user.payout_details_changed_at = now
    audit.record(
        session,
        actor_id=user.id,
        action="user.payout_details_changed",
        subject_type="user",
        subject_id=user.id,
        before=before,
        after=after,
        now=now,
    )
    return True
