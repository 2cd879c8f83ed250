"""Webhook endpoints through the management API, as a merchant's script manages them: signed requests through the
HTTP layer, messages to a real https receiver that verifies them with the secret the API handed out."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import AuditLog, Delivery, WebhookEndpoint, utcnow
from affiliate.services import webhooks
from tests.api.helpers import Merchant, make_merchant
from tests.factories import make_admin, make_program
from tests.webhooks.receivers import Clock, Receiver, send_all

PATH = "/hooks/clicktrail"


@pytest.fixture
def admin(app):
    return make_admin(app)


@pytest.fixture
def merchant(app, admin) -> Merchant:
    return make_merchant(app, make_program(app, admin), admin, scopes="all")


def emit(app, merchant: Merchant, event: str, data: dict) -> None:
    with app.app_context():
        webhooks.emit(db.session, merchant.program.id, event, data, now=utcnow())
        db.session.commit()


def state(app) -> tuple:
    """What a refused request must leave as it was: every endpoint's settings and secret, the audit log."""
    with app.app_context():
        endpoints = db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
        return (
            [(e.url, e.events, e.description, e.enabled, e.secret, e.previous_secret) for e in endpoints],
            db.session.scalar(select(func.count()).select_from(AuditLog)),
        )


def test_an_endpoint_added_through_the_api_receives_events_signed_with_the_secret_it_was_given(
    app, merchant, hooks: Receiver, clock: Clock
):
    added = merchant.post(
        "/api/v1/webhooks", {"url": hooks.url(PATH), "events": ["link.created"], "description": "CRM sync"}
    )
    assert added.status_code == 201, added.get_json()
    endpoint, secret = added.get_json()["endpoint"], added.get_json()["secret"]
    assert secret.startswith("whsec_") and endpoint["events"] == ["link.created"] and endpoint["enabled"]
    hooks.secrets[PATH] = [secret]

    listed = merchant.get("/api/v1/webhooks").get_json()["endpoints"]
    shown = merchant.get(f"/api/v1/webhooks/{endpoint['id']}").get_json()["endpoint"]
    assert listed == [endpoint] and shown == endpoint
    assert secret not in merchant.get("/api/v1/webhooks").get_data(as_text=True), "the secret is shown once"

    emit(app, merchant, "link.created", {"link": "spring"})
    emit(app, merchant, "payout.paid", {"payout": 1})  # not chosen
    send_all(app, clock)
    [request] = hooks.at(PATH)
    assert request.verified == [secret] and request.payload["type"] == "link.created"

    log = merchant.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries").get_json()
    [entry] = log["deliveries"]
    assert entry["status"] == "delivered" and entry["attempts"] == 1 and entry["last_status_code"] == 200
    assert entry["message_id"] == request.headers["webhook-id"] and log["next_after"] is None


def test_a_rotated_secret_is_handed_out_once_and_both_sign_during_the_overlap(app, merchant, hooks, clock):
    added = merchant.post("/api/v1/webhooks", {"url": hooks.url(PATH), "events": ["*"]}).get_json()
    endpoint_id, old = added["endpoint"]["id"], added["secret"]
    rotated = merchant.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret", {})
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["endpoint"]["secret_rotating_until"] is not None
    hooks.secrets[PATH] = [old, new]
    emit(app, merchant, "link.created", {"link": "after-rotation"})
    send_all(app, clock)
    [request] = hooks.at(PATH)
    assert sorted(request.verified) == sorted([old, new]), "both secrets sign until the overlap ends"


def test_turning_an_endpoint_off_and_on_through_the_api_holds_then_sends_its_messages(app, merchant, hooks, clock):
    endpoint_id = merchant.post("/api/v1/webhooks", {"url": hooks.url(PATH), "events": ["*"]}).get_json()["endpoint"][
        "id"
    ]
    off = merchant.post(f"/api/v1/webhooks/{endpoint_id}", {"enabled": False})
    assert off.status_code == 200 and off.get_json()["endpoint"]["disabled_reason"] == "turned off through the API"
    emit(app, merchant, "link.created", {"link": "while-off"})
    send_all(app, clock)
    assert hooks.received == [], "an endpoint turned off gets nothing"
    assert merchant.post(f"/api/v1/webhooks/{endpoint_id}", {"enabled": True}).status_code == 200
    # Written while the endpoint was off, the event found no enabled endpoint: nothing waits to be sent.
    emit(app, merchant, "link.created", {"link": "back-on"})
    send_all(app, clock)
    assert [request.payload["data"]["link"] for request in hooks.at(PATH)] == ["back-on"]


