"""Security notices and links mailed from a request: what happened to the account, when and from where.

These cannot be turned off (affiliate/notifications.py marks their kinds as security); each is written
to the outbox in the request's transaction, so it goes out only if the change it reports was committed.
"""

from __future__ import annotations

from flask import current_app, request
from user_agents import parse as parse_user_agent

from affiliate import notifications
from affiliate.auth import signed_links
from affiliate.auth.client import client_ip
from affiliate.extensions import db
from affiliate.mail import external_url
from affiliate.models import User, utcnow


def _when() -> str:
    return utcnow().strftime("%Y-%m-%d %H:%M")


def send_reset_link(user: User) -> None:
    notifications.send(
        db.session,
        user,
        "password_reset",
        subject="Reset your Clicktrail password",
        now=utcnow(),
        reset_url=external_url("auth.reset_password", token=signed_links.reset_token(user)),
        minutes=current_app.config["PASSWORD_RESET_MINUTES"],
        ip=client_ip(),
    )


def send_verification(user: User) -> None:
    notifications.send(
        db.session,
        user,
        "email_verification",
        subject="Confirm your email address",
        now=utcnow(),
        verify_url=external_url("auth.verify_email", token=signed_links.verification_token(user)),
        days=current_app.config["EMAIL_VERIFICATION_DAYS"],
    )


def password_changed(user: User, how: str) -> None:
    notifications.send(
        db.session,
        user,
        "password_changed",
        subject="Your Clicktrail password was changed",
        now=utcnow(),
        how=how,
        when=_when(),
        ip=client_ip(),
        forgot_url=external_url("auth.forgot_password"),
    )


def payout_details_changed(user: User) -> None:
    destination = notifications.payout_destination(user.payout_method, user.payout_email or user.payout_iban or "—")
    notifications.send(
        db.session,
        user,
        "payout_details_changed",
        subject="Your payout details were changed",
        now=utcnow(),
        when=_when(),
        ip=client_ip(),
        method=notifications.PAYOUT_METHODS.get(user.payout_method, "—"),
        destination=destination,
        payout_url=external_url("account.payout"),
    )


def new_sign_in(user: User) -> None:
    notifications.send(
        db.session,
        user,
        "new_sign_in",
        subject="New sign-in to your Clicktrail account",
        now=utcnow(),
        when=_when(),
        ip=client_ip(),
        device=device_name(request.user_agent.string),
        sessions_url=external_url("account.sessions"),
    )


def second_factor_changed(user: User, change: str) -> None:
    notifications.send(
        db.session,
        user,
        "second_factor_changed",
        subject="Two-factor sign-in changed",
        now=utcnow(),
        when=_when(),
        change=change,
        settings_url_2fa=external_url("account_two_factor.settings"),
    )


def device_name(user_agent: str | None) -> str:
    """'Chrome 120 on Windows 10', as a person recognises their device."""
    if not user_agent:
        return "Unknown device"
    parsed = parse_user_agent(user_agent)
    # Major and minor versions: "Chrome 120", "Mobile Safari 17.1".
    version = ".".join(str(part) for part in parsed.browser.version[:2]).removesuffix(".0")
    browser = f"{parsed.browser.family} {version}".strip()
    system = f"{parsed.os.family} {parsed.os.version_string}".strip()
    return f"{browser} on {system}"
