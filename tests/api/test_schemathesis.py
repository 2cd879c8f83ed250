"""C24: schemathesis generates requests from the OpenAPI document; the API answers every one without a 5xx.

Each generated request is signed as a merchant would sign it, so the fuzzing reaches validation
and storage, not only the signature check; a share of requests is sent unsigned as well.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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


schema = schemathesis.openapi.from_path(Path(__file__).resolve().parents[2] / "affiliate" / "api" / "openapi.json")


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, merchant):
    raw = _raw(case.body)
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


def _raw(body) -> bytes:
    """The bytes schemathesis means to send: nothing, bytes as they are, or JSON."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=True).encode()
