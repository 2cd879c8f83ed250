"""What every ``/api/v1`` endpoint shares: the error shape, signed-request authentication, scopes, and fields.

Every answer is JSON. Errors have one shape: ``{"error": {"code", "message", "status"}}`` plus ``field`` when
one field is at fault. Checks run in this order: content type (415), body size (413), API key (401),
signature (401), scope (403), JSON (400), then fields (422); a management write checks its request id (409)
after the JSON and before the fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, g, request

from affiliate.api.signing import SignatureError, SignedRequest, verify
from affiliate.api.strict_json import JSONError, parse_object
from affiliate.extensions import csrf, db
from affiliate.models import ApiKey, in_utc, utcnow
from affiliate.services.api_keys import find_key, signing_secrets
from affiliate.services.audit import API_KEY_INFO

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """An answer other than success, in the API's error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@dataclass(frozen=True)
class Authenticated:
    key: ApiKey
    signed: SignedRequest
    raw: bytes


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under ``/api/v1`` answering in the API's error shape, without CSRF (requests are signed)."""
    bp = Blueprint(name, import_name, url_prefix="/api/v1")
    csrf.exempt(bp)
    bp.register_error_handler(ApiError, _api_error)
    bp.before_request(_limit_body)
    bp.teardown_request(_forget_key)
    return bp


def _api_error(error: ApiError):
    db.session.rollback()
    body = {"error": {"code": error.code, "message": error.message, "status": error.status}}
    if error.field:
        body["error"]["field"] = error.field
    headers = {"WWW-Authenticate": 'Bearer realm="clicktrail"'} if error.status == 401 else {}
    return body, error.status, headers


def _limit_body() -> None:
    request.max_content_length = MAX_BODY_BYTES


def _forget_key(_error=None) -> None:
    db.session.info.pop(API_KEY_INFO, None)


def authenticate(scope: str, *, json_body: bool) -> Authenticated:
    """The request's key, checked against its signature and ``scope``, or an ApiError.

    ``json_body``: the request must carry a JSON body (writes); reads are signed over whatever body they have,
    normally none.
    """
    if json_body and request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = find_key(db.session, token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise ApiError(401, "invalid_api_key", "Send a valid, unrevoked API key as 'Authorization: Bearer <key>'.")
    g.key_id, g.key_last_used = key.id, key.last_used_at
    g.api_now = utcnow()
    try:
        signed = verify(request.headers, raw, signing_secrets(key), now=g.api_now)
    except SignatureError as error:
        raise ApiError(401, error.reason, error.message) from error
    if scope not in key.scope_set:
        raise ApiError(403, "insufficient_scope", f"This key is not allowed {scope}; an admin can issue one that is.")
    db.session.info[API_KEY_INFO] = key.id
    return Authenticated(key, signed, raw)


def json_object(raw: bytes) -> dict:
    try:
        return parse_object(raw)
    except JSONError as error:
        raise ApiError(400, error.reason, error.message) from error


def no_unknown_fields(body: dict, allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            "unknown_field",
            f"Unknown field {prefix}{unknown[0]}; the API document lists the fields.",
            prefix + unknown[0],
        )


def field(body: dict, name: str, check, **options):
    """``check(body[name], name, **options)`` (a strict_json check), its failure as a 422 naming the field."""
    try:
        return check(body.get(name), name, **options)
    except JSONError as error:
        raise ApiError(422, error.reason, error.message, name) from error


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def parse_time(value, name: str) -> datetime | None:
    """An RFC 3339 time with its zone, as UTC, or None when absent.

    As UTC, so that every answer names the moment as a replay of it will (and as the lists do), and the same
    moment written with another offset is the same request, not a conflicting one.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ApiError(422, "invalid_field", f"{name} must be an RFC 3339 time string.", name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ApiError(422, "invalid_field", f"{name} must be an RFC 3339 time string.", name) from error
    if moment.tzinfo is None:
        raise ApiError(422, "invalid_field", f"{name} needs a time zone (Z or +hh:mm).", name)
    try:
        return in_utc(moment)
    except ValueError as error:
        raise ApiError(400, "invalid_field", f"{name} is {error}.", name) from error
