"""``POST /api/v1/conversions`` and ``/api/v1/refunds``: signed, idempotent, JSON in and out.

Authentication, the error shape and the order of checks are affiliate/api/common.py's; a conversion is
idempotent by its order id, a refund by its refund id.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from flask import Response, g
from sqlalchemy import update

from affiliate.addresses import normalise_ip
from affiliate.api.common import (
    ApiError,
    api_blueprint,
    authenticate,
    field,
    iso,
    json_object,
    no_unknown_fields,
    parse_time,
)
from affiliate.api.strict_json import require_int, require_str
from affiliate.database import reading
from affiliate.extensions import db
from affiliate.models import ApiKey, Conversion, ConversionType, utcnow
from affiliate.money import CURRENCIES
from affiliate.services.api_keys import key_program
from affiliate.services.conversions import (
    MAX_AMOUNT_CENTS,
    ConversionError,
    ConversionRequest,
    Recorded,
    RefundRequest,
    await_click,
    prepare_conversion,
    record_refund,
    store_conversion,
)
from affiliate.services.fraud_rules import COUNTRY
from redirector.app import TOKEN

bp = api_blueprint("api", __name__)

ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#@+-]{0,127}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_METADATA_BYTES = 4096
CONVERSION_FIELDS = {
    "type", "order_id", "amount", "currency", "customer", "click_id", "visitor_id", "occurred_at", "metadata",
    "coupon",
}  # fmt: skip
COUPON = re.compile(r"[A-Za-z0-9_-]{1,40}")
REFUND_FIELDS = {"order_id", "refund_id", "amount", "occurred_at"}
CUSTOMER_FIELDS = {"external_id", "email", "ip", "country"}
LAST_USED_EVERY_SECONDS = 60
OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document describing this API."""
    return Response(OPENAPI_PATH.read_bytes(), mimetype="application/json")


@bp.post("/conversions")
def conversions():
    """Record a signup or sale (201), or answer a replay of one with the original answer."""
    # Authentication, attribution and screening only read; the write that follows is one short insert.
    with reading(db.session):
        key, body = _signed_json("conversions:write")
        report = _conversion_request(body)
        await_click(db.session, report.click_id, clock=utcnow, sleep=time.sleep)
        program = key_program(db.session, key)
        try:
            prepared = prepare_conversion(db.session, program, report, now=g.api_now)
        except ConversionError as error:
            raise ApiError(error.status, error.code, error.message) from error
    try:
        recorded = prepared if isinstance(prepared, Recorded) else store_conversion(db.session, prepared)
    except ConversionError as error:
        raise ApiError(error.status, error.code, error.message) from error
    return _answer(key, recorded.conversion, recorded.created)


@bp.post("/refunds")
def refunds():
    """Record a full or partial refund of a reported sale (201), once."""
    key, body = _signed_json("refunds:write")
    report = _refund_request(body)
    program = key_program(db.session, key)
    try:
        recorded = record_refund(db.session, program, report, now=g.api_now)
    except ConversionError as error:
        raise ApiError(error.status, error.code, error.message) from error
    return _answer(key, recorded.conversion, recorded.created)


def _signed_json(scope: str) -> tuple[ApiKey, dict]:
    authenticated = authenticate(scope, json_body=True)
    return authenticated.key, json_object(authenticated.raw)


def _conversion_request(body: dict) -> ConversionRequest:
    no_unknown_fields(body, CONVERSION_FIELDS)
    kind = field(body, "type", require_str, max_length=8)
    if kind not in (ConversionType.SIGNUP, ConversionType.SALE):
        raise ApiError(422, "invalid_field", "type must be 'signup' or 'sale'.", "type")
    customer = body.get("customer") or {}
    if not isinstance(customer, dict):
        raise ApiError(422, "invalid_field", "customer must be an object.", "customer")
    no_unknown_fields(customer, CUSTOMER_FIELDS, prefix="customer.")
    amount = body.get("amount", 0 if kind == ConversionType.SIGNUP else None)
    if amount is None:
        raise ApiError(422, "missing_field", "A sale needs an amount in minor units (cents).", "amount")
    return ConversionRequest(
        type=ConversionType(kind),
        order_id=_order_id(body, "order_id"),
        amount_cents=field({"amount": amount}, "amount", require_int, minimum=0, maximum=MAX_AMOUNT_CENTS),
        currency=_currency(body),
        customer_external_id=field(customer, "external_id", require_str, max_length=128, optional=True),
        customer_email=_email(customer.get("email")),
        customer_ip=_ip(customer.get("ip")),
        customer_country=field(customer, "country", require_str, max_length=2, pattern=COUNTRY, optional=True),
        click_id=field(body, "click_id", require_str, max_length=32, pattern=TOKEN, optional=True),
        visitor_id=field(body, "visitor_id", require_str, max_length=32, pattern=TOKEN, optional=True),
        occurred_at=_time(body.get("occurred_at")),
        metadata=_metadata(body.get("metadata")),
        coupon=field(body, "coupon", require_str, max_length=40, pattern=COUPON, optional=True),
    )


