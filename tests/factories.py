"""Test data factories: plain functions that write through the real services."""

from __future__ import annotations

import itertools
import re
from urllib.parse import quote

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client, TestResponse

from affiliate.extensions import db
from affiliate.models import Link, Program, Role, User, UserStatus, utcnow
from affiliate.services import accounts, links
from affiliate.services import second_factor as factors
from affiliate.services.programs import ProgramSettings, save_program

PASSWORD = "correct horse battery"
_sequence = itertools.count(1)
# Staff made here come with an authenticator app (this secret) and plenty of recovery codes, which
# Auth spends to pass the second sign-in step: a TOTP code is accepted once per 30 seconds only.
STAFF_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
STAFF_RECOVERY_CODES = 60
recovery_codes: dict[str, list[str]] = {}


def make_user(app: Flask, *, second_factor: bool | None = None, verified: bool = True, **overrides) -> User:
    """Create a user (an active affiliate unless told otherwise) and return it detached.

    Staff get a second factor unless ``second_factor=False``, as they must have one to use the portal;
    everyone has confirmed their email unless ``verified=False``.
    """
    n = next(_sequence)
    fields = {
        "name": f"User {n}",
        "email": f"user{n}@example.com",
        "password": PASSWORD,
        "role": Role.AFFILIATE,
        "status": UserStatus.ACTIVE,
    }
    fields.update(overrides)
    fields["password_hash"] = app.extensions["clicktrail.hasher"].hash(fields.pop("password"))
    with app.app_context():
        user = accounts.create_user(db.session, now=utcnow(), **fields)
        user.email_verified_at = utcnow() if verified else None
        if second_factor or (second_factor is None and user.is_staff):
            user.totp_secret = STAFF_TOTP_SECRET
            recovery_codes[user.email] = factors.new_recovery_codes(
                db.session, user, now=utcnow(), count=STAFF_RECOVERY_CODES
            )
        db.session.commit()
        db.session.refresh(user)
        db.session.expunge(user)
    return user


def make_affiliate(app: Flask, **overrides) -> User:
    return make_user(app, role=Role.AFFILIATE, **overrides)


def make_admin(app: Flask, **overrides) -> User:
    return make_user(app, role=Role.ADMIN, **overrides)


def make_finance(app: Flask, **overrides) -> User:
    return make_user(app, role=Role.FINANCE, **overrides)


def make_program(app: Flask, actor: User, **overrides) -> Program:
    n = next(_sequence)
    settings = {
        "name": f"Program {n}",
        "description": None,
        "status": "active",
        "destination_url": "https://shop.example.com/signup",
        "allowed_hosts": ("shop.example.com",),
        "fallback_url": None,
        "attribution_window_days": 30,
        "cookie_days": 30,
        "attribution_model": "last_click",
        "hold_days": 30,
        "currency": "USD",
        "minimum_payout_cents": 5000,
    }
    settings.update(overrides)
    with app.app_context():
        actor = db.session.get(User, actor.id)
        program = save_program(db.session, None, ProgramSettings(**settings), actor=actor, now=utcnow())
        db.session.commit()
        db.session.refresh(program)
        db.session.expunge(program)
    return program


def make_link(app: Flask, affiliate: User, program: Program, **overrides) -> Link:
    """Create a link through the real service and return it detached."""
    fields = {"campaign": None, "subs": (None,) * 5, "deep_link": None}
    fields.update(overrides)
    with app.app_context():
        owner = db.session.get(User, affiliate.id)
        link = links.create_link(db.session, owner, links.LinkRequest(program_id=program.id, **fields), now=utcnow())
        db.session.commit()
        db.session.refresh(link)
        db.session.expunge(link)
    return link


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


class Auth:
    """Sign in and out through the real forms."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def token(self, path: str = "/login") -> str:
        return csrf_token(self.client.get(path).get_data(as_text=True))

    def login(
        self, email: str, password: str = PASSWORD, remember: bool = False, next_: str | None = None
    ) -> TestResponse:
        """Sign in; an account with a second factor made by make_user gives one of its recovery codes."""
        data = {"email": email, "password": password, "csrf_token": self.token()}
        if remember:
            data["remember"] = "y"
        url = "/login" + (f"?next={next_}" if next_ else "")
        response = self.client.post(url, data=data)
        if response.status_code == 302 and response.headers["Location"].startswith("/login/second-factor"):
            return self.second_factor(email, response.headers["Location"])
        return response

    def second_factor(self, email: str, url: str = "/login/second-factor") -> TestResponse:
        code = recovery_codes[email.lower()].pop()
        return self.client.post(url, data={"code": code, "csrf_token": self.token(url)})

    def reauth(self, email: str, next_: str, password: str = PASSWORD) -> TestResponse:
        """Confirm the password (and, for an account made with one, the second factor) before a sensitive action."""
        url = f"/reauth?next={quote(next_)}"
        data = {"password": password, "csrf_token": self.token(url)}
        if email.lower() in recovery_codes:
            data["code"] = recovery_codes[email.lower()].pop()
        return self.client.post(url, data=data)

    def enrol(self, email: str) -> list[str]:
        """Set up an authenticator app as a person would (scan the secret, type its code); the recovery codes.

        Later sign-ins of ``email`` through this class spend those codes.
        """
        page = self.client.get("/account/two-factor/app").get_data(as_text=True)
        secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page).group(1)
        done = self.client.post(
            "/account/two-factor/app", data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(page)}
        )
        codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.get_data(as_text=True))
        assert codes, done.get_data(as_text=True)[:500]
        recovery_codes[email.lower()] = list(codes)
        return codes

    def logout(self) -> TestResponse:
        # A page every signed-in person may open, staff not yet enrolled in two-factor sign-in included.
        token = csrf_token(self.client.get("/account/two-factor/").get_data(as_text=True))
        return self.client.post("/logout", data={"csrf_token": token})

    def post(self, path: str, data: dict, token_from: str | None = None) -> TestResponse:
        token = csrf_token(self.client.get(token_from or path).get_data(as_text=True))
        return self.client.post(path, data={**data, "csrf_token": token})


class Visitor(Client):
    """A browser on the redirector, from one public address, keeping its cookies."""

    def __init__(self, app, ip: str = "203.0.113.7") -> None:
        super().__init__(app)
        self.ip = ip

    def open(self, *args, **kwargs) -> TestResponse:
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": self.ip})
        return super().open(*args, **kwargs)
