"""Shared set-up for redirector tests: a program, an affiliate and a link."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Click, Link, Program, User
from tests.factories import make_admin, make_affiliate, make_link, make_program

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
# A shopper's tap on a link in Chrome: a top-level navigation the user started.
NAVIGATION = {
    "User-Agent": CHROME,
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-User": "?1",
}


@dataclass
class Setup:
    admin: User
    affiliate: User
    program: Program
    link: Link


def setup_link(app, **link_overrides) -> Setup:
    admin = make_admin(app)
    affiliate = make_affiliate(app)
    program = make_program(
        app,
        admin,
        destination_url="https://shop.example.com/signup?lang=en",
        allowed_hosts=("shop.example.com", "www.example.com"),
        cookie_days=45,
    )
    link = make_link(app, affiliate, program, **link_overrides)
    return Setup(admin, affiliate, program, link)


# Redirectors a test is using: reading clicks first ingests what their click logs hold.
LIVE: weakref.WeakSet = weakref.WeakSet()


def live(redirector):
    LIVE.add(redirector)
    return redirector


@contextmanager
def clicks_held(redirector) -> Iterator[None]:
    """Clicks logged by ``redirector`` stay in its click log until the block ends.

    In the tests' thread mode the recorder's ingester thread stores the log every tenth of a second, so a test
    that needs a click still in the log cannot count on being quick; it holds the lock each store takes.
    ``recorder.flush()`` after the block stores them.
    """
    with redirector.recorder._ingest_lock:
        yield


def all_clicks(app) -> list[Click]:
    for redirector in list(LIVE):
        assert redirector.recorder.flush(), "the click log drains into the database"
    with app.app_context():
        clicks = db.session.scalars(select(Click).order_by(Click.id)).all()
        for click in clicks:
            db.session.expunge(click)
    return clicks


def wait_for_click(app, click_id: str, timeout: float = 30.0) -> None:
    """The redirector answers once the click is in its log; the database has it a moment later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            if db.session.scalar(select(Click.id).where(Click.click_id == click_id)) is not None:
                return
        time.sleep(0.1)
    raise AssertionError(f"click {click_id} never reached the database")
