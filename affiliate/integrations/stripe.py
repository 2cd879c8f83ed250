"""POST /integrations/stripe/<program id>: the program's Stripe webhook endpoint.

Stripe signs every event with the endpoint's secret (set on the program's Stripe page); the official ``stripe``
package checks the signature and that its timestamp is within five minutes. A refused event gets a 400 and
Stripe retries it; a verified one gets a 200 whatever became of it (services/stripe_events.py), since
sending it again would change nothing.
"""

from __future__ import annotations

import re
import time

import stripe
from flask import Blueprint, request

from affiliate.api.strict_json import JSONError, parse_object
from affiliate.extensions import csrf, db
from affiliate.models import Program, utcnow
from affiliate.services import stripe_events

bp = Blueprint("integrations_stripe", __name__, url_prefix="/integrations/stripe")
csrf.exempt(bp)
MAX_EVENT_BYTES = 512 * 1024  # Stripe's events are a few kB; an expanded checkout stays far below this
TOLERANCE_SECONDS = 300
MAX_DEPTH = 64  # an event's object with every expandable field expanded nests far less deeply


@bp.post("/<int:program_id>")
def receive(program_id: int):
    program = db.session.get(Program, program_id)
    if program is None or not program.stripe_webhook_secret:
        return _error(404, "This program takes no Stripe events.")
    if (request.content_length or 0) > MAX_EVENT_BYTES:
        return _error(413, "The event is too large.")
    payload = request.get_data(cache=False)
    if len(payload) > MAX_EVENT_BYTES:
        return _error(413, "The event is too large.")
    header = request.headers.get("Stripe-Signature", "")
    # Stripe writes a JSON body in UTF-8 and a header of ASCII; the library cannot even compare anything else.
    if not _utf8(payload):
        return _error(400, "The body is not a Stripe event.")
    if not header.isascii():
        return _error(400, "The Stripe-Signature header is not one Stripe writes.")
    try:
        stripe.WebhookSignature.verify_header(payload, header, program.stripe_webhook_secret, TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        return _error(400, "The Stripe-Signature does not verify with this program's secret, or is too old.")
    # The library refuses a timestamp too far in the past only; one from the future is as suspect.
    signed_at = re.search(r"(?:^|,)t=(\d{1,12})(?:,|$)", header)
    if signed_at is None or int(signed_at.group(1)) > time.time() + TOLERANCE_SECONDS:
        return _error(400, "The Stripe-Signature's timestamp is in the future.")
    try:
        # As strict as the API's own bodies: no text a database column cannot keep (NUL, lone surrogates), no
        # duplicate keys or NaN.
        event = parse_object(payload, max_depth=MAX_DEPTH)
    except JSONError:
        return _error(400, "The body is not a Stripe event.")
    if not _shaped(event):
        return _error(400, "The body is not a Stripe event.")
    handled = stripe_events.receive(db.session, program, event, now=utcnow())
    status, detail = handled.status, handled.detail
    db.session.commit()
    return {"received": True, "status": status, "detail": detail}, 200


def _shaped(event) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and not isinstance(event["created"], bool)
        and 0 < event["created"] < 2**33
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
        and isinstance(event["data"]["object"].get("id", ""), str)
    )


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _error(status: int, message: str):
    return {"error": {"message": message}}, status