def _refund_request(body: dict) -> RefundRequest:
    no_unknown_fields(body, REFUND_FIELDS)
    amount = body.get("amount")
    return RefundRequest(
        order_id=_order_id(body, "order_id"),
        refund_id=_order_id(body, "refund_id") if body.get("refund_id") is not None else None,
        amount_cents=None
        if amount is None
        else field(body, "amount", require_int, minimum=1, maximum=MAX_AMOUNT_CENTS),
        occurred_at=_time(body.get("occurred_at")),
    )


def _answer(key: ApiKey, conversion: Conversion, created: bool):
    now = g.api_now
    # Recorded at most once a minute, so a busy key is not a hot row (last_used_at was read while authenticating).
    if g.key_last_used is None or (now - g.key_last_used).total_seconds() > LAST_USED_EVERY_SECONDS:
        db.session.execute(update(ApiKey).where(ApiKey.id == g.key_id).values(last_used_at=now))
    body = {"conversion": conversion_json(conversion)}  # before COMMIT: after it, reading would start a new write
    db.session.commit()
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return body, 201, headers


def conversion_json(conversion: Conversion) -> dict:
    """What the API says about a stored conversion (the same on every replay)."""
    trace = json.loads(conversion.decision_trace) if conversion.decision_trace else {}
    won = next((line for line in trace.get("trace", []) if line.get("outcome") == "won" and line.get("click_id")), {})
    return {
        "id": conversion.id,
        "type": conversion.type,
        "order_id": conversion.order_id,
        "amount": conversion.amount_cents,
        "currency": conversion.currency,
        "status": conversion.status,
        "occurred_at": iso(conversion.occurred_at),
        "created_at": iso(conversion.created_at),
        "refund_of": conversion.refund_of_id,
        "refund_id": conversion.refund_key or None,
        "attribution": {
            "status": _attribution_status(conversion),
            "attributed": conversion.affiliate_id is not None,
            "affiliate_id": conversion.affiliate_id,
            "click_id": won.get("click_id") if conversion.click_id else None,
            "matched_by": trace.get("matched_by"),
            "coupon": (trace.get("code") or {}).get("code") if conversion.coupon_id else None,
            # Why the clicks and codes that did not win lost (no_match, outside_window, bot, ...), once each.
            "reasons": list(
                dict.fromkeys(line["reason"] for line in trace.get("trace", []) if line["outcome"] != "won")
            ),
        },
        # The fraud rules that flagged or rejected the conversion (rules set to record only are left out).
        "fraud": {"score": conversion.fraud_score, "rules": _fired(conversion.fraud_reasons)},
    }


def _fired(fraud_reasons: str | None) -> list[str]:
    fired = json.loads(fraud_reasons) if fraud_reasons else []
    return [entry["rule"] for entry in fired if entry.get("action") in ("flag", "reject")]


def _attribution_status(conversion: Conversion) -> str:
    """``waiting_for_click`` while the click the conversion names is still in a click log, then as decided."""
    if conversion.waiting_for_click is not None:
        return "waiting_for_click"
    return "attributed" if conversion.affiliate_id is not None else "unattributed"


def _order_id(body: dict, name: str) -> str:
    return field(body, name, require_str, max_length=128, pattern=ORDER_ID)


def _currency(body: dict) -> str:
    currency = field(body, "currency", require_str, max_length=3, pattern=CURRENCY)
    if currency not in CURRENCIES:
        raise ApiError(422, "invalid_field", f"{currency} is not an ISO 4217 currency Clicktrail supports.", "currency")
    return currency


def _email(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 254:
        raise ApiError(422, "invalid_field", "customer.email must be an email address.", "customer.email")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ApiError(422, "invalid_field", f"customer.email: {error}", "customer.email") from error


def _ip(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 45:
        address = normalise_ip(value)
        if address is not None:
            return address
    raise ApiError(422, "invalid_field", "customer.ip must be an IPv4 or IPv6 address.", "customer.ip")


def _time(value) -> datetime | None:
    return parse_time(value, "occurred_at")


def _metadata(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_field", "metadata must be an object.", "metadata")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ApiError(422, "invalid_field", f"metadata is limited to {MAX_METADATA_BYTES} bytes.", "metadata")
    return value
