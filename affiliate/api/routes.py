"""``POST /api/v1/conversions`` and ``/api/v1/refunds``: signed, idempotent, JSON in and out.

Every answer is JSON. Errors have one shape: ``{"error": {"code", "message", "status"}}``
plus ``field`` when one field is at fault. Checks run in this order: body size (413),
content type (415), API key (401), signature (401), JSON (400), fields (422), then the
idempotency key (409 for the same order with another payload).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Response, g, request
from sqlalchemy import update

from affiliate.addresses import normalise_ip
from affiliate.api.signing import SignatureError, verify
from affiliate.api.strict_json import JSONError, parse_object, require_int, require_str
from affiliate.database import reading
from affiliate.extensions import csrf, db
from affiliate.models import ApiKey, Conversion, ConversionType, utcnow
from affiliate.money import CURRENCIES
from affiliate.services.api_keys import find_key, key_program, signing_secrets
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

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

MAX_BODY_BYTES = 64 * 1024
ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#@+-]{0,127}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,32}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_METADATA_BYTES = 4096
CONVERSION_FIELDS = {
    "type", "order_id", "amount", "currency", "customer", "click_id", "visitor_id", "occurred_at", "metadata",
}  # fmt: skip
REFUND_FIELDS = {"order_id", "refund_id", "amount", "occurred_at"}
CUSTOMER_FIELDS = {"external_id", "email", "ip", "country"}
COUNTRY = re.compile(r"[A-Z]{2}")
LAST_USED_EVERY_SECONDS = 60
OPENAPI_PATH = Path(__file__).with_name("openapi.json")


class ApiError(Exception):
    """An answer other than success, in the API's error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    db.session.rollback()
    body = {"error": {"code": error.code, "message": error.message, "status": error.status}}
    if error.field:
        body["error"]["field"] = error.field
    headers = {"WWW-Authenticate": 'Bearer realm="clicktrail"'} if error.status == 401 else {}
    return body, error.status, headers


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_BODY_BYTES


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document describing this API."""
    return Response(OPENAPI_PATH.read_bytes(), mimetype="application/json")


@bp.post("/conversions")
def conversions():
    """Record a signup or sale (201), or answer a replay of one with the original answer."""
    # Authentication, attribution and screening only read; the write that follows is one short insert.
    with reading(db.session):
        key, body = _signed_json()
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
    key, body = _signed_json()
    report = _refund_request(body)
    program = key_program(db.session, key)
    try:
        recorded = record_refund(db.session, program, report, now=g.api_now)
    except ConversionError as error:
        raise ApiError(error.status, error.code, error.message) from error
    return _answer(key, recorded.conversion, recorded.created)


def _signed_json() -> tuple[ApiKey, dict]:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = find_key(db.session, token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise ApiError(401, "invalid_api_key", "Send a valid, unrevoked API key as 'Authorization: Bearer <key>'.")
    g.key_id, g.key_last_used = key.id, key.last_used_at
    g.api_now = utcnow()
    try:
        verify(request.headers, raw, signing_secrets(key), now=g.api_now)
    except SignatureError as error:
        raise ApiError(401, error.reason, error.message) from error
    try:
        body = parse_object(raw)
    except JSONError as error:
        raise ApiError(400, error.reason, error.message) from error
    return key, body


def _conversion_request(body: dict) -> ConversionRequest:
    _no_unknown_fields(body, CONVERSION_FIELDS)
    kind = _field(body, "type", require_str, max_length=8)
    if kind not in (ConversionType.SIGNUP, ConversionType.SALE):
        raise ApiError(422, "invalid_field", "type must be 'signup' or 'sale'.", "type")
    customer = body.get("customer") or {}
    if not isinstance(customer, dict):
        raise ApiError(422, "invalid_field", "customer must be an object.", "customer")
    _no_unknown_fields(customer, CUSTOMER_FIELDS, prefix="customer.")
    amount = body.get("amount", 0 if kind == ConversionType.SIGNUP else None)
    if amount is None:
        raise ApiError(422, "missing_field", "A sale needs an amount in minor units (cents).", "amount")
    return ConversionRequest(
        type=ConversionType(kind),
        order_id=_order_id(body, "order_id"),
        amount_cents=_field({"amount": amount}, "amount", require_int, minimum=0, maximum=MAX_AMOUNT_CENTS),
        currency=_currency(body),
        customer_external_id=_field(customer, "external_id", require_str, max_length=128, optional=True),
        customer_email=_email(customer.get("email")),
        customer_ip=_ip(customer.get("ip")),
        customer_country=_field(customer, "country", require_str, max_length=2, pattern=COUNTRY, optional=True),
        click_id=_field(body, "click_id", require_str, max_length=32, pattern=TOKEN, optional=True),
        visitor_id=_field(body, "visitor_id", require_str, max_length=32, pattern=TOKEN, optional=True),
        occurred_at=_time(body.get("occurred_at")),
        metadata=_metadata(body.get("metadata")),
    )


def _refund_request(body: dict) -> RefundRequest:
    _no_unknown_fields(body, REFUND_FIELDS)
    amount = body.get("amount")
    return RefundRequest(
        order_id=_order_id(body, "order_id"),
        refund_id=_order_id(body, "refund_id") if body.get("refund_id") is not None else None,
        amount_cents=None
        if amount is None
        else _field(body, "amount", require_int, minimum=1, maximum=MAX_AMOUNT_CENTS),
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
        "occurred_at": _iso(conversion.occurred_at),
        "created_at": _iso(conversion.created_at),
        "refund_of": conversion.refund_of_id,
        "refund_id": conversion.refund_key or None,
        "attribution": {
            "attributed": conversion.affiliate_id is not None,
            "affiliate_id": conversion.affiliate_id,
            "click_id": won.get("click_id") if conversion.click_id else None,
            "matched_by": trace.get("matched_by"),
        },
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _no_unknown_fields(body: dict, allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400, "unknown_field", f"Unknown field {prefix}{unknown[0]}; the API document lists the fields.",
            prefix + unknown[0],
        )  # fmt: skip


def _field(body: dict, name: str, check, **options):
    try:
        return check(body.get(name), name, **options)
    except JSONError as error:
        raise ApiError(422, error.reason, error.message, name) from error


def _order_id(body: dict, name: str) -> str:
    return _field(body, name, require_str, max_length=128, pattern=ORDER_ID)


def _currency(body: dict) -> str:
    currency = _field(body, "currency", require_str, max_length=3, pattern=CURRENCY)
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
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ApiError(422, "invalid_field", "occurred_at must be an RFC 3339 time string.", "occurred_at")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ApiError(422, "invalid_field", "occurred_at must be an RFC 3339 time string.", "occurred_at") from error
    if moment.tzinfo is None:
        raise ApiError(422, "invalid_field", "occurred_at needs a time zone (Z or +hh:mm).", "occurred_at")
    try:
        # Stored in UTC: a time at the calendar's edge whose offset carries it past year 1 or 9999 has no UTC form.
        moment.astimezone(UTC)
    except OverflowError as error:
        message = "occurred_at is outside the years 1 to 9999 once converted to UTC."
        raise ApiError(400, "invalid_field", message, "occurred_at") from error
    return moment


def _metadata(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_field", "metadata must be an object.", "metadata")
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ApiError(422, "invalid_field", f"metadata is limited to {MAX_METADATA_BYTES} bytes.", "metadata")
    return value
