"""Links mailed to people: a password reset and an email confirmation, signed with the app's secret key.

A reset link names the account and a digest of its current password hash, so it stops working the
moment the password changes: it is single-use without a table of used tokens, and a link mailed
before an earlier reset is dead too. A confirmation link names the account and the address it was
sent to, so it confirms that address only.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from affiliate.models import User

TOKEN_MAX = 512


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=f"clicktrail.{purpose}")


def _password_digest(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def reset_token(user: User) -> str:
    return _serializer("password-reset").dumps({"u": user.id, "p": _password_digest(user)})


def verification_token(user: User) -> str:
    return _serializer("verify-email").dumps({"u": user.id, "e": user.email})


def _load(purpose: str, token: str, max_age: timedelta) -> dict | None:
    if not token or len(token) > TOKEN_MAX:
        return None
    try:
        value = _serializer(purpose).loads(token, max_age=int(max_age.total_seconds()))
    except BadData:  # a forged, altered or expired link
        return None
    return value if isinstance(value, dict) and isinstance(value.get("u"), int) else None


def user_for_reset(session: Session, token: str) -> User | None:
    """The account a live reset link is for; None if it is forged, expired, or its password changed since."""
    value = _load("password-reset", token, timedelta(minutes=current_app.config["PASSWORD_RESET_MINUTES"]))
    user = session.get(User, value["u"]) if value else None
    if user is None or value.get("p") != _password_digest(user):
        return None
    return user


def user_for_verification(session: Session, token: str) -> User | None:
    """The account a live confirmation link is for, if its email is still the address it was sent to."""
    value = _load("verify-email", token, timedelta(days=current_app.config["EMAIL_VERIFICATION_DAYS"]))
    user = session.get(User, value["u"]) if value else None
    if user is None or value.get("e") != user.email:
        return None
    return user
