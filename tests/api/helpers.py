"""Issuing API keys and sending signed requests, computed here independently of the signing module."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from affiliate.extensions import db
from affiliate.models import Program, User, utcnow
from affiliate.services.api_keys import SCOPES, issue_key
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.redirector.helpers import CHROME

_ids = itertools.count(1)


@dataclass
class Merchant:
    """One program's API credentials and a way to send signed requests with them."""

    client: object
    program: Program
    token: str
    secret: str

    def post(
        self,
        path: str,
        body,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        request_id: str | None = None,
        raw: bytes | None = None,
        headers: dict | None = None,
        content_type: str = "application/json",
    ):
        data = raw if raw is not None else json.dumps(body).encode()
        request_id = request_id or f"req-{next(_ids)}"
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = sign(secret or self.secret, request_id, timestamp, data)
        sent = {
            "Authorization": f"Bearer {self.token}",
            "Clicktrail-Request-Id": request_id,
            "Clicktrail-Timestamp": str(timestamp),
            "Clicktrail-Signature": f"v1={signature}",
            "Content-Type": content_type,
            **(headers or {}),
        }
        return self.client.post(path, data=data, headers=sent)

    def get(self, path: str, *, query: dict | None = None, request_id: str | None = None):
        """A signed GET: the signature covers the request id, the timestamp and the (empty) body."""
        request_id = request_id or f"req-{next(_ids)}"
        timestamp = int(time.time())
        sent = {
            "Authorization": f"Bearer {self.token}",
            "Clicktrail-Request-Id": request_id,
            "Clicktrail-Timestamp": str(timestamp),
            "Clicktrail-Signature": f"v1={sign(self.secret, request_id, timestamp, b'')}",
        }
        return self.client.get(path, query_string=query, headers=sent)

    def sale(self, order_id: str, amount: int = 5000, **fields):
        return self.post(
            "/api/v1/conversions",
            {"type": "sale", "order_id": order_id, "amount": amount, "currency": self.program.currency, **fields},
        )


def sign(secret: str, request_id: str, timestamp: int, body: bytes) -> str:
    message = f"{request_id}.{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_merchant(app, program: Program | None = None, admin: User | None = None, scopes=None) -> Merchant:
    """A key for ``program``, with the checkout's scopes unless ``scopes`` names others (``"all"``: every one)."""
    admin = admin or make_admin(app)
    program = program or make_program(app, admin)
    chosen = {"scopes": tuple(SCOPES) if scopes == "all" else tuple(scopes)} if scopes else {}
    with app.app_context():
        issued = issue_key(
            db.session,
            db.session.get(Program, program.id),
            "test server",
            actor=db.session.get(User, admin.id),
            now=utcnow(),
            **chosen,
        )
        db.session.commit()
        token, secret = issued.token, issued.signing_secret
    return Merchant(app.test_client(), program, token, secret)


def click(visitor, code: str, **query) -> str:
    """Click a link through the redirector as ``visitor``; return the click id it handed out."""
    response = visitor.get(f"/r/{code}", query_string=query, headers={"User-Agent": CHROME})
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)["ct_click"][0]


def world(app):
    """An admin, two affiliates with a link each on one program, and the merchant's credentials."""
    admin = make_admin(app)
    program = make_program(app, admin)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    links = {"alice": make_link(app, alice, program), "bob": make_link(app, bob, program)}
    merchant = make_merchant(app, program, admin)
    return merchant, {"alice": alice, "bob": bob}, links
