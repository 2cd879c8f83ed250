"""Schemathesis generates requests from the OpenAPI document; the API answers every one without a 5xx.

The document covers the conversion API (conversions, refunds) and the management API (plan versions, partner
groups and their members, enrollments and decisions, invitations, adjustments), and every answer must be one it
describes, in the shape it describes. Each generated request is signed as a merchant would sign it (a GET over the
empty body) with a key holding every scope and a request id of its own, so the fuzzing reaches validation and
storage, not only the signature check; a share of requests is sent unsigned as well. The program starts with a few
affiliates, a named group, enrollment records, plan versions and adjustments, so the small ids schemathesis tries
name real rows. Besides what the document describes, it sends times at the calendar's edges (whose offsets carry
them outside it in UTC) and, in any string of the body, the values databases refuse: NUL (PostgreSQL) and lone
surrogates (no UTF-8 form at all).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet

from tests.api.helpers import make_merchant, sign
from tests.factories import make_affiliate

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_sent = itertools.count()


@pytest.fixture
def merchant(app):
    """A key with every scope, on a program with a few rows for the small ids schemathesis tries most to name."""
    # The affiliates first, so that they hold the smallest user ids.
    alice, bob, carol = (make_affiliate(app, name=name) for name in ("Alice", "Bob", "Carol"))
    merchant = make_merchant(app, scopes="all")
    vip = _seed(merchant, "/api/v1/groups", {"name": "VIP"}, 201)["group"]["id"]
    _seed(merchant, "/api/v1/group-memberships", {"affiliate_ids": [bob.id], "group_id": vip}, 200)
    tiered = {"percent_bps": 1_500, "tiers": [{"threshold": 10, "percent_bps": 2_000}]}
    _seed(merchant, "/api/v1/plans", {"group_id": vip, "terms": tiered}, 201)
    later = {
        "affiliate_id": alice.id,
        "effective_from": "2999-01-01T00:00:00Z",
        "terms": {"flat": 500, "recurring_months": None},
    }
    _seed(merchant, "/api/v1/plans", later, 201)
    bonus = {"affiliate_id": alice.id, "kind": "bonus", "amount": 2_500, "reason": "Launch"}
    _seed(merchant, "/api/v1/adjustments", bonus, 201)  # posted at once
    clawback = {"affiliate_id": bob.id, "kind": "clawback", "amount": 10**7, "reason": "Chargebacks"}
    _seed(merchant, "/api/v1/adjustments", clawback, 201)  # over the threshold: waits for approval
    _seed(merchant, f"/api/v1/enrollments/{carol.id}/decision", {"decision": "remove", "reason": "Spam"}, 200)
    return merchant


def _seed(merchant, path: str, body: dict, status: int) -> dict:
    response = merchant.post(path, body)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


EDGE_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
              "9999-12-31T23:59:59.999999Z", "1969-12-31T23:59:59Z", "2024-02-30T00:00:00Z")  # fmt: skip
EDGE_STRINGS = ("\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d", "\ufeff", "\U0010ffff", "\u202e")
# The free text the management API stores as sent (a group's name, the reason an affiliate reads).
FREE_TEXT = ("name", "reason")

# RFC 3339 times as schemathesis makes them, and the edge cases it would not think of.
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()), st.sampled_from(EDGE_TIMES)
    ),
)

schema = schemathesis.openapi.from_path(Path(__file__).resolve().parents[2] / "affiliate" / "api" / "openapi.json")


@schema.parametrize()
@schema.given(
    edge=st.none() | st.sampled_from(EDGE_STRINGS),
    where=st.integers(min_value=0),
    unsigned=st.integers(min_value=0, max_value=7).map(lambda n: n == 7),  # about one in eight
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, merchant, edge, where, unsigned):
    body = case.body
    if edge is not None and isinstance(body, dict):
        # A copy: schemathesis writes the case's own body into its reports, which a lone surrogate cannot enter.
        body = copy.deepcopy(body)
        if "currency" in body:  # the program's own, so that the edge value is not refused for the currency first
            body["currency"] = merchant.program.currency
        _plant(body, edge, where)
    raw = _raw(body)
    # Without Host: the test client names the host itself, and schemathesis, given an empty one, cannot rebuild the
    # request's URL for its own checks.
    headers = {
        key: value for key, value in (case.headers or {}).items() if isinstance(value, str) and key.lower() != "host"
    }
    if case.method.upper() != "GET":
        headers["Content-Type"] = case.media_type or "application/json"
    if case.path != "/openapi.json" and not unsigned:
        # Its own request id: a management write sent again under an id already used gets the first answer.
        request_id, timestamp = f"fuzz-{time.monotonic_ns()}-{next(_sent)}", int(time.time())
        headers.update(
            {
                "Authorization": f"Bearer {merchant.token}",
                "Clicktrail-Request-Id": request_id,
                "Clicktrail-Timestamp": str(timestamp),
                "Clicktrail-Signature": f"v1={sign(merchant.secret, request_id, timestamp, raw)}",  # b"" for a GET
            }
        )
    response = merchant.client.open(
        f"/api/v1{case.formatted_path}", method=case.method, data=raw, headers=headers, query_string=case.query
    )
    assert response.status_code < 500, response.get_data(as_text=True)
    case.validate_response(response, checks=CHECKS)


def _plant(body: dict, edge: str, where: int) -> None:
    """Put ``edge`` in one string of ``body``: a free-text field of a conversion or of a management write, or any
    string (the where-th)."""
    if "type" in body and where % 3 == 0:  # a conversion: strings no pattern guards go furthest towards storage
        customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
        body["customer"] = {**customer, "external_id": edge}
        return
    if "type" in body and where % 3 == 1:
        body["metadata"] = {"note": edge, edge: [edge]}
        return
    text = [name for name in FREE_TEXT if isinstance(body.get(name), str)]
    if text and where % 3 == 0:  # a group's name, a decision's or an adjustment's reason: stored as sent
        body[text[where % len(text)]] = edge
        return
    slots = []
    stack = [body]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, value in pairs:
            if isinstance(value, str):
                slots.append((item, key))
            else:
                stack.append(value)
    if slots:
        container, key = slots[where % len(slots)]
        container[key] = edge


def _raw(body) -> bytes:
    """The bytes schemathesis means to send: nothing (a GET), bytes as they are, or JSON."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=True).encode()
