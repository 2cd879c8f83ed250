"""Checking a second factor in a request: an authenticator code, a recovery code or a security key.

Used by the sign-in step after the password, by re-authentication before sensitive actions, and by
the two-factor settings. Failed codes count against a throttle per account, so six digits cannot be
guessed; a right one forgives them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app, session
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from affiliate.auth.passwords import end_transaction, now, throttle_key
from affiliate.extensions import db
from affiliate.models import User
from affiliate.services import second_factor, security_keys, throttles

CHALLENGE = "webauthn_challenge"
PENDING = "second_factor_pending"  # {"u": user id, "r": remember, "t": when the password was right}


def relying_party() -> security_keys.RelyingParty:
    return security_keys.RelyingParty.from_config(current_app.config)


def limit() -> throttles.Limit:
    return throttles.Limit(
        "second_factor",
        current_app.config["SECOND_FACTOR_FREE_FAILURES"],
        first_delay=timedelta(seconds=30),
        longest_delay=timedelta(minutes=15),
        forget_after=timedelta(hours=24),
    )


def keep_challenge(challenge: bytes) -> None:
    session[CHALLENGE] = bytes_to_base64url(challenge)


def take_challenge() -> bytes | None:
    value = session.pop(CHALLENGE, None)
    try:
        return base64url_to_bytes(value) if isinstance(value, str) else None
    except ValueError:
        return None


def check(user: User, *, code: str | None, assertion: str | None) -> str | None:
    """Which second factor ``user`` just gave ("app", "recovery code", "security key"), or None if none was right.

    Raises throttles.Throttled when the account has failed too often. The attempt is committed as a
    failure first, as a password attempt is, and forgiven once a factor is right; the caller commits.
    """
    keys = [(limit(), throttle_key(str(user.id)))]
    end_transaction()
    try:
        throttles.count_attempt(db.session, keys, now=now())
    except throttles.Throttled:
        db.session.rollback()
        raise
    db.session.commit()
    user = db.session.get(User, user.id, populate_existing=True)
    method = None
    if assertion:
        challenge = take_challenge()
        if challenge is not None:
            try:
                security_keys.authenticate(
                    db.session, user, assertion, challenge=challenge, rp=relying_party(), now=now()
                )
                method = "security key"
            except security_keys.KeyRefused:
                db.session.rollback()
    elif code:
        if second_factor.check_totp(db.session, user, code, now=now()):
            method = "app"
        elif second_factor.use_recovery_code(db.session, user, code, now=now()):
            method = "recovery code"
    if method:
        throttles.forgive(db.session, clear=keys, give_back=[])
    return method


def start_pending(user: User, remember: bool) -> None:
    """The password was right; remember who is signing in until their second factor comes."""
    session[PENDING] = {"u": user.id, "r": bool(remember), "t": int(now().timestamp()), "p": _password_mark(user)}


def _password_mark(user: User) -> str:
    """Ties a pending sign-in to the password it was started with: once the password is reset or changed, the
    step half-way through with the old one is over (the cookie is only signed, so it carries a digest, not the
    hash)."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:32]


def pending_user(*, lock: bool = False) -> tuple[User, bool] | None:
    """The account whose password was given in this browser lately and which still owes its second factor.

    With ``lock``, just before the sign-in is completed: the account's row is read again and locked to the commit,
    so a change of password made meanwhile either came first (and ends this sign-in) or waits for it and then signs
    the new session out with the others."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or not isinstance(pending.get("u"), int) or not isinstance(pending.get("t"), int):
        return None
    age = now().timestamp() - pending["t"]
    if not -60 <= age <= current_app.config["SECOND_FACTOR_PENDING_MINUTES"] * 60:
        return None
    user = db.session.get(User, pending["u"], populate_existing=lock, with_for_update=lock)
    if user is None or not hmac.compare_digest(str(pending.get("p", "")), _password_mark(user)):
        return None
    return user, bool(pending.get("r"))


def end_pending() -> None:
    session.pop(PENDING, None)
    session.pop(CHALLENGE, None)