def test_a_dead_message_is_sent_again_with_the_same_id_when_the_api_asks(app, merchant, hooks, clock):
    endpoint_id = merchant.post("/api/v1/webhooks", {"url": hooks.url(PATH), "events": ["*"]}).get_json()["endpoint"][
        "id"
    ]
    emit(app, merchant, "link.created", {"link": "once-dead"})
    with app.app_context():
        db.session.execute(db.update(Delivery).values(status="dead", attempts=14))
        db.session.commit()
    [entry] = merchant.get(f"/api/v1/webhooks/{endpoint_id}/deliveries").get_json()["deliveries"]
    assert entry["status"] == "dead" and entry["next_attempt_at"] is None

    again = merchant.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{entry['id']}/redeliver", {})
    assert again.status_code == 200 and again.get_json()["delivery"]["status"] == "pending"
    send_all(app, clock)
    [request] = hooks.at(PATH)
    assert request.headers["webhook-id"] == entry["message_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://169.254.169.254/latest/meta-data/", "events": ["*"]}, None),
        ({"url": "http://hooks.example.com/", "events": ["*"]}, None),
        ({"url": "https://10.0.0.5/hook", "events": ["*"]}, None),
        ({"url": "https://167772165/", "events": ["*"]}, None),
        ({"url": "https://hooks.example.com/", "events": ["no.such.event"]}, None),
        ({"url": "https://hooks.example.com/", "events": "link.created"}, "events"),
        ({"url": "https://hooks.example.com/", "events": [7]}, "events"),
        ({"url": 42, "events": ["*"]}, "url"),
        ({"url": "https://hooks.example.com/" + "a" * 2100, "events": ["*"]}, "url"),
        ({"url": "https://hooks.example.com/", "events": ["*"], "secret": "whsec_mine"}, None),
    ],
    ids=[
        "metadata",
        "http",
        "private",
        "decimal-private",
        "unknown-event",
        "events-not-a-list",
        "event-not-text",
        "url-not-text",
        "url-too-long",
        "secret-chosen",
    ],
)
def test_a_bad_endpoint_is_a_clear_4xx_and_changes_nothing(app, merchant, body, field):
    before = state(app)
    refused = merchant.post("/api/v1/webhooks", body)
    assert 400 <= refused.status_code < 500, refused.get_data(as_text=True)
    error = refused.get_json()["error"]
    assert error["message"]
    if field:
        assert error.get("field") == field
    assert state(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": "yes", "url": "https://changed.example.com/"},
        {"url": "https://10.0.0.5/", "enabled": False},
        {"events": ["nope"]},
        {"colour": "red"},
    ],
    ids=["enabled-not-a-bool", "unsafe-url", "unknown-event", "unknown-field"],
)
def test_a_bad_change_is_refused_whole(app, merchant, body):
    endpoint_id = merchant.post("/api/v1/webhooks", {"url": "https://hooks.example.com/", "events": ["*"]}).get_json()[
        "endpoint"
    ]["id"]
    before = state(app)
    refused = merchant.post(f"/api/v1/webhooks/{endpoint_id}", body)
    assert 400 <= refused.status_code < 500
    assert state(app) == before, "no part of a refused change is kept"


