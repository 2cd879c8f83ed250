"""Recruiters: applying through a recruiter's link, what the recruiter sees, and admins changing it."""

from __future__ import annotations

import html
import json

from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import AuditLog, User, utcnow
from affiliate.services import accrual
from tests.factories import PASSWORD, Auth, make_admin, make_affiliate, make_finance, make_program, make_user
from tests.money.test_accrual import report, set_plan

APPLICATION = {
    "name": "Rae Recruit",
    "email": "rae@example.com",
    "password": PASSWORD,
    "confirm": PASSWORD,
    "website": "",
    "promotion": "A cooking channel",
}


def applicant(app) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "rae@example.com"))
        db.session.expunge(user)
        return user


def recruit_of(app, recruiter: User, **fields) -> User:
    """A new active affiliate recruited by ``recruiter``."""
    recruit = make_affiliate(app, **fields)
    with app.app_context():
        db.session.get(User, recruit.id).referred_by_id = recruiter.id
        db.session.commit()
    return recruit


def signed_in(app, user) -> Auth:
    auth = Auth(app.test_client())
    auth.login(user.email)
    return auth


def test_an_affiliate_who_applies_through_a_recruiting_link_is_that_partners_recruit(app, client, auth):
    recruiter = make_affiliate(app, name="Rita Recruiter")
    page = client.get(f"/apply?ref={recruiter.referral_code.lower()}").get_data(as_text=True)
    assert "Rita Recruiter invited you" in page
    assert auth.post(f"/apply?ref={recruiter.referral_code}", APPLICATION).status_code == 302
    assert applicant(app).referred_by_id == recruiter.id


def test_codes_that_are_unknown_malformed_or_a_members_recruit_nobody(app, auth):
    member = make_user(app, role="member")
    for n, ref in enumerate(("ZZZZZZZZZZ", "<script>", "x" * 500, member.referral_code)):
        response = auth.post(f"/apply?ref={ref}", {**APPLICATION, "email": f"r{n}@example.com"})
        assert response.status_code == 302, ref
        auth.logout()
    with app.app_context():
        applied = db.session.scalars(select(User).where(User.email.like("r%@example.com"))).all()
        assert len(applied) == 4 and all(user.referred_by_id is None for user in applied)


def test_the_recruiter_sees_recruits_and_the_second_tier_they_earned(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=2_000, second_tier_bps=1_000)
    recruiter = make_affiliate(app)
    recruit = recruit_of(app, recruiter, name="Sam Seller")
    make_affiliate(app, name="Someone Else's")
    report(app, program, recruit.id, "o-1", 12_500)
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
    page = signed_in(app, recruiter).client.get("/partner/recruits").get_data(as_text=True)
    assert "Sam Seller" in page and "Someone Else" not in page
    assert "$2.50" in page and "$25.00" not in page, "10% of the recruit's 20% of 125.00, not the recruit's own"
    assert f"/apply?ref={recruiter.referral_code}" in html.unescape(page)


def test_a_recruiter_removed_from_a_program_earns_no_second_tier_in_it(app):
    """Removal stops every earning in the program, the second tier from recruits included; in another program the
    recruiter still promotes, it is still paid."""
    from sqlalchemy import func

    from affiliate.models import Commission, Program
    from affiliate.services.enrollment import decide

    admin = make_admin(app)
    left, kept = make_program(app, admin), make_program(app, admin)
    for program in (left, kept):
        set_plan(app, program.id, percent_bps=2_000, second_tier_bps=1_000)
    recruiter = make_affiliate(app)
    recruit = recruit_of(app, recruiter)
    with app.app_context():
        decide(db.session, db.session.get(Program, left.id), recruiter.id, "remove", actor_id=admin.id,
               reason="Spam", now=utcnow())  # fmt: skip
        db.session.commit()
    report(app, left, recruit.id, "o-left", 10_000)
    report(app, kept, recruit.id, "o-kept", 10_000)
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
        tiers = db.session.execute(
            select(Commission.program_id, func.count())
            .where(Commission.affiliate_id == recruiter.id, Commission.kind == "second_tier")
            .group_by(Commission.program_id)
        ).all()
    assert dict(tiers) == {kept.id: 1}


