"""Fixtures of the mail tests: a real SMTP server on loopback and a portal that sends through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from affiliate import mail
from affiliate.extensions import db
from tests.conftest import build_app, dispose
from tests.mail.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app(database_uri, smtp) -> Iterator[Flask]:
    """The portal, sending through the loopback SMTP server (tests run the sender with ``deliver``)."""
    app = build_app(database_uri, PUBLIC_BASE_URL="http://portal.test", **smtp.settings)
    yield app
    dispose(app)


def send_outbox(app: Flask) -> tuple[int, int]:
    """One round of the sender, as the background thread runs it."""
    with app.app_context():
        try:
            return mail.send_due()
        finally:
            db.session.remove()


@pytest.fixture
def deliver(app):
    return lambda: send_outbox(app)