def test_a_read_key_cannot_write_and_another_programs_key_finds_nothing(app, admin, merchant):
    endpoint_id = merchant.post("/api/v1/webhooks", {"url": "https://hooks.example.com/", "events": ["*"]}).get_json()[
        "endpoint"
    ]["id"]
    reader = make_merchant(app, merchant.program, admin, scopes=["webhooks:read"])
    assert reader.get(f"/api/v1/webhooks/{endpoint_id}").status_code == 200
    before = state(app)
    for path in (
        f"/api/v1/webhooks/{endpoint_id}",
        f"/api/v1/webhooks/{endpoint_id}/rotate-secret",
        f"/api/v1/webhooks/{endpoint_id}/delete",
        "/api/v1/webhooks",
    ):
        body = {"url": "https://hooks.example.com/", "events": ["*"]} if path == "/api/v1/webhooks" else {}
        assert reader.post(path, body).status_code == 403, path
    assert state(app) == before

    stranger = make_merchant(app, make_program(app, admin), admin, scopes="all")
    before = state(app)
    for path in (f"/api/v1/webhooks/{endpoint_id}", f"/api/v1/webhooks/{endpoint_id}/deliveries"):
        assert stranger.get(path).status_code == 404, path
    for path in (f"/api/v1/webhooks/{endpoint_id}/rotate-secret", f"/api/v1/webhooks/{endpoint_id}/delete"):
        assert stranger.post(path, {}).status_code == 404, path
    assert stranger.get("/api/v1/webhooks").get_json() == {"endpoints": []}
    assert state(app) == before

    deleted = merchant.post(f"/api/v1/webhooks/{endpoint_id}/delete", {})
    assert deleted.status_code == 200 and merchant.get("/api/v1/webhooks").get_json() == {"endpoints": []}


def test_a_message_of_another_endpoint_cannot_be_redelivered_through_this_one(app, merchant, hooks, clock):
    first = merchant.post("/api/v1/webhooks", {"url": hooks.url("/a"), "events": ["*"]}).get_json()["endpoint"]["id"]
    second = merchant.post("/api/v1/webhooks", {"url": hooks.url("/b"), "events": ["*"]}).get_json()["endpoint"]["id"]
    emit(app, merchant, "link.created", {"link": "x"})
    send_all(app, clock)
    [of_first] = merchant.get(f"/api/v1/webhooks/{first}/deliveries").get_json()["deliveries"]
    crossed = merchant.post(f"/api/v1/webhooks/{second}/deliveries/{of_first['id']}/redeliver", {})
    assert crossed.status_code == 404
    assert merchant.get(f"/api/v1/webhooks/{first}/deliveries").get_json()["deliveries"][0]["status"] == "delivered"


def test_messages_with_ids_past_32_bits_are_paged_and_redelivered(app, merchant, hooks, clock):
    """Deliveries have 64-bit keys: the cursor the list hands out, and a message's id, work past 2**31."""
    endpoint_id = merchant.post("/api/v1/webhooks", {"url": hooks.url(PATH), "events": ["*"]}).get_json()["endpoint"][
        "id"
    ]
    for n in range(3):
        emit(app, merchant, "link.created", {"link": f"big-{n}"})
    with app.app_context():
        db.session.execute(db.update(Delivery).values(id=Delivery.id + 3_000_000_000, status="dead", attempts=14))
        db.session.commit()
    first = merchant.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", query={"limit": "2"}).get_json()
    assert first["next_after"] > 2**31 and len(first["deliveries"]) == 2
    rest = merchant.get(
        f"/api/v1/webhooks/{endpoint_id}/deliveries", query={"limit": "2", "after": str(first["next_after"])}
    )
    assert rest.status_code == 200, rest.get_json()
    [oldest] = rest.get_json()["deliveries"]
    assert oldest["id"] < first["next_after"] and rest.get_json()["next_after"] is None
    again = merchant.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{oldest['id']}/redeliver", {})
    assert again.status_code == 200 and again.get_json()["delivery"]["status"] == "pending"
    send_all(app, clock)
    assert [request.payload["data"]["link"] for request in hooks.at(PATH)] == ["big-0"]
    portal = app.url_map.bind("localhost")
    path = f"/admin/programs/{merchant.program.id}/webhooks/{endpoint_id}/deliveries/{oldest['id']}/redeliver"
    assert portal.match(path, method="POST")[0] == "admin_webhooks.redeliver", "the portal's button takes it too"
