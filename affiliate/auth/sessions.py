"""Flask-Login wired to server-side login sessions."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask, current_app, request, session
from flask_login import current_user, login_fresh, login_user

from affiliate.auth.client import client_ip
from affiliate.auth.notices import new_sign_in
from affiliate.extensions import db, login_manager
from affiliate.models import User, utcnow
from affiliate.services import user_sessions
from redirector.app import TOKEN, VISITOR_COOKIE
from redirector.enrich import USER_AGENT_MAX, fingerprint, ip_prefix

PASSWORD_AT = "password_at"  # noqa: S105 - a session key: when the password was last typed (Unix seconds)
SECOND_FACTOR_AT = "second_factor_at"  # when a second factor was last given (Unix seconds)


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.user_loader(_load_user)


def _load_user(token: str) -> User | None:
    return user_sessions.load_session(db.session, token, now=utcnow())


def session_policy() -> user_sessions.SessionPolicy:
    return user_sessions.SessionPolicy(
        session_lifetime=timedelta(hours=current_app.config["SESSION_HOURS"]),
        remember_lifetime=current_app.config["REMEMBER_COOKIE_DURATION"],
    )


def hasher():
    return current_app.extensions["clicktrail.hasher"]


def sign_in(user: User, *, remember: bool, second_factor: bool = False) -> None:
    """Start a server-side login session for ``user`` and hand its token to Flask-Login.

    ``second_factor`` says the person also gave their second factor. A device the account never
    signed in from before gets the owner a mail about it.
    """
    remember = remember and not user.is_staff
    start_clean()
    fingerprint = request_fingerprint()
    visitor_id = token_or_none(request.cookies.get(VISITOR_COOKIE))
    if user_sessions.seen_device(db.session, user, fingerprint=fingerprint, visitor_id=visitor_id) is False:
        new_sign_in(user)
    user_sessions.start_session(
        db.session,
        user,
        remember=remember,
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
        policy=session_policy(),
        now=utcnow(),
        fingerprint=fingerprint,
        visitor_id=visitor_id,
    )
    login_user(user, remember=remember, duration=current_app.config["REMEMBER_COOKIE_DURATION"])
    mark_password_entered()
    if second_factor:
        mark_second_factor_given()
    else:
        session.pop(SECOND_FACTOR_AT, None)


def start_clean() -> None:
    """Empty the session cookie, but for messages still to be shown. Signing in and out start from here: what the
    browser's previous account left in it (a second factor's secret being set up, a security key's challenge, a
    sign-in half done) must never carry over to the next person on the same browser."""
    messages = session.get("_flashes")
    session.clear()
    if messages:
        session["_flashes"] = messages


def mark_password_entered() -> None:
    """Note in the (signed) session cookie when the password was last typed, for actions that need a fresh login."""
    session[PASSWORD_AT] = int(utcnow().timestamp())


def mark_second_factor_given() -> None:
    session[SECOND_FACTOR_AT] = int(utcnow().timestamp())


def _recent(key: str, now: datetime) -> bool:
    entered = session.get(key)
    if not isinstance(entered, int):
        return False
    age = now.timestamp() - entered
    # A little slack below zero for clocks that differ between workers; the cookie is signed, so never forged.
    return -60 <= age <= current_app.config["FRESH_LOGIN_MINUTES"] * 60


def login_is_fresh(now: datetime, *, second_factor: bool = False) -> bool:
    """Whether this login was not restored from a remember cookie and the password was typed recently,
    and, for an account with a second factor (or when ``second_factor`` demands one), that was given recently too.
    """
    from affiliate.services.second_factor import has_second_factor

    if not login_fresh() or not _recent(PASSWORD_AT, now):
        return False
    user = current_user._get_current_object()
    if second_factor or has_second_factor(db.session, user):
        return has_second_factor(db.session, user) and _recent(SECOND_FACTOR_AT, now)
    return True


def token_or_none(value: str | None) -> str | None:
    """A click or visitor id as the redirector makes them, or None for anything else."""
    return value if value and TOKEN.fullmatch(value) else None


def request_fingerprint() -> str:
    """The redirector's device fingerprint (v1) for this request, to match clicks by device."""
    user_agent = (request.user_agent.string or "")[:USER_AGENT_MAX]
    return fingerprint(ip_prefix(request.remote_addr), user_agent, request.environ)
