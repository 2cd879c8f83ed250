"""The coupon and Stripe pages: what an admin and an affiliate can do there, and what is refused."""

from __future__ import annotations

from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import AuditLog, Coupon, GroupMembership, PartnerGroup, Program, utcnow
from tests.factories import make_admin, make_affiliate, make_program
from tests.webhooks.test_pages import post_form, signed_in


def all_coupons(app) -> list[tuple[str, int, str]]:
    with app.app_context():
        return [(c.code, c.affiliate_id, c.status) for c in db.session.scalars(select(Coupon).order_by(Coupon.id))]


def test_an_affiliate_asks_for_a_code_and_an_admin_approves_then_retires_it(app):
    admin = make_admin(app)
    program = make_program(app, admin, name="Tea Shop")
    alice = make_affiliate(app, name="Alice")
    affiliate = signed_in(app, alice)
    page = "/partner/coupons/"
    asked = post_form(affiliate, page, page, {"program": str(program.id), "code": "Tea20"})
    assert asked.status_code == 302
    assert all_coupons(app) == [("Tea20", alice.id, "requested")]
    assert "waiting for approval" in affiliate.get("/partner/coupons/").get_data(as_text=True)

    staff = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/coupons/"
    with app.app_context():
        coupon_id = db.session.scalar(select(Coupon.id))
    assert post_form(staff, page, f"{page}{coupon_id}/approve", {}).status_code == 302
    assert all_coupons(app) == [("Tea20", alice.id, "active")]
    assert post_form(staff, page, f"{page}{coupon_id}/retire", {}).status_code == 302
    assert all_coupons(app) == [("Tea20", alice.id, "retired")]
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.action).where(AuditLog.subject_type == "coupon")).all()
    assert actions == ["coupon.requested", "coupon.approved", "coupon.retired"]


def test_a_taken_code_or_a_malformed_one_is_a_form_error_and_changes_nothing(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    alice, bob = make_affiliate(app, name="Alice"), make_affiliate(app, name="Bob")
    staff = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/coupons/"
    made = post_form(staff, page, page, {"affiliate_id": str(alice.id), "code": "SPRING", "discount_text": "10% off"})
    assert made.status_code == 302
    for code in ("spring", "a b", "x", "<b>hi</b>"):
        refused = post_form(staff, page, page, {"affiliate_id": str(bob.id), "code": code})
        assert refused.status_code == 422 and 'class="flash flash-error"' in refused.get_data(as_text=True), code
    refused = post_form(staff, page, page, {"affiliate_id": str(bob.id), "code": "BOB1", "stripe_promotion_code": "x"})
    assert refused.status_code == 422
    refused = post_form(staff, page, page, {"affiliate_id": str(admin.id), "code": "ADMIN1"})
    assert refused.status_code == 422, "only affiliates who promote the program hold codes"
    assert all_coupons(app) == [("SPRING", alice.id, "active")]


def test_codes_for_every_member_of_a_group(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    ann, ben = make_affiliate(app, name="Ann Lee"), make_affiliate(app, name="Ben")
    with app.app_context():
        group = PartnerGroup(program_id=program.id, name="Podcasters", created_at=utcnow())
        db.session.add(group)
        db.session.flush()
        for person in (ann, ben):
            db.session.add(GroupMembership(program_id=program.id, affiliate_id=person.id, group_id=group.id))
        db.session.commit()
        group_id = group.id
    staff = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/coupons/"
    made = post_form(
        staff,
        page,
        f"{page}for-group",
        {"group-group_id": str(group_id), "group-pattern": "{name}15", "group-discount_text": "15% off"},
    )
    assert made.status_code == 302
    assert sorted(all_coupons(app)) == [("ANNLEE15", ann.id, "active"), ("BEN15", ben.id, "active")]


def test_the_stripe_page_keeps_the_secret_and_shows_only_its_end(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    staff = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/stripe"
    assert "takes no events" in staff.get(page).get_data(as_text=True)
    for bad in ("sk_live_123", "whsec_", "whsec_has space", ""):
        assert post_form(staff, page, page, {"secret": bad}).status_code == 422
    secret = "whsec_abcdefghijklmnopqrstuvwxyz123456"
    assert post_form(staff, page, page, {"secret": secret}).status_code == 302
    shown = staff.get(page).get_data(as_text=True)
    assert "…3456" in shown and secret not in shown and f"/integrations/stripe/{program.id}" in shown
    with app.app_context():
        assert db.session.get(Program, program.id).stripe_webhook_secret == secret
        assert secret not in "".join(db.session.scalars(select(AuditLog.after)).all() or [""])
    assert post_form(staff, page, f"{page}/forget", {}).status_code == 302
    with app.app_context():
        assert db.session.get(Program, program.id).stripe_webhook_secret is None
        assert (
            db.session.scalar(
                select(func.count()).select_from(AuditLog).where(AuditLog.action.like("program.stripe_secret%"))
            )
            == 2
        )


def test_an_admin_maps_a_code_to_its_stripe_promotion_code_and_a_malformed_one_changes_nothing(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    alice = make_affiliate(app, name="Alice")
    staff = signed_in(app, admin)
    page = f"/admin/programs/{program.id}/coupons/"
    post_form(staff, page, page, {"affiliate_id": str(alice.id), "code": "PODCAST"})
    with app.app_context():
        coupon_id = db.session.scalar(select(Coupon.id))
    saved = post_form(
        staff, page, f"{page}{coupon_id}", {"discount_text": "20% off", "stripe_promotion_code": "promo_1Ab"}
    )
    assert saved.status_code == 302
    refused = post_form(staff, page, f"{page}{coupon_id}", {"discount_text": "x", "stripe_promotion_code": "coupon 1"})
    assert refused.status_code == 302
    assert "promo_" in staff.get(page).get_data(as_text=True)
    with app.app_context():
        coupon = db.session.get(Coupon, coupon_id)
        assert (coupon.discount_text, coupon.stripe_promotion_code) == ("20% off", "promo_1Ab")
