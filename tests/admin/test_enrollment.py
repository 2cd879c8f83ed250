"""Enrollment: open programs, applications an admin decides, private programs joined by invitation, removals."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select, update

from affiliate.extensions import db
from affiliate.models import GroupMembership, Link, PartnerGroup, Program, User, utcnow
from affiliate.services.enrollment import INVITE_SALT
from tests.factories import Auth, make_admin, make_affiliate, make_program


class SignedIn1970(TimestampSigner):
    """Signs as if in 1970: an invitation long past any validity."""

    def get_timestamp(self) -> int:
        return 0


LINK = {"campaign": "", "sub1": "", "sub2": "", "sub3": "", "sub4": "", "sub5": "", "deep_link": ""}


def policy(app, program, value: str) -> None:
    with app.app_context():
        db.session.execute(update(Program).where(Program.id == program.id).values(enrollment=value))
        db.session.commit()


def links_of(app, affiliate) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Link).where(Link.affiliate_id == affiliate.id)).all())


def signed_in(app, user) -> Auth:
    auth = Auth(app.test_client())
    auth.login(user.email)
    return auth


def create_link(auth: Auth, program) -> int:
    return auth.post("/partner/links/new", {**LINK, "program_id": program.id}).status_code


def test_applications_are_decided_by_an_admin_with_reasons_the_affiliate_sees(app):
    admin = make_admin(app)
    program = make_program(app, admin, name="Apply Here")
    policy(app, program, "application")
    alice, bob = make_affiliate(app), make_affiliate(app)
    staff, a, b = signed_in(app, admin), signed_in(app, alice), signed_in(app, bob)
    assert "Apply" in a.client.get("/partner/").get_data(as_text=True)
    assert create_link(a, program) == 200 and links_of(app, alice) == 0, "not enrolled: a form error"
    for auth in (a, b):
        auth.post(f"/partner/programs/{program.id}/apply", {}, token_from="/partner/")
    again = a.post(f"/partner/programs/{program.id}/apply", {}, token_from="/partner/")
    assert "already applied" in a.client.get(again.headers["Location"]).get_data(as_text=True)
    assert "Application pending" in a.client.get("/partner/").get_data(as_text=True)
    page = f"/admin/programs/{program.id}/enrollment/"
    assert alice.email in staff.client.get(page).get_data(as_text=True)
    staff.post(f"{page}decide", {"affiliate": alice.id, "decision": "approve"}, token_from=page)
    unexplained = staff.post(f"{page}decide", {"affiliate": bob.id, "decision": "reject"}, token_from=page)
    assert "Say why" in staff.client.get(unexplained.headers["Location"]).get_data(as_text=True)
    staff.post(
        f"{page}decide", {"affiliate": bob.id, "decision": "reject", "reason": "Coupon sites only"}, token_from=page
    )
    assert create_link(a, program) == 302 and links_of(app, alice) == 1
    home = b.client.get("/partner/").get_data(as_text=True)
    assert "Not accepted" in home and "Coupon sites only" in home
    assert create_link(b, program) == 200 and links_of(app, bob) == 0


def test_private_programs_are_joined_by_a_signed_expiring_invitation_into_a_group(app):
    admin = make_admin(app)
    program = make_program(app, admin, name="Secret")
    policy(app, program, "private")
    alice = make_affiliate(app)
    staff, a = signed_in(app, admin), signed_in(app, alice)
    assert "Secret" not in a.client.get("/partner/").get_data(as_text=True)
    assert create_link(a, program) == 200 and links_of(app, alice) == 0
    staff.post(
        f"/admin/programs/{program.id}/groups/new", {"name": "VIP"}, token_from=f"/admin/programs/{program.id}/groups/"
    )
    with app.app_context():
        vip = db.session.scalar(select(PartnerGroup.id))
    page = f"/admin/programs/{program.id}/enrollment/"
    answer = staff.post(f"{page}invite", {"group": str(vip)}, token_from=page).get_data(as_text=True)
    link = re.search(r'<code id="invitation">([^<]+)</code>', answer).group(1)
    assert link.startswith(app.config["PUBLIC_BASE_URL"].rstrip("/") + "/"), "the public address, not the Host header"
    path = urlsplit(link).path
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert "not valid" in a.client.get(a.post(tampered, {}, token_from=tampered).headers["Location"]).get_data(
        as_text=True
    )
    with app.app_context():
        old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=INVITE_SALT, signer=SignedIn1970)
        expired = f"/partner/join/{old.dumps({'p': program.id, 'g': vip})}"
    assert "expired" in a.client.get(a.post(expired, {}, token_from=expired).headers["Location"]).get_data(as_text=True)
    assert links_of(app, alice) == 0
    joined = a.post(path, {}, token_from=path)
    assert "You joined Secret in the VIP group" in a.client.get(joined.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert (
            db.session.scalar(select(GroupMembership.group_id).where(GroupMembership.affiliate_id == alice.id)) == vip
        )
    assert create_link(a, program) == 302 and links_of(app, alice) == 1
    again = a.post(path, {}, token_from=path)
    assert "already in Secret" in a.client.get(again.headers["Location"]).get_data(as_text=True)


def test_an_invitation_passed_on_does_not_overturn_a_refusal_or_an_admins_group_move(app):
    from affiliate.services import enrollment, groups

    admin = make_admin(app)
    program = make_program(app, admin, name="Picky")
    policy(app, program, "application")
    carol, alice = make_affiliate(app), make_affiliate(app)
    with app.app_context():
        shop = db.session.get(Program, program.id)
        vip = groups.create_group(db.session, shop.id, "VIP", actor_id=admin.id, now=utcnow())
        enrollment.apply(db.session, shop, db.session.get(User, carol.id), now=utcnow())
        enrollment.decide(db.session, shop, carol.id, "reject", actor_id=admin.id, reason="No", now=utcnow())
        db.session.commit()
        token = enrollment.invitation(app.config["SECRET_KEY"], shop, vip.id)
        vip_id = vip.id
    path = f"/partner/join/{token}"
    c, a = signed_in(app, carol), signed_in(app, alice)
    assert "not accepted" in c.client.get(c.post(path, {}, token_from=path).headers["Location"]).get_data(as_text=True)
    a.post(path, {}, token_from=path)
    with app.app_context():
        groups.move(db.session, program.id, [alice.id], None, actor_id=admin.id, now=utcnow())
        db.session.commit()
    a.post(path, {}, token_from=path)
    with app.app_context():
        moved = db.session.scalar(select(GroupMembership.group_id).where(GroupMembership.affiliate_id == alice.id))
        assert moved != vip_id, "the admin's move stands"


def test_an_affiliate_removed_from_an_open_program_cannot_create_links_for_it(app):
    admin = make_admin(app)
    program = make_program(app, admin, name="Open One")
    alice = make_affiliate(app)
    staff, a = signed_in(app, admin), signed_in(app, alice)
    assert create_link(a, program) == 302
    page = f"/admin/programs/{program.id}/enrollment/"
    staff.post(
        f"{page}decide", {"affiliate": alice.id, "decision": "remove", "reason": "Trademark bidding"}, token_from=page
    )
    home = a.client.get("/partner/").get_data(as_text=True)
    assert "Removed" in home and "Trademark bidding" in home
    links = a.client.get("/partner/links/").get_data(as_text=True)
    assert "not earning" in links and "removed from the program" in links, "not shown as active"
    assert create_link(a, program) == 200 and links_of(app, alice) == 1
    staff.post(f"{page}decide", {"affiliate": alice.id, "decision": "approve"}, token_from=page)
    assert create_link(a, program) == 302 and links_of(app, alice) == 2


def test_an_application_sent_twice_at_once_is_one_application_and_no_error(app, database_uri):
    """A double click on Apply: the two requests take turns on the program, and the second is told it is done."""
    import threading

    from affiliate.models import Enrollment
    from tests.factories import csrf_token

    admin = make_admin(app)
    program = make_program(app, admin, name="Twice")
    policy(app, program, "application")
    for round_ in range(3):
        alice = make_affiliate(app)
        clients = [app.test_client() for _ in range(2)]
        tokens = []
        for client in clients:
            Auth(client).login(alice.email)
            tokens.append(csrf_token(client.get("/partner/").get_data(as_text=True)))
        start, answers = threading.Barrier(2), []

        def apply(client, token, start=start, answers=answers) -> None:
            start.wait(10)
            try:
                answers.append(
                    client.post(f"/partner/programs/{program.id}/apply", data={"csrf_token": token}).status_code
                )
            except Exception as error:  # the test app propagates errors: a 500 in production
                answers.append(repr(error))

        threads = [threading.Thread(target=apply, args=pair) for pair in zip(clients, tokens, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers == [302, 302], (round_, answers)
        with app.app_context():
            rows = db.session.scalars(select(Enrollment).where(Enrollment.affiliate_id == alice.id)).all()
        assert len(rows) == 1


def test_affiliates_promoting_an_open_program_are_kept_on_when_it_stops_being_open(app, redirector):
    """Switching an open program to applications (or invitations) must not silently stop its promoters earning:
    those with a link in it are enrolled, and their clicks go on counting; newcomers must apply."""
    from affiliate.models import Click, Enrollment
    from tests.admin.test_programs import VALID
    from tests.api.helpers import click
    from tests.factories import Visitor, make_link

    admin = make_admin(app)
    program = make_program(app, admin, name="Open Shop")
    promoter, _newcomer = make_affiliate(app), make_affiliate(app)
    link = make_link(app, promoter, program)
    auth = signed_in(app, admin)
    settings = {**VALID, "name": "Open Shop", "currency": "USD", "minimum_payout": "50.00"}
    assert auth.post(f"/admin/programs/{program.id}/edit", {**settings, "enrollment": "application"}).status_code == 302
    with app.app_context():
        statuses = dict(db.session.execute(select(Enrollment.affiliate_id, Enrollment.status)).all())
    assert statuses == {promoter.id: "active"}, "the promoter is kept on; the newcomer was never promoting it"
    click(Visitor(redirector), link.code)
    redirector.recorder.flush()
    with app.app_context():
        verdicts = db.session.execute(select(Click.fraud_action, Click.fraud_reasons)).all()
        assert [tuple(verdict) for verdict in verdicts] == [(None, None)], "the promoter's click counts: no rule fired"
