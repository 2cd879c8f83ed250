"""Affiliates create, copy, pause and count their links."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Link
from tests.factories import Visitor, make_admin, make_affiliate, make_link, make_program
from tests.redirector.helpers import CHROME


def _program(app, **overrides):
    return make_program(app, make_admin(app), allowed_hosts=("shop.example.com", "blog.example.com"), **overrides)


def test_affiliate_creates_a_link_and_sees_its_url(app, client, auth):
    program = _program(app)
    alice = make_affiliate(app)
    auth.login(alice.email)
    form = client.get(f"/partner/links/new?program={program.id}").get_data(as_text=True)
    assert re.search(rf'<option (selected value="{program.id}"|value="{program.id}" selected)', form), form
    response = auth.post(
        "/partner/links/new",
        {"program_id": program.id, "campaign": "Black Friday", "sub1": "newsletter", "deep_link": "/shoes?c=red"},
    )
    assert response.status_code == 302
    page = client.get("/partner/links/").get_data(as_text=True)
    code = re.search(r"http://127.0.0.1:8000/r/([A-Za-z0-9]{8})", page).group(1)
    assert "Black Friday" in page and "sub1: newsletter" in page and "https://shop.example.com/shoes?c=red" in page
    with app.app_context():
        link = db.session.scalar(select(Link).where(Link.code == code))
        assert (link.affiliate_id, link.program_id, link.active) == (alice.id, program.id, True)


def test_link_form_errors_change_nothing(app, client, auth):
    program = _program(app)
    paused = _program(app, status="paused")
    auth.login(make_affiliate(app).email)
    bad = [
        {"program_id": paused.id},
        {"program_id": 999999},
        {"program_id": "abc"},
        {"program_id": program.id, "deep_link": "https://evil.test/"},
        {"program_id": program.id, "deep_link": "//evil.test/x"},
        {"program_id": program.id, "deep_link": "http://shop.example.com/"},
        {"program_id": program.id, "deep_link": "javascript:alert(1)"},
        {"program_id": program.id, "deep_link": "/" + "é" * 1000},
        {"program_id": program.id, "sub1": "x" * 256},
        {"program_id": program.id, "campaign": "c" * 121},
    ]
    for data in bad:
        response = auth.post("/partner/links/new", data)
        assert response.status_code == 200, data
        assert 'class="errors"' in response.get_data(as_text=True) or "flash-error" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 0


def test_counts_raw_human_unique_and_pause(app, client, auth, redirector):
    program = _program(app)
    alice = make_affiliate(app)
    link = make_link(app, alice, program)
    first, second = Visitor(redirector, "198.51.100.1"), Visitor(redirector, "198.51.100.2")
    first.get(f"/r/{link.code}", headers={"User-Agent": CHROME})
    first.get(f"/r/{link.code}", headers={"User-Agent": CHROME})
    second.get(f"/r/{link.code}", headers={"User-Agent": "facebookexternalhit/1.1"})
    assert redirector.recorder.flush()  # clicks reach the database moments after their redirect
    auth.login(alice.email)
    page = client.get("/partner/links/").get_data(as_text=True)
    assert re.search(r'<td class="num">3</td><td class="num">2</td><td class="num">1</td>', page), page
    assert auth.post(f"/partner/links/{link.id}/pause", {}, token_from="/partner/links/").status_code == 303
    with app.app_context():
        assert db.session.get(Link, link.id).active is False
    assert "Resume" in client.get("/partner/links/").get_data(as_text=True)
    assert auth.post(f"/partner/links/{link.id}/resume", {}, token_from="/partner/links/").status_code == 303
    with app.app_context():
        assert db.session.get(Link, link.id).active is True


def test_affiliates_cannot_see_or_pause_each_others_links(app, client, auth):
    program = _program(app)
    alice, mallory = make_affiliate(app), make_affiliate(app)
    link = make_link(app, alice, program, campaign="Alice only")
    auth.login(mallory.email)
    assert "Alice only" not in client.get("/partner/links/").get_data(as_text=True)
    response = auth.post(f"/partner/links/{link.id}/pause", {}, token_from="/partner/links/")
    assert response.status_code == 404
    with app.app_context():
        assert db.session.get(Link, link.id).active is True


def test_pending_affiliates_cannot_create_links(app, client, auth):
    program = _program(app)
    auth.login(make_affiliate(app, status="pending").email)
    response = auth.post("/partner/links/new", {"program_id": program.id}, token_from="/account/")
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Link)) == 0
