"""Notifications: each kind reaches its person through real SMTP when its event happens, and nobody else; opt-outs."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import event, select, update

from affiliate import notifications
from affiliate.extensions import db
from affiliate.models import Commission, Conversion, Payout, Program, Role, User, UserStatus, utcnow
from affiliate.money import format_amount
from affiliate.services import accrual, enrollment, review
from affiliate.services.conversions import ConversionRequest, record_conversion
from affiliate.services.payouts import approve_batch, build_batch, mark_failed, mark_paid
from tests.factories import (
    PASSWORD,
    Auth,
    csrf_token,
    make_admin,
    make_affiliate,
    make_finance,
    make_program,
    make_user,
)
from tests.finance.conftest import set_details
from tests.mail.smtp import html_of, text_of
from tests.money.test_accrual import set_plan


def signed_in(app, user: User) -> Auth:
    auth = Auth(app.test_client())
    assert auth.login(user.email).status_code == 302
    return auth


def mails(smtp, deliver) -> list[EmailMessage]:
    """Send the outbox and return what the SMTP server received (each round takes up to 50)."""
    while True:
        sent, failed = deliver()
        assert failed == 0
        if not sent:
            return list(smtp.inbox.messages)


def start_afresh(smtp, deliver) -> None:
    """Deliver what setting the scene caused and forget it, so a test reads only what its event sends."""
    mails(smtp, deliver)
    smtp.inbox.messages.clear()


def of_kind(messages: list[EmailMessage], subject: str) -> dict[str, EmailMessage]:
    """The messages whose subject starts with ``subject``, by recipient; nobody got two."""
    found = [m for m in messages if m["Subject"].startswith(subject)]
    by_address = {m["To"]: m for m in found}
    assert len(by_address) == len(found), f"someone got two: {[m['To'] for m in found]}"
    return by_address


def unsubscribable(message: EmailMessage) -> str:
    """Check the one-click header and the link in the text agree; the unsubscribe URL."""
    url = message["List-Unsubscribe"].strip().strip("<>")
    assert url.startswith("http://portal.test/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Turn them off: {url}" in text_of(message)
    assert url in html_of(message)
    return url


def report(
    app, program: Program, affiliate_id: int, order: str, amount: int, *, status: str = "pending", **fields
) -> int:
    """A sale (unless ``type`` says otherwise) credited to ``affiliate_id``, as attribution would leave it."""
    fields.setdefault("type", "sale")
    with app.app_context():
        reported = ConversionRequest(order_id=order, amount_cents=amount, currency=program.currency, **fields)
        recorded = record_conversion(db.session, db.session.get(Program, program.id), reported, now=utcnow())
        recorded.conversion.affiliate_id, recorded.conversion.status = affiliate_id, status
        db.session.commit()
        return recorded.conversion.id


def accrue(app) -> None:
    with app.app_context():
        accrual.run(db.session, now=utcnow())
        db.session.commit()


def approve_due(app) -> None:
    with app.app_context():
        accrual.approve_due(db.session, now=utcnow())
        db.session.commit()


def commissions_of(app, user: User) -> list[Commission]:
    with app.app_context():
        query = select(Commission).where(Commission.affiliate_id == user.id).order_by(Commission.id)
        rows = db.session.scalars(query).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def test_an_application_is_mailed_to_every_active_admin(app, client, smtp, deliver):
    first, second = make_admin(app), make_admin(app)
    make_admin(app, status=UserStatus.SUSPENDED)
    make_finance(app)
    start_afresh(smtp, deliver)
    form = {
        "name": "Pat Applicant",
        "email": "pat@example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "website": "https://pat-cooks.example",
        "promotion": "Recipes with the tools I use",
        "csrf_token": csrf_token(client.get("/apply").get_data(as_text=True)),
    }
    assert client.post("/apply", data=form).status_code == 302
    with app.app_context():
        pat = db.session.scalar(select(User.id).where(User.email == "pat@example.com"))
    received = mails(smtp, deliver)
    applications = of_kind(received, "New affiliate application: Pat Applicant")
    assert sorted(applications) == sorted([first.email, second.email]), "active admins only"
    text = text_of(applications[first.email])
    assert "pat@example.com" in text and "https://pat-cooks.example" in text and "Recipes with the tools" in text
    assert f"http://portal.test/admin/affiliates/{pat}" in text
    assert f'href="http://portal.test/admin/affiliates/{pat}"' in html_of(applications[first.email])
    unsubscribable(applications[second.email])
    assert [m["Subject"] for m in received if m["To"] == "pat@example.com"] == ["Confirm your email address"]


def test_an_approved_or_declined_application_is_mailed_to_the_applicant_but_a_suspension_is_not(app, smtp, deliver):
    admin = make_admin(app)
    pat = make_affiliate(app, status=UserStatus.PENDING)
    quinn = make_affiliate(app, status=UserStatus.PENDING)
    staff = signed_in(app, admin)
    start_afresh(smtp, deliver)

    def decide(user: User, action: str, reason: str = "") -> None:
        page = f"/admin/affiliates/{user.id}"
        assert staff.post(f"{page}/decision", {"action": action, "reason": reason}, token_from=page).status_code == 303

    decide(pat, "approve")
    decide(quinn, "reject", "We work with cooking sites only")
    decide(pat, "suspend", "Cookie stuffing")
    received = mails(smtp, deliver)
    assert sorted((m["To"], m["Subject"]) for m in received) == sorted(
        [
            (pat.email, "Your Clicktrail application was approved"),
            (quinn.email, "Your Clicktrail application was declined"),
        ]
    )
    approved = next(m for m in received if m["To"] == pat.email)
    assert "approved" in text_of(approved) and "http://portal.test/partner/" in text_of(approved)
    declined = next(m for m in received if m["To"] == quinn.email)
    assert "The reason given: We work with cooking sites only" in text_of(declined)
    assert "We work with cooking sites only" in html_of(declined)
    unsubscribable(approved)
    unsubscribable(declined)


def test_an_affiliate_admitted_to_a_program_or_joining_by_invitation_is_mailed_once(app, smtp, deliver):
    admin = make_admin(app)
    chosen = make_program(app, admin, name="Garden Tools")
    private = make_program(app, admin, name="Secret Seeds")
    with app.app_context():
        db.session.execute(update(Program).where(Program.id == chosen.id).values(enrollment="application"))
        db.session.execute(update(Program).where(Program.id == private.id).values(enrollment="private"))
        db.session.commit()
    alice, bob, carol = make_affiliate(app), make_affiliate(app), make_affiliate(app)
    with app.app_context():
        for person in (alice, bob):
            enrollment.apply(
                db.session, db.session.get(Program, chosen.id), db.session.get(User, person.id), now=utcnow()
            )
        db.session.commit()
        token = enrollment.invitation(app.config["SECRET_KEY"], db.session.get(Program, private.id), None)
    staff = signed_in(app, admin)
    page = f"/admin/programs/{chosen.id}/enrollment/"
    staff.post(f"{page}decide", {"affiliate": alice.id, "decision": "approve"}, token_from=page)
    staff.post(f"{page}decide", {"affiliate": bob.id, "decision": "reject", "reason": "No fit"}, token_from=page)
    joining = signed_in(app, carol)
    joined = joining.post(f"/partner/join/{token}", {}, token_from=f"/partner/join/{token}")
    assert joined.status_code == 302
    joining.post(f"/partner/join/{token}", {}, token_from=f"/partner/join/{token}")  # a second click
    enrolled = of_kind(mails(smtp, deliver), "You are enrolled in")
    assert sorted(enrolled) == sorted([alice.email, carol.email])
    assert enrolled[alice.email]["Subject"] == "You are enrolled in Garden Tools"
    assert f"http://portal.test/partner/links/new?program={chosen.id}" in text_of(enrolled[alice.email])
    assert enrolled[carol.email]["Subject"] == "You are enrolled in Secret Seeds"
    assert f"http://portal.test/partner/links/new?program={private.id}" in text_of(enrolled[carol.email])
    unsubscribable(enrolled[carol.email])


def test_new_commissions_are_mailed_to_their_affiliates_once_per_person_and_sale(app, smtp, deliver):
    admin = make_admin(app)
    program = make_program(app, admin, name="Kitchen Knives")
    set_plan(app, program.id, percent_bps=1_000, second_tier_bps=1_000, bonus_threshold=1, bonus_cents=2_500)
    rita, alice = make_affiliate(app, name="Rita Recruiter"), make_affiliate(app, name="Alice")
    with app.app_context():
        db.session.get(User, alice.id).referred_by_id = rita.id
        db.session.commit()
    report(app, program, alice.id, "order-7731", 12_345)
    start_afresh(smtp, deliver)
    opt_out_reads = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *args) -> None:
        if "notification_opt_outs" in statement:
            opt_out_reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        accrue(app)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(opt_out_reads) == 2, "one read of each person's opt-outs, not one per commission"
    new = of_kind(mails(smtp, deliver), "New commission")
    assert sorted(new) == sorted([alice.email, rita.email])
    earning, bonus = commissions_of(app, alice)
    assert (earning.amount_cents, bonus.amount_cents) == (1_235, 2_500)
    mine = new[alice.email]
    assert mine["Subject"] == "New commissions: $37.35 in Kitchen Knives"
    text = text_of(mine)
    assert "$12.35: commission, for sale order-7731" in text and "$25.00: performance bonus of the month" in text
    assert "Pending until" in text and "http://portal.test/partner/earnings/" in text
    (second_tier,) = commissions_of(app, rita)
    theirs = text_of(new[rita.email])
    assert f"{format_amount(second_tier.amount_cents, 'USD')}: second tier" in theirs
    assert "order-7731" not in theirs, "a recruiter's earnings page does not show the recruit's orders either"
    unsubscribable(mine)


def test_a_members_reward_is_not_mailed_but_the_affiliate_who_referred_them_hears(app, smtp, deliver):
    program = make_program(app, make_admin(app), name="Meal Kits")
    set_plan(app, program.id, referrer_reward_cents=500, referee_reward_cents=300)
    alice = make_affiliate(app)
    friend = make_user(app, role=Role.MEMBER)
    with app.app_context():
        db.session.get(User, friend.id).referred_by_id = alice.id
        db.session.commit()
    report(app, program, alice.id, f"member-{friend.id}", 0, type="signup", customer_user_id=friend.id)
    start_afresh(smtp, deliver)
    accrue(app)
    assert [c.amount_cents for c in commissions_of(app, friend)] == [300]
    received = mails(smtp, deliver)
    assert [(m["To"], m["Subject"]) for m in received] == [(alice.email, "New commission: $5.00 in Meal Kits")]
    assert "$5.00: reward for referring a new member" in text_of(received[0])


def test_commissions_approved_by_rule_are_mailed_once_per_affiliate_with_totals_per_currency(app, smtp, deliver):
    admin = make_admin(app)
    dollars = make_program(app, admin, name="Dollar Shop", hold_days=0)
    euros = make_program(app, admin, name="Euro Shop", currency="EUR", hold_days=0)
    for program in (dollars, euros):
        set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    report(app, dollars, alice.id, "a-1", 10_000)
    report(app, dollars, alice.id, "a-2", 20_000)
    report(app, euros, alice.id, "a-3", 5_000)
    report(app, dollars, bob.id, "b-1", 40_000)
    report(app, dollars, bob.id, "b-flagged", 90_000, status="flagged")
    accrue(app)
    start_afresh(smtp, deliver)
    approve_due(app)
    approved = of_kind(mails(smtp, deliver), "")
    assert sorted(approved) == sorted([alice.email, bob.email])
    assert approved[alice.email]["Subject"] == "3 commissions approved: €5.00 and $30.00"
    text = text_of(approved[alice.email])
    assert "3 commissions of yours have passed their hold period" in text and "$30.00" in text and "€5.00" in text
    assert approved[bob.email]["Subject"] == "Commission approved: $40.00", "the flagged sale waits for review"
    unsubscribable(approved[bob.email])


def test_a_commission_approved_by_finance_is_mailed_per_approval(app, smtp, deliver):
    program = make_program(app, make_admin(app), name="Tea Club")
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    for order, amount in (("t-1", 10_000), ("t-2", 30_000)):
        report(app, program, alice.id, order, amount)
    report(app, program, bob.id, "t-3", 50_000)
    accrue(app)
    start_afresh(smtp, deliver)
    ids = [c.id for c in commissions_of(app, alice)]
    finance = signed_in(app, make_finance(app))
    page = "/finance/commissions/"
    approving = finance.post("/finance/commissions/decide", {"decision": "approve", "ids": ids}, token_from=page)
    assert approving.status_code == 302
    received = mails(smtp, deliver)
    assert sorted((m["To"], m["Subject"]) for m in received) == [
        (alice.email, "Commission approved: $10.00"),
        (alice.email, "Commission approved: $30.00"),
    ]
    text = text_of(received[0])
    assert "approved on review" in text and "in Tea Club" in text
    unsubscribable(received[0])


def test_a_rejected_conversion_is_mailed_to_its_affiliate_with_a_redacted_reason(app, smtp, deliver):
    admin = make_admin(app)
    program = make_program(app, admin, name="Coffee Beans")
    set_plan(app, program.id, percent_bps=1_000)
    alice, bob = make_affiliate(app), make_affiliate(app)
    earning = report(app, program, alice.id, "beans-1", 25_000)
    flagged = report(app, program, bob.id, "beans-2", 8_000, status="flagged")
    with app.app_context():
        verdict = [{"rule": "self_referral", "action": "review", "evidence": "device 7f3a seen at bob's sign-ins"}]
        db.session.get(Conversion, flagged).fraud_reasons = json.dumps(verdict)
        db.session.commit()
    accrue(app)
    start_afresh(smtp, deliver)
    staff = signed_in(app, admin)
    page = f"/admin/conversions/{earning}"
    note = "Matches the affiliate's own card ending 4242"
    assert staff.post(f"{page}/reject", {"note": note}, token_from=page).status_code == 302
    with app.app_context():
        assert review.decide(db.session, [flagged], "reject", actor_id=admin.id, note="Self referral", now=utcnow())
        db.session.commit()
    received = mails(smtp, deliver)
    rejected = of_kind(received, "A sale in Coffee Beans was rejected")
    assert sorted(rejected) == sorted([alice.email, bob.email]) and len(received) == 2
    text, html = text_of(rejected[alice.email]), html_of(rejected[alice.email])
    assert "beans-1" in text and "$250.00" in text and "were taken back" in text
    assert f"http://portal.test/partner/conversions/{earning}" in text
    assert "4242" not in text + html, "the note is kept for the audit log"
    assert "a reviewer found it did not meet the program's terms" in text, "no rule fired: a reviewer's decision"
    theirs = text_of(rejected[bob.email]) + html_of(rejected[bob.email])
    assert "beans-2" in theirs and "taken back" not in theirs, "a flagged sale had earned nothing yet"
    assert "the customer appears to be the affiliate themself" in theirs, "which check it failed, in words"
    assert "7f3a" not in theirs and "Self referral" not in theirs, "never the evidence or the reviewer's note"
    unsubscribable(rejected[bob.email])


@pytest.fixture
def owed(app):
    """Alice is owed 60.00 by PayPal and Carol 80.00 by bank transfer."""
    program = make_program(app, make_admin(app), minimum_payout_cents=5_000, hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice, carol = make_affiliate(app, name="Alice"), make_affiliate(app, name="Carol")
    report(app, program, alice.id, "alice-1", 60_000)
    report(app, program, carol.id, "carol-1", 80_000)
    accrue(app)
    approve_due(app)
    set_details(app, alice, "paypal", email="alice.pay@example.com")
    set_details(app, carol, "bank", name="Carol Cruz", iban="GB82WEST12345698765432")
    return alice, carol


def test_a_built_batch_is_mailed_to_every_other_active_finance_user(app, owed, smtp, deliver):
    maker, checker, third = make_finance(app), make_finance(app), make_finance(app)
    make_finance(app, status=UserStatus.SUSPENDED)
    start_afresh(smtp, deliver)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        db.session.commit()
        batch_id = batch.id
    received = mails(smtp, deliver)
    waiting = of_kind(received, f"Payout batch #{batch_id} waits for your approval")
    assert sorted(waiting) == sorted([checker.email, third.email]) and len(received) == 2
    text = text_of(waiting[checker.email])
    assert "2 payouts, $140.00 in total" in text and f"http://portal.test/finance/payouts/{batch_id}" in text
    unsubscribable(waiting[third.email])


def test_a_payout_sent_or_failed_is_mailed_to_its_affiliate(app, owed, smtp, deliver):
    alice, carol = owed
    maker, checker = make_finance(app), make_finance(app)
    with app.app_context():
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, maker.id), now=utcnow())
        approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
        db.session.commit()
        payouts = {payout.affiliate_id: payout.id for payout in batch.payouts}
    start_afresh(smtp, deliver)
    with app.app_context():
        actor = db.session.get(User, checker.id)
        paid, failed = db.session.get(Payout, payouts[alice.id]), db.session.get(Payout, payouts[carol.id])
        assert mark_paid(db.session, paid, reference="PP-20240501-77", actor=actor, now=utcnow())
        assert mark_failed(db.session, failed, reason="The bank says the account is closed", actor=actor, now=utcnow())
        db.session.commit()
    received = mails(smtp, deliver)
    assert sorted((m["To"], m["Subject"]) for m in received) == sorted(
        [
            (alice.email, "Payout sent: $60.00"),
            (carol.email, "Payout failed: $80.00"),
        ]
    )
    sent = text_of(next(m for m in received if m["To"] == alice.email))
    assert "$60.00 was sent by PayPal to alice.pay@example.com" in sent and "PP-20240501-77" in sent
    failed_mail = next(m for m in received if m["To"] == carol.email)
    text = text_of(failed_mail)
    assert "$80.00 by bank transfer to the bank account ending 5432" in text
    assert "The bank says the account is closed" in text and "back in your balance" in text
    assert "GB82WEST" not in text + html_of(failed_mail), "a whole IBAN is not mailed"
    unsubscribable(failed_mail)


def test_a_kind_turned_off_on_the_settings_page_is_not_sent_and_the_others_still_are(app, smtp, deliver):
    program = make_program(app, make_admin(app), name="Bike Parts", hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    me = signed_in(app, alice)
    kept = [name for name, _ in notifications.optional_kinds("affiliate") if name != "commission_new"]
    assert me.post("/account/notifications", {"on": kept}).status_code == 302
    report(app, program, alice.id, "bike-1", 10_000)
    accrue(app)
    assert len(commissions_of(app, alice)) == 1
    approve_due(app)
    received = mails(smtp, deliver)
    assert [(m["To"], m["Subject"]) for m in received] == [(alice.email, "Commission approved: $10.00")]
    page = me.client.get("/account/notifications").get_data(as_text=True)
    (box,) = re.findall(r'<input[^>]*value="commission_new"[^>]*>', page)
    assert "checked" not in box, "the settings page shows it off"


def test_the_one_click_unsubscribe_of_a_mail_stops_that_kind_only_and_its_page_asks_first(app, smtp, deliver):
    admin = make_admin(app)
    first, second = make_program(app, admin, name="First"), make_program(app, admin, name="Second")
    alice = make_affiliate(app)

    def enrol(program: Program) -> None:
        with app.app_context():
            db.session.execute(update(Program).where(Program.id == program.id).values(enrollment="private"))
            token = enrollment.invitation(app.config["SECRET_KEY"], db.session.get(Program, program.id), None)
            enrollment.redeem(
                db.session,
                app.config["SECRET_KEY"],
                token,
                db.session.get(User, alice.id),
                max_age_days=30,
                now=utcnow(),
            )
            db.session.commit()

    enrol(first)
    (mail,) = mails(smtp, deliver)
    url = unsubscribable(mail)
    path = urlsplit(url).path
    visitor = app.test_client()  # no sign-in: the signed link names the person and the kind
    asked = visitor.get(path)
    assert asked.status_code == 200 and "Stop sending “Enrolled in a program” notifications" in asked.get_data(
        as_text=True
    )
    with app.app_context():
        assert notifications.opted_out(db.session, alice.id) == set(), "opening the link changes nothing"
    done = visitor.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200 and "no longer receives" in done.get_data(as_text=True)
    assert visitor.post(path, data="List-Unsubscribe=One-Click").status_code == 200, "a second click is harmless"
    smtp.inbox.messages.clear()
    enrol(second)
    set_plan(app, second.id, percent_bps=1_000)
    report(app, second, alice.id, "second-1", 10_000)
    accrue(app)
    assert [m["Subject"] for m in mails(smtp, deliver)] == ["New commission: $10.00 in Second"]


def test_a_forged_unsubscribe_link_is_a_404_and_changes_nothing(app, client):
    alice = make_affiliate(app)
    with app.app_context():
        good = notifications.unsubscribe_token(alice.id, "enrolled")
        security = notifications.unsubscribe_token(alice.id, "password_reset")
    other_key = URLSafeSerializer("another-secret", salt="clicktrail.unsubscribe").dumps([alice.id, "enrolled"])
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for token in (tampered, other_key, security, "not-a-token"):
        assert client.get(f"/unsubscribe/{token}").status_code == 404
        assert client.post(f"/unsubscribe/{token}", data="List-Unsubscribe=One-Click").status_code == 404
    with app.app_context():
        assert notifications.opted_out(db.session, alice.id) == set()
