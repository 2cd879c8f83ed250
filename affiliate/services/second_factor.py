"""Two-factor sign-in: authenticator-app codes (TOTP, RFC 6238), single-use recovery codes, and who needs them.

A code is accepted for the 30-second step it belongs to or the one on either side (phone clocks
drift), and never for a step at or before the last one accepted, so a code seen over someone's
shoulder cannot be used again. Recovery codes are random, shown once, and kept only as SHA-256
digests; each works once. Security keys (WebAuthn) are in services/security_keys.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from affiliate.models import RecoveryCode, SecurityKey, User
from affiliate.services import audit, user_sessions

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: read off paper and typed
RECOVERY_LENGTH = 10  # 31**10, about 2**49.5 per code


class SecondFactorError(Exception):
    """A second-factor change was refused; the message is safe to show."""


def required(user: User) -> bool:
    """Whether the account must have a second factor: staff move money and change who gets it."""
    return user.is_staff


def has_second_factor(session: Session, user: User) -> bool:
    if user.totp_secret:
        return True
    return bool(session.scalar(select(exists().where(SecurityKey.user_id == user.id))))


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_data_uri(uri: str) -> str:
    """The otpauth:// address as a QR code image, for an <img> (the page's policy allows data: images)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` is right for, within the allowed drift of ``now``; None if it is not."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def enable_totp(session: Session, user: User, secret: str, code: str, *, now: datetime) -> list[str] | None:
    """Turn on authenticator-app codes once ``code`` proves the app holds ``secret``; the new recovery codes.

    None if the code is wrong. Recovery codes are issued when the account gets its first second factor.
    """
    step = matching_step(secret, code, now)
    if step is None:
        return None
    first = not has_second_factor(session, user)
    user.totp_secret = secret
    user.totp_last_step = step
    audit.record(
        session,
        actor_id=user.id,
        action="user.totp_enabled",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after=None,
        now=now,
    )
    return new_recovery_codes(session, user, now=now) if first else []


def check_totp(session: Session, user: User, code: str, *, now: datetime) -> bool:
    """Whether ``code`` is a fresh authenticator code of ``user``; uses it up.

    The step is recorded with a guarded update, so of two requests carrying the same code only one succeeds.
    """
    if not user.totp_secret:
        return False
    step = matching_step(user.totp_secret, code, now)
    if step is None:
        return False
    used = session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.totp_secret == user.totp_secret,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
    ).rowcount
    return used == 1


def _digest(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def normalise_recovery_code(code: str) -> str:
    """Recovery codes are typed with or without the dash, in either case, with stray spaces."""
    return "".join(ch for ch in code.lower() if ch not in " -\t")


def new_recovery_codes(session: Session, user: User, *, now: datetime, count: int = RECOVERY_CODES) -> list[str]:
    """Replace the user's recovery codes with fresh ones, returned once in the clear ("abcde-fghjk")."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(user_id=user.id, code_hash=_digest(raw), created_at=now))
    audit.record(
        session,
        actor_id=user.id,
        action="user.recovery_codes_issued",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after={"count": count},
        now=now,
    )
    return codes


def use_recovery_code(session: Session, user: User, code: str, *, now: datetime) -> bool:
    """Whether ``code`` is an unused recovery code of ``user``; marks it used (a guarded update: once only)."""
    normalised = normalise_recovery_code(code)
    if len(normalised) != RECOVERY_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in normalised):
        return False
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _digest(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    ).rowcount
    if used:
        audit.record(
            session,
            actor_id=user.id,
            action="user.recovery_code_used",
            subject_type="user",
            subject_id=user.id,
            before=None,
            after={"left": recovery_codes_left(session, user)},
            now=now,
        )
    return used == 1


def recovery_codes_left(session: Session, user: User) -> int:
    return session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def disable_totp(session: Session, user: User, *, now: datetime) -> None:
    """Remove the authenticator app; refused when it is the last second factor of an account that needs one."""
    keys = session.scalar(select(func.count()).select_from(SecurityKey).where(SecurityKey.user_id == user.id))
    if required(user) and not keys:
        raise SecondFactorError("Your account needs a second factor: add a security key before removing the app.")
    user.totp_secret = None
    user.totp_last_step = None
    if not keys:
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session,
        actor_id=user.id,
        action="user.totp_disabled",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after=None,
        now=now,
    )


def reset(session: Session, user: User, *, actor: User, now: datetime) -> None:
    """An admin removes every second factor of another account (lost phone and codes) and signs it out.

    A staff account is asked to enrol again at its next sign-in.
    """
    if actor.id == user.id:
        raise SecondFactorError("Ask another admin to reset your own two-factor sign-in.")
    before = {
        "totp": bool(user.totp_secret),
        "security_keys": session.scalar(
            select(func.count()).select_from(SecurityKey).where(SecurityKey.user_id == user.id)
        ),
    }
    user.totp_secret = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.execute(delete(SecurityKey).where(SecurityKey.user_id == user.id))
    user_sessions.end_all_sessions(session, user, now=now)
    audit.record(
        session,
        actor_id=actor.id,
        action="user.second_factor_reset",
        subject_type="user",
        subject_id=user.id,
        before=before,
        after={"totp": False, "security_keys": 0},
        now=now,
    )
