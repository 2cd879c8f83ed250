"""The management API's webhook endpoints: list, add, change, rotate the secret, delete, and the delivery log with
sending a message again. Same keys, scopes, idempotency and audit as the rest of the management API; the secret
is in the answer to adding an endpoint and to rotating its secret, and nowhere else."""

from __future__ import annotations

from flask import current_app, g, request

from affiliate import outbound
from affiliate.api.common import ApiError, Authenticated, api_blueprint, field, iso, no_unknown_fields
from affiliate.api.management import _page, reads, writes
from affiliate.api.strict_json import require_str
from affiliate.extensions import db
from affiliate.models import Delivery, User, WebhookEndpoint
from affiliate.services import deliveries, webhooks

URL_MAX = 2000

bp = api_blueprint("api_webhooks", __name__)


@bp.get("/webhooks")
@reads("webhooks:read")
def list_webhooks(authenticated: Authenticated):
    """The program's webhook endpoints (without their secrets)."""
    return {"endpoints": [_endpoint_json(e) for e in webhooks.endpoints_of(db.session, authenticated.key.program.id)]}


@bp.post("/webhooks")
@writes("webhooks:write")
def add_webhook(authenticated: Authenticated, actor: User, body: dict):
    """A new endpoint; its signing secret is in this answer only (and the portal's endpoint page)."""
    no_unknown_fields(body, {"url", "events", "description"})
    settings = webhooks.EndpointSettings(
        url=field(body, "url", require_str, max_length=URL_MAX), events=_events(body), description=_description(body)
    )
    try:
        endpoint = webhooks.create_endpoint(
            db.session, authenticated.key.program, settings, actor=actor, now=g.api_now, check_url=_check_url
        )
    except webhooks.WebhookError as error:
        raise ApiError(422, "invalid_endpoint", str(error)) from error
    return {"endpoint": _endpoint_json(endpoint), "secret": endpoint.secret}, 201


@bp.get("/webhooks/<int:endpoint_id>")
@reads("webhooks:read")
def show_webhook(authenticated: Authenticated, endpoint_id: int):
    return {"endpoint": _endpoint_json(_endpoint(authenticated, endpoint_id))}


@bp.post("/webhooks/<int:endpoint_id>")
@writes("webhooks:write")
def change_webhook(authenticated: Authenticated, actor: User, body: dict, endpoint_id: int):
    """Change the URL, the events or the description (each optional); ``enabled`` turns it off or on."""
    no_unknown_fields(body, {"url", "events", "description", "enabled"})
    endpoint = _endpoint(authenticated, endpoint_id)
    if "enabled" in body and not isinstance(body["enabled"], bool):
        raise ApiError(422, "invalid_field", "enabled is true or false.", "enabled")
    settings = webhooks.EndpointSettings(
        url=field(body, "url", require_str, max_length=URL_MAX) if "url" in body else endpoint.url,
        events=_events(body) if "events" in body else tuple(endpoint.events.split()),
        description=_description(body) if "description" in body else endpoint.description,
    )
    try:
        webhooks.update_endpoint(db.session, endpoint, settings, actor=actor, now=g.api_now, check_url=_check_url)
    except webhooks.WebhookError as error:
        raise ApiError(422, "invalid_endpoint", str(error)) from error
    if "enabled" in body and body["enabled"] != endpoint.enabled:
        webhooks.set_enabled(
            db.session, endpoint, body["enabled"], actor=actor, now=g.api_now, reason="turned off through the API"
        )
    return {"endpoint": _endpoint_json(endpoint)}, 200


@bp.post("/webhooks/<int:endpoint_id>/rotate-secret")
@writes("webhooks:write")
def rotate_webhook_secret(authenticated: Authenticated, actor: User, body: dict, endpoint_id: int):
    """A new secret, in this answer only; the previous one also signs for 24 hours."""
    no_unknown_fields(body, set())
    endpoint = _endpoint(authenticated, endpoint_id)
    secret = webhooks.rotate_secret(db.session, endpoint, actor=actor, now=g.api_now)
    return {"endpoint": _endpoint_json(endpoint), "secret": secret}, 200


@bp.post("/webhooks/<int:endpoint_id>/delete")
@writes("webhooks:write")
def delete_webhook(authenticated: Authenticated, actor: User, body: dict, endpoint_id: int):
    no_unknown_fields(body, set())
    endpoint = _endpoint(authenticated, endpoint_id)
    webhooks.delete_endpoint(db.session, endpoint, actor=actor, now=g.api_now)
    return {"deleted": endpoint_id}, 200


@bp.get("/webhooks/<int:endpoint_id>/deliveries")
@reads("webhooks:read")
def webhook_deliveries(authenticated: Authenticated, endpoint_id: int):
    """The endpoint's messages, newest first, a page at a time (``?after=`` an id: older than it)."""
    endpoint = _endpoint(authenticated, endpoint_id)
    after, limit = _page(big=True)
    query = db.select(Delivery).where(Delivery.webhook_id == endpoint.id)
    if "after" in request.args:
        query = query.where(Delivery.id < after)
    found = db.session.scalars(query.order_by(Delivery.id.desc()).limit(limit)).all()
    return {
        "deliveries": [_delivery_json(d) for d in found],
        "next_after": found[-1].id if len(found) == limit else None,
    }


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<bigid:delivery_id>/redeliver")
@writes("webhooks:write")
def redeliver_webhook(authenticated: Authenticated, actor: User, body: dict, endpoint_id: int, delivery_id: int):
    """Send a message again now, with the same id (a dead one included)."""
    no_unknown_fields(body, set())
    endpoint = _endpoint(authenticated, endpoint_id)
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.webhook_id != endpoint.id:
        raise ApiError(404, "not_found", "This endpoint has no such message.")
    deliveries.redeliver(db.session, delivery, now=g.api_now)
    return {"delivery": _delivery_json(delivery)}, 200


def _check_url(url: str):
    return outbound.check_url(url, allow_loopback=current_app.config["OUTBOUND_ALLOW_LOOPBACK"])


def _description(body: dict) -> str | None:
    return field(body, "description", require_str, max_length=200, min_length=0, optional=True)


def _events(body: dict) -> tuple[str, ...]:
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(event, str) and len(event) <= 64 for event in events):
        raise ApiError(422, "invalid_field", 'events is a list of event types, or ["*"] for every event.', "events")
    return tuple(events[:100])


def _endpoint(authenticated: Authenticated, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.program_id != authenticated.key.program.id:
        raise ApiError(404, "not_found", "This program has no such webhook endpoint.")
    return endpoint


def _endpoint_json(endpoint: WebhookEndpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events.split(),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "secret_rotating_until": iso(endpoint.previous_secret_until),
        "created_at": iso(endpoint.created_at),
    }


def _delivery_json(delivery: Delivery) -> dict:
    return {
        "id": delivery.id,
        "message_id": delivery.message_id,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == deliveries.PENDING else None,
        "last_attempt_at": iso(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_response": delivery.last_response,
        "last_latency_ms": delivery.last_latency_ms,
        "last_error": delivery.last_error,
        "delivered_at": iso(delivery.delivered_at),
    }