def test_a_recruiter_who_never_joined_a_program_by_application_still_earns_the_second_tier_in_it(app):
    """Only a removal takes the second tier away: a recruiter need not promote the program their recruit does."""
    from affiliate.models import Commission, Enrollment

    program = make_program(app, make_admin(app), enrollment="application")
    set_plan(app, program.id, percent_bps=2_000, second_tier_bps=1_000)
    recruiter = make_affiliate(app)
    recruit = recruit_of(app, recruiter)
    with app.app_context():
        db.session.add(Enrollment(program_id=program.id, affiliate_id=recruit.id, status="active"))
        db.session.commit()
    report(app, program, recruit.id, "o-1", 10_000)
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
        tier = db.session.scalar(
            select(Commission.amount_cents).where(
                Commission.affiliate_id == recruiter.id, Commission.kind == "second_tier"
            )
        )
    assert tier == 200, "10% of the recruit's 20% of 100.00"


def test_admins_change_a_recruiter_audited_and_bad_codes_change_nothing(app):
    admin = make_admin(app)
    rita = make_affiliate(app, name="Rita")
    sam = recruit_of(app, rita, name="Sam")
    other = make_affiliate(app, name="Olga")
    auth = signed_in(app, admin)
    page = f"/admin/affiliates/{sam.id}"
    for code, error in [
        (sam.referral_code, "cannot recruit themselves"),
        ("ZZZZZZZZZZ", "No affiliate has that referral code"),
        ("not a code", "10 letters and digits"),
        ("A\x00", "must not contain NUL bytes"),
    ]:
        answer = auth.post(f"{page}/recruiter", {"code": code}, token_from=page)
        assert answer.status_code == 303
        assert error in html.unescape(auth.client.get(page).get_data(as_text=True)), code
    # Rita was recruited by nobody; Sam cannot become his own recruiter's recruiter.
    answer = auth.post(
        f"/admin/affiliates/{rita.id}/recruiter", {"code": sam.referral_code}, token_from=f"/admin/affiliates/{rita.id}"
    )
    assert "cannot recruit each other" in html.unescape(auth.client.get(f"/admin/affiliates/{rita.id}").get_data(True))
    with app.app_context():
        assert db.session.get(User, sam.id).referred_by_id == rita.id
        assert db.session.get(User, rita.id).referred_by_id is None

    assert auth.post(f"{page}/recruiter", {"code": other.referral_code.lower()}, token_from=page).status_code == 303
    assert auth.post(f"{page}/recruiter", {"code": ""}, token_from=page).status_code == 303
    with app.app_context():
        assert db.session.get(User, sam.id).referred_by_id is None
        changes = db.session.scalars(
            select(AuditLog).where(AuditLog.action == "affiliate.recruiter_changed").order_by(AuditLog.id)
        ).all()
        assert [(json.loads(e.before), json.loads(e.after), e.actor_id) for e in changes] == [
            ({"recruiter_id": rita.id}, {"recruiter_id": other.id}, admin.id),
            ({"recruiter_id": other.id}, {"recruiter_id": None}, admin.id),
        ]
    assert "affiliate.recruiter_changed" in auth.client.get(page).get_data(as_text=True)


def test_finance_sees_the_recruiter_but_cannot_change_it(app):
    rita = make_affiliate(app, name="Rita")
    sam = recruit_of(app, rita, name="Sam")
    auth = signed_in(app, make_finance(app))
    page = auth.client.get(f"/admin/affiliates/{sam.id}").get_data(as_text=True)
    assert "Recruited by" in page and "Save recruiter" not in page
    answer = auth.post(f"/admin/affiliates/{sam.id}/recruiter", {"code": ""}, token_from=f"/admin/affiliates/{sam.id}")
    assert answer.status_code == 403
    with app.app_context():
        assert db.session.get(User, sam.id).referred_by_id == rita.id


def test_a_member_referred_by_an_affiliate_earns_their_referrer_no_second_tier(app):
    """Members refer friends, not partners: whoever referred a member earns no second tier of what the member's
    own referrals earn them (the recruits page, which lists affiliates only, would never show it either)."""
    from affiliate.models import Commission

    program = make_program(app, make_admin(app))
    set_plan(app, program.id, flat_cents=300, second_tier_bps=1_000)
    ann = make_affiliate(app)
    mia = make_user(app, role="member")
    with app.app_context():
        db.session.get(User, mia.id).referred_by_id = ann.id
        db.session.commit()
    report(app, program, mia.id, "friend-signs-up", 0, type="signup")
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()
        earned = db.session.execute(select(Commission.affiliate_id, Commission.kind)).all()
    assert [tuple(row) for row in earned] == [(mia.id, "earning")]
