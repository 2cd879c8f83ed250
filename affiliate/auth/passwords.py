"""Checking and hashing passwords with no write transaction open, and the throttles around them.

Argon2 takes tens of milliseconds of CPU by design. On SQLite a write transaction holds the
database's one write lock from BEGIN IMMEDIATE to COMMIT, so a hash computed inside one stops every
click, conversion and payout for that long; on PostgreSQL it holds the row locks taken so far. Every
password is therefore hashed or checked between transactions: the request's transaction is ended
first, the attempt is counted in a short transaction of its own, and the outcome is written in another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from flask import current_app, make_response
from flask.wrappers import Response

from affiliate.auth.client import client_ip
from affiliate.auth.sessions import hasher
from affiliate.extensions import db
from affiliate.models import User, utcnow
from affiliate.services import accounts, throttles

CLOCK = "clicktrail.clock"  # app.extensions key: tests put a clock of their own here


def now() -> datetime:
    """The time throttles are judged at: the app's injected clock, else the real one."""
    clock: Callable[[], datetime] = current_app.extensions.get(CLOCK, utcnow)
    return clock()


def throttle_policy() -> accounts.ThrottlePolicy:
    config = current_app.config
    delays = {
        "first_delay": timedelta(seconds=config["LOGIN_FIRST_DELAY_SECONDS"]),
        "longest_delay": timedelta(minutes=config["LOGIN_LONGEST_DELAY_MINUTES"]),
        "forget_after": timedelta(hours=config["LOGIN_FORGET_HOURS"]),
    }
    return accounts.ThrottlePolicy(
        account_address=throttles.Limit("login_account", config["LOGIN_FREE_FAILURES_PER_ACCOUNT"], **delays),
        address=throttles.Limit("login_address", config["LOGIN_FREE_FAILURES_PER_IP"], **delays),
        secret=config["SECRET_KEY"],
    )


def throttle_key(*parts: str) -> str:
    """The throttles' key of ``parts``, a digest with this server's secret key."""
    return throttles.key_of(current_app.config["SECRET_KEY"], *parts)


def signup_limit() -> throttles.Limit:
    config = current_app.config
    return throttles.Limit(
        "signup_address",
        config["SIGNUPS_FREE_PER_IP"],
        first_delay=timedelta(seconds=config["SIGNUP_FIRST_DELAY_SECONDS"]),
        longest_delay=timedelta(minutes=config["SIGNUP_LONGEST_DELAY_MINUTES"]),
        forget_after=timedelta(hours=config["SIGNUP_FORGET_HOURS"]),
    )


def end_transaction() -> None:
    """Commit what the request's transaction holds (only reads so far, such as loading the signed-in user)."""
    db.session.commit()


def authenticate(email: str, password: str) -> User:
    """The sign-in check for this request's address; raises throttles.Throttled or InvalidCredentials.

    The attempt is committed as a failure before the password is checked, so it is counted
    whatever happens to the request afterwards. The caller commits the signed-in state.
    """
    ip = client_ip()
    policy = throttle_policy()
    end_transaction()
    try:
        stored = accounts.begin_sign_in(db.session, email=email, ip=ip, policy=policy, now=now())
    except throttles.Throttled:
        db.session.rollback()
        raise
    db.session.commit()
    password_hasher: PasswordHasher = hasher()
    if not accounts.verify_password(password_hasher, stored, password):
        raise accounts.InvalidCredentials("Email or password is incorrect.")
    new_hash = password_hasher.hash(password) if password_hasher.check_needs_rehash(stored.password_hash) else None
    return accounts.finish_sign_in(db.session, stored, email=email, ip=ip, policy=policy, new_hash=new_hash)


def count_signup() -> None:
    """Count an attempt to create an account from this address, committed; raises throttles.Throttled."""
    end_transaction()
    try:
        throttles.count_attempt(db.session, [(signup_limit(), throttle_key(client_ip()))], now=now())
    except throttles.Throttled:
        db.session.rollback()
        raise
    db.session.commit()


def hash_new_password(password: str) -> str:
    """Hash a new password between transactions."""
    end_transaction()
    return hasher().hash(password)


def form_page(body: str, throttled: throttles.Throttled | None, status: int = 200) -> Response:
    """A rendered form page; 429 with Retry-After when a throttle refused the attempt (nothing sleeps)."""
    response = make_response(body, 429 if throttled else status)
    if throttled is not None:
        response.headers["Retry-After"] = str(throttled.retry_after_seconds)
    return response
