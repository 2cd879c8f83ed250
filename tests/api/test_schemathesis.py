"""C24: schemathesis generates requests from the OpenAPI document; the API answers every one without a 5xx.

Each generated request is signed as a merchant would sign it, so the fuzzing reaches validation
and storage, not only the signature check; a share of requests is sent unsigned as well. Besides what the document
describes, it sends times at the calendar's edges (whose offsets carry them outside it in UTC) and, in any string of
the body, the values databases refuse: NUL (PostgreSQL) and lone surrogates (no UTF-8 form at all).
"""

from __future__ import annotations

import copy
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

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def merchant(app):
    return make_merchant(app)


EDGE_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
              "9999-12-31T23:59:59.999999Z", "1969-12-31T23:59:59Z", "2024-02-30T00:00:00Z")  # fmt: skip
EDGE_STRINGS = ("\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d", "\ufeff", "\U0010ffff", "\u202e")

# RFC 3339 times as schemathesis makes them, and the edge cases it would not think of.
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()), st.sampled_from(EDGE_TIMES)
    ),
)

schema = schemathesis.openapi.from_path(Path(__file__).resolve().parents[2] / "affiliate" / "api" / "openapi.json")


@schema.parametrize()
@schema.given(edge=st.none() | st.sampled_from(EDGE_STRINGS), where=st.integers(min_value=0))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, merchant, edge, where):
    body = case.body
    if edge is not None and isinstance(body, dict):
        # A copy: schemathesis writes the case's own body into its reports, which a lone surrogate cannot enter.
        body = copy.deepcopy(body)
        if "currency" in body:  # the program's own, so that the edge value is not refused for the currency first
            body["currency"] = merchant.program.currency
        _plant(body, edge, where)
    raw = _raw(body)
    headers = {key: value for key, value in (case.headers or {}).items() if isinstance(value, str)}
    headers["Content-Type"] = case.media_type or "application/json"
    if case.path != "/openapi.json" and hash(raw) % 8:
        request_id, timestamp = f"fuzz-{time.monotonic_ns()}", int(time.time())
        headers.update({
            "Authorization": f"Bearer {merchant.token}",
            "Clicktrail-Request-Id": request_id,
            "Clicktrail-Timestamp": str(timestamp),
            "Clicktrail-Signature": f"v1={sign(merchant.secret, request_id, timestamp, raw)}",
        })  # fmt: skip
    response = merchant.client.open(f"/api/v1{case.formatted_path}", method=case.method, data=raw, headers=headers,
                                    query_string=case.query)  # fmt: skip
    assert response.status_code < 500, response.get_data(as_text=True)
    case.validate_response(response, checks=CHECKS)


def _plant(body: dict, edge: str, where: int) -> None:
    """Put ``edge`` in one string of ``body``: a free-text field of a conversion, or any string (the where-th)."""
    if "type" in body and where % 3 == 0:  # a conversion: strings no pattern guards go furthest towards storage
        customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
        body["customer"] = {**customer, "external_id": edge}
        return
    if "type" in body and where % 3 == 1:
        body["metadata"] = {"note": edge, edge: [edge]}
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
    """The bytes schemathesis means to send: nothing, bytes as they are, or JSON."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=True).encode()
