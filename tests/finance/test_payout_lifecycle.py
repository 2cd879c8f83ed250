"""A batch's life after it is built: exports recorded and never repeated unawares, cancelling, holds, warnings."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from affiliate.extensions import db
from affiliate.models import AuditLog, Commission, LedgerTransaction, Payout, PayoutBatch, Program, User, utcnow
from affiliate.services.accounts import PayoutDetails, decide_affiliate, update_payout_details
from affiliate.services.ledger import balance, check
from tests.factories import make_admin, make_finance
from tests.finance.test_payout_pages import build, export, payout_of, post_on_batch, rows, signed_in


def built_and_approved(app):
    """A batch of Alice (PayPal), Bob (Wise) and Carol (bank), built by one finance user and approved by another."""
    maker, checker = make_finance(app, name="Maker"), make_finance(app, name="Checker")
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    assert post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    return batch_id, making, checking, maker, checker


def batch_status(app, batch_id: int) -> str:
    with app.app_context():
        return db.session.get(PayoutBatch, batch_id).status


def audit_actions(app, subject_type: str, subject_id: int) -> list[str]:
    with app.app_context():
        return db.session.scalars(
            select(AuditLog.action)
            .where(AuditLog.subject_type == subject_type, AuditLog.subject_id == subject_id)
            .order_by(AuditLog.id)
        ).all()


def test_every_export_is_recorded_on_the_batch_page_and_the_first_moves_the_batch_on(app, owed):
    from affiliate.models import PayoutExport

    batch_id, _, checking, _, checker = built_and_approved(app)
    response = export(checking, batch_id, "paypal")
    body = response.get_data()
    assert rows(response)[0][0] == "alice.pay@example.com"
    assert batch_status(app, batch_id) == "exported"
    with app.app_context():
        (record,) = db.session.scalars(select(PayoutExport).where(PayoutExport.batch_id == batch_id)).all()
        assert (record.format, record.exported_by_id, record.payout_count, record.total_cents, record.repeat) == (
            "paypal",
            checker.id,
            1,
            6_000,
            False,
        )
        assert record.sha256 == hashlib.sha256(body).hexdigest(), "the hash is of the bytes downloaded"
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert record.sha256 in page and checker.email in page, "the batch page shows who exported what"
    assert "payout_batch.export" in page

    # The other formats are first exports of their own; paying goes on from `exported`.
    assert rows(export(checking, batch_id, "wise"))[1][1] == "bob.wise@example.com"
    alice = payout_of(app, owed.alice)
    paid = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/paid", {"reference": "PP-1"})
    assert paid.status_code == 303 and payout_of(app, owed.alice).status == "paid"
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(PayoutExport.batch_id == batch_id)) == 2
        assert check(db.session) == []


def test_a_second_export_of_a_file_is_a_warned_confirmed_and_audited_act(app, owed):
    from affiliate.models import PayoutExport

    batch_id, making, checking, maker, _ = built_and_approved(app)
    first = export(checking, batch_id, "paypal")
    assert first.status_code == 200
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    again_url = f"/finance/payouts/{batch_id}/export/paypal"
    assert f'href="{again_url}"' in page and "Export it again" in page, "a repeat starts at a confirmation page"

    for client in (checking, making):  # either finance user
        refused = export(client, batch_id, "paypal")
        text = refused.get_data(as_text=True)
        assert refused.status_code == 409 and refused.mimetype == "text/html"
        assert "pays everyone in it twice" in text and 'name="confirm_repeat"' in text
        assert "alice.pay@example.com" not in text, "no file without the confirmation"
    confirm_page = making.get(again_url).get_data(as_text=True)
    assert "pays everyone in it twice" in confirm_page and 'name="confirm_repeat"' in confirm_page
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(PayoutExport.batch_id == batch_id)) == 1

    repeat = export(making, batch_id, "paypal", confirm_repeat="y")
    assert rows(repeat)[0][0] == "alice.pay@example.com"
    with app.app_context():
        records = db.session.scalars(select(PayoutExport).where(PayoutExport.batch_id == batch_id)).all()
        assert [(r.exported_by_id, r.repeat) for r in records][1] == (maker.id, True)
        note = db.session.scalar(select(AuditLog.note).where(AuditLog.action == "payout_batch.export_repeat"))
        assert "paypal" in note and "twice" in note
    assert audit_actions(app, "payout_batch", batch_id)[-2:] == ["payout_batch.export", "payout_batch.export_repeat"]
    assert batch_status(app, batch_id) == "exported"


def test_cancelling_a_draft_returns_the_reserved_money_and_frees_it_for_a_later_batch(app, owed):
    maker = make_finance(app)
    making = signed_in(app, maker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    cancel = f"/finance/payouts/{batch_id}/cancel"
    with app.app_context():
        assert -balance(db.session, "payout_clearing", "USD") == 21_000
    page = making.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert f'action="{cancel}"' in page

    no_reason = post_on_batch(making, batch_id, cancel, {"reason": " "})
    assert no_reason.status_code == 422 and "Say why the batch is cancelled" in no_reason.get_data(as_text=True)
    assert making.post(cancel, data={"reason": "no token"}).status_code == 400
    assert batch_status(app, batch_id) == "draft"

    cancelled = post_on_batch(making, batch_id, cancel, {"reason": "built before the refunds were in"})
    assert cancelled.status_code == 303
    assert "3 payouts returned" in making.get(cancelled.headers["Location"]).get_data(as_text=True)
    assert batch_status(app, batch_id) == "cancelled"
    with app.app_context():
        assert balance(db.session, "payout_clearing", "USD") == 0, "nothing stays reserved"
        for person, cents in ((owed.alice, 6_000), (owed.bob, 7_000), (owed.carol, 8_000)):
            assert balance(db.session, f"affiliate_payable:{person.id}", "USD") == -cents
        assert (
            db.session.scalar(
                select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "payout_cancel")
            )
            == 3
        )
        assert check(db.session) == [], "every posting balances"
        statuses = db.session.scalars(select(Payout.status).where(Payout.batch_id == batch_id)).all()
        assert statuses == ["cancelled"] * 3
        assert db.session.scalar(select(func.count()).where(Commission.payout_id.is_not(None))) == 0
    assert audit_actions(app, "payout_batch", batch_id) == ["payout_batch.build", "payout_batch.cancel"]
    again = post_on_batch(making, batch_id, cancel, {"reason": "twice"})
    assert again.status_code == 409 and "Only a draft batch can be cancelled" in again.get_data(as_text=True)

    rebuilt = build(making)
    new_id = int(rebuilt.headers["Location"].rsplit("/", 1)[1])
    assert new_id != batch_id
    with app.app_context():
        new = db.session.scalars(select(Payout).where(Payout.batch_id == new_id).order_by(Payout.id)).all()
        assert sorted(p.amount_cents for p in new) == [6_000, 7_000, 8_000]
        linked = db.session.scalars(select(Commission.payout_id).where(Commission.affiliate_id == owed.alice.id)).all()
        assert linked == [next(p.id for p in new if p.affiliate_id == owed.alice.id)]
        assert check(db.session) == []


def test_an_approved_batch_cannot_be_cancelled(app, owed):
    batch_id, _, checking, _, _ = built_and_approved(app)
    refused = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/cancel", {"reason": "late"})
    assert refused.status_code == 409 and batch_status(app, batch_id) == "approved"
    with app.app_context():
        assert -balance(db.session, "payout_clearing", "USD") == 21_000


def test_every_file_names_the_payee_as_they_were_when_the_batch_was_built(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        db.session.get(User, owed.bob.id).name = "Robert Renamed"
        db.session.commit()
    post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    wise = rows(export(checking, batch_id, "wise"))
    assert wise[1][0] == '\'=HYPERLINK("https://evil.test","Bob")', "the name at the build, still neutralised"
    assert wise[1][1] == "bob.wise@example.com"
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert "Robert Renamed" in page and "name at the build" in page


def test_money_earned_in_a_paused_program_is_still_paid(app, owed):
    with app.app_context():
        # Pausing the only USD program stops new clicks and conversions, not payment of what was earned.
        db.session.execute(update(Program).where(Program.id == owed.program.id).values(status="paused"))
        db.session.commit()
    client = signed_in(app, make_finance(app))
    assert '<option value="USD"' in client.get("/finance/payouts/").get_data(as_text=True)
    built = build(client)
    assert built.status_code == 303 and re.search(r"/finance/payouts/\d+$", built.headers["Location"])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 3


def suspend(app, user, reason: str) -> None:
    admin = make_admin(app)
    with app.app_context():
        decide_affiliate(
            db.session,
            db.session.get(User, user.id),
            "suspend",
            reason=reason,
            actor=db.session.get(User, admin.id),
            now=utcnow(),
        )
        db.session.commit()


def test_a_suspended_affiliate_is_held_at_build_and_approval_and_never_paid(app, owed):
    suspend(app, owed.carol, "chargebacks under review")
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    assert payout_of(app, owed.carol).status == "held"
    suspend(app, owed.alice, "traffic from a click farm")  # after the build, before the approval
    assert post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    assert [payout_of(app, p).status for p in (owed.alice, owed.bob, owed.carol)] == ["held", "approved", "held"]
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert "affiliate suspended: traffic from a click farm" in page
    assert "affiliate suspended: chargebacks under review" in page

    refused = export(checking, batch_id, "paypal")
    assert refused.status_code == 409 and "No payout awaiting payment" in refused.get_data(as_text=True)
    assert export(checking, batch_id, "bank").status_code == 409
    alice = payout_of(app, owed.alice)
    paid = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/paid", {"reference": "PP-1"})
    assert paid.status_code == 409 and "held, not paid" in paid.get_data(as_text=True)
    with app.app_context():
        assert balance(db.session, "cash", "USD") == 0

    # Returning a held payout to the balance pays it in a later batch, once the affiliate is active again.
    returned = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/failed", {"reason": "suspended"})
    assert returned.status_code == 303 and payout_of(app, owed.alice).status == "failed"
    with app.app_context():
        assert balance(db.session, f"affiliate_payable:{owed.alice.id}", "USD") == -6_000
        assert check(db.session) == []


def test_an_affiliate_suspended_after_approval_is_held_at_export_and_when_marked_paid(app, owed):
    batch_id, _, checking, _, _ = built_and_approved(app)
    suspend(app, owed.bob, "fake signups")
    wise = export(checking, batch_id, "wise")
    assert wise.status_code == 409, "Bob is held, so the Wise file has nobody in it"
    assert payout_of(app, owed.bob).status == "held"
    suspend(app, owed.carol, "stolen cards")
    carol = payout_of(app, owed.carol)
    paid = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{carol.id}/paid", {"reference": "B-1"})
    assert paid.status_code == 409 and payout_of(app, owed.carol).status == "held"
    assert "payout.held" in audit_actions(app, "payout", carol.id)
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "payout_paid")
            )
            == 0
        )


def test_approving_warns_of_payout_details_changed_since_the_build_and_needs_an_acknowledgement(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        bob = db.session.get(User, owed.bob.id)
        update_payout_details(
            db.session,
            bob,
            PayoutDetails("paypal", "someone-else@example.com", None, None),
            now=utcnow() + timedelta(seconds=1),
        )
        db.session.commit()
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    warning = page[page.index('id="details-changed"') :]
    assert "Payout details changed since this batch was built" in warning and "HYPERLINK" in warning
    assert "Alice Archer" not in warning[: warning.index("</div>")], "only those who changed are named"
    assert 'name="acknowledge_changes"' in page

    unacknowledged = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert unacknowledged.status_code == 409 and "Payout details changed" in unacknowledged.get_data(as_text=True)
    assert batch_status(app, batch_id) == "draft"
    # Acknowledging someone else is not acknowledging Bob.
    wrong = post_on_batch(
        checking,
        batch_id,
        f"/finance/payouts/{batch_id}/approve",
        {"acknowledge_changes": "yes", "changed": str(owed.alice.id)},
    )
    assert wrong.status_code == 409 and batch_status(app, batch_id) == "draft"

    approved = post_on_batch(
        checking,
        batch_id,
        f"/finance/payouts/{batch_id}/approve",
        {"acknowledge_changes": "yes", "changed": str(owed.bob.id)},
    )
    assert approved.status_code == 303 and batch_status(app, batch_id) == "approved"
    with app.app_context():
        note = db.session.scalar(select(AuditLog.note).where(AuditLog.action == "payout_batch.approve"))
        assert "HYPERLINK" in note, "the audit says whose changes the approver acknowledged"
    wise = rows(export(checking, batch_id, "wise"))
    assert wise[1][1] == "bob.wise@example.com", "the file still pays the details the batch was built with"


def test_a_batch_with_no_changed_details_is_approved_without_a_warning(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    assert 'id="details-changed"' not in page and 'name="acknowledge_changes"' not in page
    assert post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve").status_code == 303
    assert batch_status(app, batch_id) == "approved"


def test_two_finance_users_exporting_at_once_make_one_first_file(app, owed):
    from affiliate.models import PayoutExport
    from affiliate.services.payouts import RepeatExport, export_batch

    batch_id, _, _, maker, checker = built_and_approved(app)
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def click(person) -> None:
        with app.app_context():
            start.wait()
            try:
                export_batch(
                    db.session,
                    db.session.get(PayoutBatch, batch_id),
                    "paypal",
                    actor=db.session.get(User, person.id),
                    now=utcnow(),
                )
            except RepeatExport:
                db.session.rollback()
                outcomes.append("warned")
            else:
                db.session.commit()
                outcomes.append("file")

    threads = [threading.Thread(target=click, args=(person,)) for person in (maker, checker, maker, checker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["file", "warned", "warned", "warned"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(PayoutExport.batch_id == batch_id)) == 1
    assert batch_status(app, batch_id) == "exported"


def test_cancelling_and_approving_at_once_leave_one_outcome_and_balanced_books(app, owed):
    from affiliate.services.payouts import PayoutError, approve_batch, cancel_batch

    maker, checker = make_finance(app), make_finance(app)
    batch_id = int(build(signed_in(app, maker)).headers["Location"].rsplit("/", 1)[1])
    start = threading.Barrier(2)
    done: list[str] = []

    def act(name: str) -> None:
        with app.app_context():
            start.wait()
            batch = db.session.get(PayoutBatch, batch_id)
            try:
                if name == "cancel":
                    cancel_batch(db.session, batch, actor=db.session.get(User, maker.id), reason="race", now=utcnow())
                else:
                    approve_batch(db.session, batch, approver=db.session.get(User, checker.id), now=utcnow())
            except PayoutError:
                db.session.rollback()
            else:
                db.session.commit()
                done.append(name)

    threads = [threading.Thread(target=act, args=(name,)) for name in ("cancel", "approve")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(done) == 1
    status = batch_status(app, batch_id)
    assert status == {"cancel": "cancelled", "approve": "approved"}[done[0]]
    with app.app_context():
        payouts = db.session.scalars(select(Payout.status).where(Payout.batch_id == batch_id)).all()
        assert set(payouts) == {"cancelled" if status == "cancelled" else "approved"}
        assert -balance(db.session, "payout_clearing", "USD") == (0 if status == "cancelled" else 21_000)
        assert check(db.session) == []
