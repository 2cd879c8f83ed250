"""The portal's webhook and postback pages: what admins and affiliates can set, and what they cannot."""

from __future__ import annotations

from sqlalchemy import select

from affiliate import outbound
from affiliate.extensions import db
from affiliate.models import AuditLog, Delivery, Postback, Program, User, WebhookEndpoint, utcnow
from affiliate.services import webhooks
from tests.factories import Auth, csrf_token, make_admin, make_affiliate, make_program


def signed_in(app, user):
    client = app.test_client()
    Auth(client).login(user.email)
    return client


def post_form(client, page: str, path: str, data: dict):
    return client.post(path, data={**data, "csrf_token": csrf_token(client.get(page).get_data(as_text=True))})


def endpoints(app) -> list[WebhookEndpoint]:
    with app.app_context():
        found = db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
        db.session.expunge_all()
        return found


def test_an_admin_adds_an_endpoint_sees_its_secret_rotates_and_turns_it_off(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    client = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/webhooks/"
    added = post_form(
        client,
        page,
        page,
        {
            "url": "https://hooks.example.com/clicktrail",
            "description": "CRM",
            "events": ["conversion.created", "payout.paid"],
        },
    )
    assert added.status_code == 302
    [endpoint] = endpoints(app)
    assert endpoint.events == "conversion.created payout.paid" and endpoint.secret.startswith("whsec_")
    shown = client.get(added.headers["Location"]).get_data(as_text=True)
    assert endpoint.secret in shown and "Delivery log" in shown
    show = f"{page}{endpoint.id}"
    assert post_form(client, show, f"{show}/rotate", {}).status_code == 302
    [rotated] = endpoints(app)
    assert rotated.secret != endpoint.secret and rotated.previous_secret == endpoint.secret
    assert "previous secret also signs" in client.get(show).get_data(as_text=True)
    assert post_form(client, show, f"{show}/enabled/off", {}).status_code == 302
    [off] = endpoints(app)
    assert not off.enabled
    with app.app_context():
        assert webhooks.emit(db.session, program.id, "payout.paid", {"id": 1}, now=utcnow()) == 0, "off: nothing sent"
        actions = db.session.scalars(select(AuditLog.action).where(AuditLog.subject_type == "webhook_endpoint")).all()
    assert actions == ["webhook.created", "webhook.secret_rotated", "webhook.disabled"]


def test_unsafe_or_malformed_endpoints_are_form_errors_and_change_nothing(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    client = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/webhooks/"
    for url in (
        "http://hooks.example.com/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/hook",
        "https://user:pass@hooks.example.com/",
        "ftp://hooks.example.com/",
        "not a url",
        "https://[::ffff:10.0.0.1]/",
    ):
        refused = post_form(client, page, page, {"url": url, "events": ["*"]})
        assert refused.status_code == 200 and 'class="flash flash-error"' in refused.get_data(as_text=True), url
    unknown = post_form(client, page, page, {"url": "https://hooks.example.com/", "events": ["no.such.event"]})
    assert unknown.status_code == 200
    assert endpoints(app) == []


def test_an_endpoint_of_another_program_is_not_found(app):
    admin = make_admin(app)
    mine, theirs = make_program(app, admin), make_program(app, admin)
    with app.app_context():
        settings = webhooks.EndpointSettings("https://hooks.example.com/", ("*",))
        endpoint = webhooks.create_endpoint(
            db.session,
            db.session.get(Program, theirs.id),
            settings,
            actor=db.session.get(User, admin.id),
            now=utcnow(),
            check_url=outbound.check_url,
        )
        db.session.commit()
        endpoint_id = endpoint.id
    client = signed_in(app, admin)
    assert client.get(f"/admin/programs/{mine.id}/webhooks/{endpoint_id}").status_code == 404
    assert client.get(f"/admin/programs/{theirs.id}/webhooks/{endpoint_id}").status_code == 200


def test_an_affiliate_sets_a_postback_for_their_program_and_nobody_else_can_delete_it(app):
    admin = make_admin(app)
    program = make_program(app, admin, name="Tea Shop")
    alice, bob = make_affiliate(app), make_affiliate(app)
    client = signed_in(app, alice)
    page = "/partner/postbacks/"
    added = post_form(
        client,
        page,
        page,
        {
            "program": str(program.id),
            "method": "GET",
            "url_template": "https://track.example.net/pb?cid={sub1}&payout={commission}",
            "events": ["conversion.recorded", "conversion.approved"],
        },
    )
    assert added.status_code == 302
    with app.app_context():
        [postback] = db.session.scalars(select(Postback)).all()
        assert postback.affiliate_id == alice.id and postback.events == "conversion.approved conversion.recorded"
        postback_id = postback.id
    refused_templates = (
        "https://{sub1}.example.net/pb",
        "https://track.example.net/pb?x={password}",
        "http://track.example.net/pb",
        "https://10.1.2.3/pb",
        "https://track.example.net:99999/",
    )
    for template in refused_templates:
        form = {
            "program": str(program.id),
            "method": "GET",
            "url_template": template,
            "events": ["conversion.recorded"],
        }
        refused = post_form(client, page, page, form)
        assert refused.status_code == 422, template
    other = signed_in(app, bob)
    assert "track.example.net" not in other.get(page).get_data(as_text=True)
    assert post_form(other, page, f"/partner/postbacks/{postback_id}/delete", {}).status_code == 404
    assert post_form(client, page, f"/partner/postbacks/{postback_id}/delete", {}).status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Postback)).all() == [] and db.session.scalars(select(Delivery)).all() == []
