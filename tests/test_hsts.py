"""Strict-Transport-Security on every answer of the portal and the redirector in production, never over http."""

from __future__ import annotations

import tempfile

import pytest

from affiliate import create_app
from config import ProductionConfig
from redirector import create_redirector
from tests.conftest import INSTANCES, dispose
from tests.factories import Visitor
from tests.redirector.helpers import live, setup_link

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def production(database_uri):
    """The portal as production configures it, on the test database (cheap jobs: none in the background)."""
    portal = create_app(
        ProductionConfig,
        {
            "SECRET_KEY": "production-test-secret",
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "INSTANCE_PATH": tempfile.mkdtemp(prefix="instance-", dir=INSTANCES),
            "CLICK_INGESTER": "thread",
            "MONEY_JOBS_SECONDS": 0,
        },
    )
    yield portal
    dispose(portal)


def _portal_answers(portal) -> list:
    client = portal.test_client()
    return [
        client.get("/"),
        client.get("/login"),
        client.get("/static/css/app.css"),
        client.get("/no-such-page"),
        client.get("/logout"),  # 405
        client.post("/login", data={"email": "x@example.com"}),  # no CSRF token: 400
        client.get("/partner/"),  # not signed in: redirected to sign in
        client.get("/api/v1/openapi.json"),
    ]


def _redirector_answers(redirector, code: str) -> list:
    shopper = Visitor(redirector)
    return [
        shopper.get(f"/r/{code}"),
        shopper.get("/r/unknown1"),
        shopper.post(f"/r/{code}"),
        shopper.get("/r/%0d%0a"),
        shopper.get("/elsewhere"),
    ]


def test_production_portal_sends_hsts_on_every_answer(production):
    answers = _portal_answers(production)
    assert {answer.status_code for answer in answers} >= {200, 302, 400, 404, 405}
    for answer in answers:
        assert answer.headers.get("Strict-Transport-Security") == HSTS, answer.request.path


def test_production_redirector_sends_hsts_on_every_answer(production):
    code = setup_link(production).link.code
    redirector = live(create_redirector(production.config))  # as wsgi.py's combined app builds it
    try:
        answers = _redirector_answers(redirector, code)
        assert [answer.status_code for answer in answers] == [302, 404, 405, 400, 404]
        for answer in answers:
            assert answer.headers.get("Strict-Transport-Security") == HSTS, answer.request.path
    finally:
        redirector.close()


def test_no_hsts_over_http_in_development_or_tests(app, redirector):
    code = setup_link(app).link.code
    for answer in [*_portal_answers(app), *_redirector_answers(redirector, code)]:
        assert "Strict-Transport-Security" not in answer.headers, answer.request.path
