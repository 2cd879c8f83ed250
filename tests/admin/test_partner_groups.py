"""Partner groups: each with its own plan; an affiliate's override beats their group, their group beats the program."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import AuditLog, Commission, GroupMembership, PartnerGroup, utcnow
from affiliate.services import accrual
from tests.admin.test_plan_editor import PLAN
from tests.factories import make_admin, make_affiliate, make_program, make_user
from tests.money.test_accrual import report

FLAT = {**PLAN, "tiers-0-threshold": "", "tiers-0-percent": "", "tiers-0-flat": "", "save": "Save"}


def earned(app, conversion_id: int) -> int:
    with app.app_context():
        return sum(db.session.scalars(select(Commission.amount_cents).where(Commission.conversion_id == conversion_id)))


def test_groups_pay_by_their_own_plans_in_order_of_precedence(app, auth):
    admin = make_admin(app)
    auth.login(admin.email)
    program = make_program(app, admin, hold_days=0)
    alice, bob, carol = make_affiliate(app), make_affiliate(app), make_affiliate(app)
    base = f"/admin/programs/{program.id}"
    assert auth.post(f"{base}/plan/", {**FLAT, "percent": "10"}).status_code == 302
    created = auth.post(f"{base}/groups/new", {"name": "  VIP  "}, token_from=f"{base}/groups/")
    assert created.status_code == 302
    with app.app_context():
        vip = db.session.scalar(select(PartnerGroup).where(PartnerGroup.name == "VIP"))
    page = auth.client.get(f"{base}/groups/").get_data(as_text=True)
    assert "VIP" in page and "10% of each sale" in page
    assert auth.post(f"{base}/plan/?group={vip.id}", {**FLAT, "percent": "25"}).status_code == 302
    moved = auth.post(
        f"{base}/groups/move", {"ids": [bob.id, carol.id], "group": str(vip.id)}, token_from=f"{base}/groups/"
    )
    assert moved.status_code == 302
    assert auth.post(f"{base}/plan/?affiliate={carol.id}", {**FLAT, "percent": "40"}).status_code == 302
    sales = {who.email: report(app, program, who.id, f"o-{who.id}", 10_000) for who in (alice, bob, carol)}
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
    assert [earned(app, sales[who.email]) for who in (alice, bob, carol)] == [1_000, 2_500, 4_000]
    # Each commission says which plan version and whose plan paid it, on the conversion's page.
    pages = {
        who.email: auth.client.get(f"/admin/conversions/{sales[who.email]}").get_data(as_text=True)
        for who in (alice, bob, carol)
    }
    assert re.search(r"10.00% of the sale \(plan version \d+, default group\)", html.unescape(pages[alice.email]))
    assert re.search(r"25.00% of the sale \(plan version \d+, group VIP\)", html.unescape(pages[bob.email]))
    assert re.search(
        r"40.00% of the sale \(plan version \d+, the affiliate's own plan\)", html.unescape(pages[carol.email])
    )
    listing = auth.client.get(f"{base}/groups/").get_data(as_text=True)
    assert "25% of each sale" in listing
    with app.app_context():
        assert len(db.session.scalars(select(AuditLog).where(AuditLog.action == "group.moved")).all()) == 2


def test_moving_back_to_the_default_group_and_refusals(app, auth):
    admin = make_admin(app)
    auth.login(admin.email)
    program, other = make_program(app, admin), make_program(app, admin, name="Other")
    alice = make_affiliate(app)
    base = f"/admin/programs/{program.id}"
    auth.post(f"{base}/groups/new", {"name": "VIP"}, token_from=f"{base}/groups/")
    auth.post(
        f"/admin/programs/{other.id}/groups/new",
        {"name": "Elsewhere"},
        token_from=f"/admin/programs/{other.id}/groups/",
    )
    with app.app_context():
        vip, elsewhere = (
            db.session.scalar(select(PartnerGroup.id).where(PartnerGroup.name == n)) for n in ("VIP", "Elsewhere")
        )
    duplicate = auth.post(f"{base}/groups/new", {"name": "vip"}, token_from=f"{base}/groups/")
    assert "already has a group called vip" in auth.client.get(duplicate.headers["Location"]).get_data(as_text=True)
    for bad in (
        {"ids": [alice.id], "group": str(elsewhere)},
        {"ids": [admin.id], "group": str(vip)},
        {"ids": [alice.id], "group": "99999999999999999999"},
        {"group": str(vip)},
        {"ids": ["\u00b2"], "group": str(vip)},
        {"ids": [alice.id], "group": "\u00b2"},
    ):
        auth.post(f"{base}/groups/move", bad, token_from=f"{base}/groups/")
        with app.app_context():
            assert db.session.scalars(select(GroupMembership)).all() == []
    auth.post(f"{base}/groups/move", {"ids": [alice.id], "group": str(vip)}, token_from=f"{base}/groups/")
    auth.post(f"{base}/groups/move", {"ids": [alice.id], "group": "default"}, token_from=f"{base}/groups/")
    with app.app_context():
        assert db.session.scalars(select(GroupMembership)).all() == []
    assert auth.client.get(f"{base}/plan/?group={elsewhere}").status_code == 404
    assert auth.client.get(f"{base}/plan/?affiliate={admin.id}").status_code == 404
    assert auth.client.get(f"{base}/plan/?group=99999999999999999999").status_code == 404
    member = make_user(app, role="member")
    assert auth.client.get(f"{base}/plan/?affiliate={member.id}").status_code == 404
