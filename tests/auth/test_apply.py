"""Applying as an affiliate, being decided on, and what each status may see."""

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import AuditLog, User
from tests.factories import PASSWORD, make_admin, make_affiliate

APPLICATION = {
    "name": "Pat Partner",
    "email": "Pat@Example.com",
    "password": PASSWORD,
    "confirm": PASSWORD,
    "website": "https://pat.example.com",
    "promotion": "Newsletter with 10k readers",
}


def test_apply_creates_pending_affiliate_who_cannot_use_partner_pages(app, client, auth):
    response = auth.post("/apply", APPLICATION)
    assert response.status_code == 302
    page = client.get("/account/").get_data(as_text=True)
    assert "being reviewed" in page
    partner = client.get("/partner/")
    assert partner.status_code == 403
    assert "being reviewed" in partner.get_data(as_text=True)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "pat@example.com"))
        assert (user.role, user.status) == ("affiliate", "pending")
        assert user.website == "https://pat.example.com/"
        assert len(user.referral_code) == 10


def test_approved_affiliate_reaches_partner_home(app, client, auth):
    auth.post("/apply", APPLICATION)
    auth.logout()
    admin = make_admin(app)
    with app.app_context():
        pat = db.session.scalar(select(User).where(User.email == "pat@example.com"))
    auth.login(admin.email)
    response = auth.post(
        f"/admin/affiliates/{pat.id}/decision", {"action": "approve"}, token_from=f"/admin/affiliates/{pat.id}"
    )
    assert response.status_code == 303
    auth.logout()
    auth.login("pat@example.com")
    home = client.get("/partner/")
    assert home.status_code == 200
    assert '<h2 id="programs">Programs</h2>' in home.get_data(as_text=True)
    with app.app_context():
        log = db.session.scalars(select(AuditLog).where(AuditLog.subject_id == pat.id)).all()
        assert [(e.action, e.actor_id) for e in log] == [("affiliate.approve", admin.id)]


def test_application_errors_are_form_errors_and_create_nothing(app, client, auth):
    bad = [
        {"email": "not-an-email"},
        {"password": "short", "confirm": "short"},
        {"confirm": "something else entirely"},
        {"website": "javascript:alert(1)"},
        {"name": ""},
        {"name": "x" * 500},
    ]
    for change in bad:
        response = auth.post("/apply", {**APPLICATION, **change})
        assert response.status_code == 200, change
        assert 'class="errors"' in response.get_data(as_text=True), change
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "pat@example.com")) is None


def test_email_already_used_is_refused(app, auth):
    make_affiliate(app, email="pat@example.com")
    response = auth.post("/apply", APPLICATION)
    assert response.status_code == 200
    assert "already exists" in response.get_data(as_text=True)


def test_suspended_affiliate_sees_reason_not_partner_pages(app, client, auth):
    admin = make_admin(app)
    alice = make_affiliate(app)
    auth.login(admin.email)
    path = f"/admin/affiliates/{alice.id}/decision"
    refused = auth.post(path, {"action": "suspend", "reason": ""}, token_from=f"/admin/affiliates/{alice.id}")
    assert refused.status_code == 303
    with app.app_context():
        assert db.session.get(User, alice.id).status == "active"
    auth.post(
        path, {"action": "suspend", "reason": "Bidding on our brand name"}, token_from=f"/admin/affiliates/{alice.id}"
    )
    auth.logout()
    auth.login(alice.email)
    response = client.get("/partner/")
    assert response.status_code == 403
    assert "Bidding on our brand name" in response.get_data(as_text=True)


def test_transitions_out_of_order_are_refused(app, client, auth):
    admin = make_admin(app)
    pending = make_affiliate(app, status="pending")
    auth.login(admin.email)
    show = f"/admin/affiliates/{pending.id}"
    for action in ("suspend", "reactivate", "bogus"):
        auth.post(f"{show}/decision", {"action": action, "reason": "x"}, token_from=show)
        with app.app_context():
            assert db.session.get(User, pending.id).status == "pending", action
    auth.post(f"{show}/decision", {"action": "reject", "reason": "Not a fit"}, token_from=show)
    with app.app_context():
        user = db.session.get(User, pending.id)
        assert (user.status, user.status_reason) == ("rejected", "Not a fit")
