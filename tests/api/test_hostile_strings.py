"""Strings no database can store and times with no UTC form are refused with a 400 that says why, storing nothing."""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import world
from tests.api.test_conversions import conversions


def _sale(**fields) -> bytes:
    body = {"type": "sale", "order_id": "hostile-1", "amount": 1000, "currency": "USD", **fields}
    return json.dumps(body).encode()  # ensure_ascii: a lone surrogate travels as its JSON escape


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (_sale(customer={"external_id": "\ud800"}), "customer.external_id"),
        (_sale(customer={"external_id": "cust\udfff-1"}), "customer.external_id"),
        (_sale(customer={"external_id": "a\x00b"}), "customer.external_id"),
        (_sale(metadata={"note": "a\x00b"}), "metadata.note"),
        (_sale(metadata={"list": ["ok", "\ud83d"]}), "metadata.list[1]"),
        (_sale(metadata={"a\x00": "x"}), "a key in metadata"),
    ],
)
def test_nul_and_lone_surrogates_are_400(app, raw, field):
    merchant, _, _ = world(app)
    response = merchant.post("/api/v1/conversions", None, raw=raw)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_string"
    assert response.json["error"]["message"].startswith(field)
    assert conversions(app) == []


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]
)
def test_times_at_the_calendar_edges_are_400(app, moment):
    merchant, _, _ = world(app)
    response = merchant.post("/api/v1/conversions", None, raw=_sale(occurred_at=moment))
    assert response.status_code == 400, response.json
    assert "occurred_at" in response.json["error"]["message"]
    assert conversions(app) == []


def test_refunds_refuse_them_too(app):
    merchant, _, _ = world(app)
    assert merchant.sale("hostile-2").status_code == 201
    edge = "0001-01-01T00:00:00+14:00"
    for body in (
        {"order_id": "hostile-2", "refund_id": "r\x00", "amount": 100},
        {"order_id": "hostile-2", "refund_id": "r-1", "amount": 100, "occurred_at": edge},
        {"order_id": "hostile-2", "refund_id": "\ud800", "amount": 100},
    ):
        response = merchant.post("/api/v1/refunds", body)
        assert response.status_code == 400, (body, response.json)
    assert len(conversions(app)) == 1
