"""Admins issue, rotate and revoke a program's API keys; secrets are shown once and never stored in clear."""

from __future__ import annotations

import re
import time

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import ApiKey, AuditLog
from affiliate.services.api_keys import SCOPES
from tests.api.helpers import sign
from tests.factories import Auth, csrf_token, make_admin, make_program

TRACKING = ("conversions:write", "refunds:write")

BODY = b'{"type": "sale", "order_id": "k-1", "amount": 100, "currency": "USD"}'


def post_sale(client, token: str, secret: str, order: str = "k-1"):
    body = BODY.replace(b"k-1", order.encode())
    stamp = int(time.time())
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Clicktrail-Request-Id": order,
        "Clicktrail-Timestamp": str(stamp),
        "Clicktrail-Signature": f"v1={sign(secret, order, stamp, body)}",
    }
    return client.post("/api/v1/conversions", data=body, headers=headers)


def test_issue_rotate_retire_and_revoke_through_the_pages(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    browser = app.test_client()
    Auth(browser).login(admin.email)
    url = f"/admin/programs/{program.id}/keys/"
    page = browser.get(url).get_data(as_text=True)
    assert "No keys yet" in page
    blank = browser.post(url, data={"name": "", "csrf_token": csrf_token(page)})
    assert "This field is required" in blank.get_data(as_text=True)
    issued = browser.post(
        url, data={"name": "checkout server", "scopes": list(TRACKING), "csrf_token": csrf_token(page)}
    )
    shown = issued.get_data(as_text=True)
    token = re.search(r"<code>(ct_[^<]+)</code>", shown).group(1)
    secret = re.search(r"<code>(whsec_[^<]+)</code>", shown).group(1)
    assert issued.headers["Cache-Control"] == "no-store"
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        assert token not in key.key_hash and key.prefix in token
        audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "api_key.issue"))
        assert secret not in (audit.after or "") and token not in (audit.after or "")
    listing = browser.get(url).get_data(as_text=True)
    assert token not in listing and secret not in listing and f"ct_{key.prefix}_" in listing

    merchant = app.test_client()
    assert post_sale(merchant, token, secret, "k-1").status_code == 201
    rotated = browser.post(f"{url}{key.id}/rotate", data={"csrf_token": csrf_token(listing)}).get_data(as_text=True)
    new_secret = re.search(r"<code>(whsec_[^<]+)</code>", rotated).group(1)
    assert post_sale(merchant, token, secret, "k-2").status_code == 201, "the old secret still works while rotating"
    assert post_sale(merchant, token, new_secret, "k-3").status_code == 201
    listing = browser.get(url).get_data(as_text=True)
    browser.post(f"{url}{key.id}/retire", data={"csrf_token": csrf_token(listing)})
    assert post_sale(merchant, token, secret, "k-4").status_code == 401
    browser.post(f"{url}{key.id}/revoke", data={"csrf_token": csrf_token(listing)})
    assert post_sale(merchant, token, new_secret, "k-5").status_code == 401
    assert "revoked" in browser.get(url).get_data(as_text=True)


def test_keys_of_another_program_are_not_reachable_through_this_one(app):
    admin = make_admin(app)
    first, second = make_program(app, admin), make_program(app, admin)
    browser = app.test_client()
    Auth(browser).login(admin.email)
    page = browser.get(f"/admin/programs/{first.id}/keys/").get_data(as_text=True)
    browser.post(
        f"/admin/programs/{first.id}/keys/",
        data={"name": "one", "scopes": list(TRACKING), "csrf_token": csrf_token(page)},
    )
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id))
    refused = browser.post(f"/admin/programs/{second.id}/keys/{key_id}/revoke", data={"csrf_token": csrf_token(page)})
    assert refused.status_code == 404
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is None


def test_a_key_is_issued_with_the_scopes_ticked_and_nothing_else(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    browser = app.test_client()
    Auth(browser).login(admin.email)
    url = f"/admin/programs/{program.id}/keys/"
    page = browser.get(url).get_data(as_text=True)
    assert page.count('type="checkbox"') == len(SCOPES)
    assert page.count("checked") == 2, "the checkout's two scopes come ticked"
    none = browser.post(url, data={"name": "nothing", "csrf_token": csrf_token(page)})
    assert "Choose at least one thing the key may do" in none.get_data(as_text=True)
    forged = browser.post(url, data={"name": "root", "scopes": ["admin:*"], "csrf_token": csrf_token(page)})
    assert forged.status_code == 200 and "ct_" not in forged.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ApiKey)) is None, "refused forms issue no key"
    shown = browser.post(
        url, data={"name": "ops", "scopes": ["plans:read", "adjustments:write"], "csrf_token": csrf_token(page)}
    ).get_data(as_text=True)
    assert "<code>plans:read</code>, <code>adjustments:write</code>" in shown
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        assert key.scope_set == {"plans:read", "adjustments:write"}
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "api_key.issue"))
        assert "plans:read adjustments:write" in entry.after
    listing = browser.get(url).get_data(as_text=True)
    assert "<code>plans:read</code> <code>adjustments:write</code>" in listing
