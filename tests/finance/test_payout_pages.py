"""Finance pays a batch from the pages: build, a second person approves, export, mark paid or failed."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import AuditLog, LedgerTransaction, Payout, PayoutBatch, User, utcnow
from affiliate.services.ledger import balance, check
from tests.factories import Auth, csrf_token, make_admin, make_finance


def signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def build(client, currency: str = "USD"):
    token = csrf_token(client.get("/finance/payouts/").get_data(as_text=True))
    return client.post("/finance/payouts/build", data={"currency": currency, "csrf_token": token})


def post_on_batch(client, batch_id: int, path: str, data: dict | None = None):
    token = csrf_token(client.get(f"/finance/payouts/{batch_id}").get_data(as_text=True))
    return client.post(path, data={**(data or {}), "csrf_token": token})


def export(client, batch_id: int, export_format: str, **confirm):
    return post_on_batch(client, batch_id, f"/finance/payouts/{batch_id}/export/{export_format}", confirm)


def rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def payout_of(app, user) -> Payout:
    with app.app_context():
        payout = db.session.scalar(select(Payout).where(Payout.affiliate_id == user.id))
        db.session.expunge(payout)
        return payout


def test_build_approve_export_and_pay_a_batch(app, owed):
    maker, checker = make_finance(app, name="Maker"), make_finance(app, name="Checker")
    making = signed_in(app, maker)
    built = build(making)
    assert built.status_code == 303
    batch_id = int(re.search(r"/finance/payouts/(\d+)$", built.headers["Location"]).group(1))
    page = making.get(built.headers["Location"]).get_data(as_text=True)
    assert f"Batch #{batch_id} built: 3 payouts, $210.00" in page
    assert re.search(r"Erin Eve \(payout details changed [^)]*held until", page), "held affiliates are named, with why"
    assert "Dan Dale" not in page, "below the minimum is not held, just not due"
    assert "You built this batch" in page

    refused = post_on_batch(making, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 409 and "cannot approve it" in refused.get_data(as_text=True)
    draft = export(making, batch_id, "paypal")
    assert draft.status_code == 409 and "Only an approved batch can be exported" in draft.get_data(as_text=True)

    checking = signed_in(app, checker)
    approved = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    assert approved.status_code == 303
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        assert (batch.status, batch.approved_by_id, batch.total_cents) == ("approved", checker.id, 21_000)
        reserved = -balance(db.session, "payout_clearing", "USD")

    paypal = rows(export(checking, batch_id, "paypal"))
    wise = rows(export(checking, batch_id, "wise"))
    bank = rows(export(checking, batch_id, "bank"))
    alice_ref = f"CT-{batch_id}-{payout_of(app, owed.alice).id}"
    assert paypal == [["alice.pay@example.com", "60.00", "USD", alice_ref, f"Clicktrail payout {alice_ref}", "PAYPAL"]]
    assert wise[0] == [
        "name",
        "recipientEmail",
        "paymentReference",
        "receiverType",
        "amountCurrency",
        "amount",
        "sourceCurrency",
        "targetCurrency",
        "type",
    ]
    assert wise[1][0] == '\'=HYPERLINK("https://evil.test","Bob")', "a formula in a name is neutralised"
    assert wise[1][1:] == [
        "bob.wise@example.com",
        f"CT-{batch_id}-{payout_of(app, owed.bob).id}",
        "PERSON",
        "target",
        "70.00",
        "USD",
        "USD",
        "EMAIL",
    ]
    assert bank[0] == ["beneficiary_name", "iban", "amount", "currency", "reference"]
    assert bank[1][:4] == ["Carol Cruz", "GB82WEST12345698765432", "80.00", "USD"]
    amounts = [Decimal(paypal[0][1]), Decimal(wise[1][5]), Decimal(bank[1][2])]
    assert sum(amounts) * 100 == 21_000 == reserved, "the files add up to the batch and to the ledger"

    alice = payout_of(app, owed.alice)
    missing = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/paid", {"reference": "  "})
    assert missing.status_code == 422 and "Enter the payment" in missing.get_data(as_text=True)
    assert payout_of(app, owed.alice).status == "approved"
    paid = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/paid", {"reference": "PP-7781"})
    assert paid.status_code == 303
    again = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{alice.id}/paid", {"reference": "PP-9999"})
    assert again.status_code == 409 and "already settled" in again.get_data(as_text=True)
    bob = payout_of(app, owed.bob)
    no_reason = post_on_batch(checking, batch_id, f"/finance/payouts/payout/{bob.id}/failed", {"reason": ""})
    assert no_reason.status_code == 422 and payout_of(app, owed.bob).status == "approved"
    failed = post_on_batch(
        checking, batch_id, f"/finance/payouts/payout/{bob.id}/failed", {"reason": "Wise says the email has no account"}
    )
    assert failed.status_code == 303
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "payout_paid")
            )
            == 1
        ), "the second click moved no money"
        assert db.session.get(Payout, alice.id).external_reference == "PP-7781"
        assert balance(db.session, "cash", "USD") == -6_000
        assert balance(db.session, f"affiliate_payable:{owed.bob.id}", "USD") == -7_000, "failed: owed again"
        assert check(db.session) == []

    settled = export(checking, batch_id, "paypal", confirm_repeat="y")
    assert settled.status_code == 409 and "No payout awaiting payment" in settled.get_data(as_text=True)
    again = rows(export(checking, batch_id, "bank", confirm_repeat="y"))
    assert [row[0] for row in again[1:]] == ["Carol Cruz"]
    detail = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    for action in ("payout_batch.build", "payout_batch.approve", "payout.paid", "payout.failed"):
        assert action in detail, f"the batch's audit trail shows {action}"
    assert "PP-7781" in detail and "Wise says the email has no account" in detail

    partner = signed_in(app, owed.alice)
    earnings = partner.get("/partner/earnings/").get_data(as_text=True)
    assert "PP-7781" in earnings and "badge-paid" in earnings and "$60.00" in earnings
    bobs = signed_in(app, owed.bob).get("/partner/earnings/").get_data(as_text=True)
    assert "Wise says the email has no account" in bobs and "PP-7781" not in bobs


def test_a_second_build_with_nobody_due_says_nothing_to_pay(app, owed):
    client = signed_in(app, make_finance(app))
    assert build(client).status_code == 303
    again = build(client)
    assert again.status_code == 303 and again.headers["Location"].endswith("/finance/payouts/")
    assert "Nothing to pay" in client.get(again.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 1


def test_bad_input_is_a_clear_4xx(app, owed):
    client = signed_in(app, make_finance(app))
    assert client.get("/finance/payouts/999").status_code == 404
    assert client.get("/finance/payouts/999/export/paypal").status_code == 404
    assert client.get("/finance/payouts/1/export/excel").status_code == 404
    token = csrf_token(client.get("/finance/payouts/").get_data(as_text=True))
    assert (
        client.post("/finance/payouts/payout/999/paid", data={"reference": "x", "csrf_token": token}).status_code == 404
    )
    unknown = client.post("/finance/payouts/build", data={"currency": "XXX", "csrf_token": token})
    assert unknown.status_code == 303
    assert "Not a valid choice" in client.get("/finance/payouts/").get_data(as_text=True)
    for year in ("garbage", "20266", "-1", "1999", "\uff12\uff10\uff12\uff16"):  # the last: full-width digits
        response = client.get(f"/finance/payouts/yearly?year={year}")
        assert response.status_code == 400 and "Enter a year between" in response.get_data(as_text=True), year
        assert client.get(f"/finance/payouts/yearly.csv?year={year}").status_code == 400
    assert client.get("/finance/payouts/yearly").status_code == 200, "no year: this year"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 0


def test_yearly_report_totals_paid_payouts_by_calendar_year(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    for person, reference in ((owed.alice, "PP-1"), (owed.carol, "BANK-1")):
        payout = payout_of(app, person)
        post_on_batch(checking, batch_id, f"/finance/payouts/payout/{payout.id}/paid", {"reference": reference})
    year = utcnow().year
    page = checking.get(f"/finance/payouts/yearly?year={year}").get_data(as_text=True)
    assert "Alice Archer" in page and "Carol Cruz" in page and "$140.00" in page
    assert "HYPERLINK" not in page, "Bob's payout was approved but never paid"
    report = rows(checking.get(f"/finance/payouts/yearly.csv?year={year}"))
    assert report[0] == ["affiliate_id", "name", "email", "payout_methods", "currency", "payouts", "total_paid"]
    assert [(r[1], r[3], r[6]) for r in report[1:]] == [
        ("Alice Archer", "paypal", "60.00"),
        ("Carol Cruz", "bank", "80.00"),
    ]
    assert rows(checking.get(f"/finance/payouts/yearly.csv?year={year - 1}")) == [report[0]]
    assert "Nothing was paid" in checking.get(f"/finance/payouts/yearly?year={year + 1}").get_data(as_text=True)


def test_audit_log_lists_money_changes_newest_first_and_filters(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    page = checking.get("/finance/audit/").get_data(as_text=True)
    approved, built = f"Approved payout batch #{batch_id}", f"Built payout batch #{batch_id}"
    assert page.index(approved) < page.index(built) < page.index("Approved commission on order alice-order-1 ($60.00)")
    batches = checking.get("/finance/audit/?subject=payout_batch").get_data(as_text=True)
    assert built in batches and "Approved commission" not in batches
    with app.app_context():
        assert db.session.get(User, checker.id).email in batches
    assert checking.get("/finance/audit/?subject=nonsense&page=abc").status_code == 200


def test_the_batch_page_and_the_admin_dashboard_tell_the_audit_trail_in_words(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    batch_page = checking.get(f"/finance/payouts/{batch_id}").get_data(as_text=True)
    trail = batch_page[batch_page.index("Audit trail") :]
    assert trail.index(f"Approved payout batch #{batch_id}") < trail.index(f"Built payout batch #{batch_id}")
    assert "payout_batch.approve" not in trail.split("Raw record")[0], "the action's code is kept for the raw record"
    dashboard = signed_in(app, make_admin(app)).get("/admin/").get_data(as_text=True)
    assert f"Approved payout batch #{batch_id}" in dashboard


def test_marking_many_payouts_paid_pays_each_once_as_marking_one_does_and_closes_the_batch(app, owed):
    maker, checker = make_finance(app), make_finance(app)
    making, checking = signed_in(app, maker), signed_in(app, checker)
    batch_id = int(build(making).headers["Location"].rsplit("/", 1)[1])
    post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/approve")
    ids = [payout_of(app, person).id for person in (owed.alice, owed.bob, owed.carol)]

    nothing_ticked = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/paid", {"reference": "WIRE-1"})
    assert nothing_ticked.status_code == 422 and "Tick the payouts you paid" in nothing_ticked.get_data(as_text=True)

    paid = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/paid", {"reference": "WIRE-1", "ids": ids})
    assert paid.status_code == 303

    def state():
        with app.app_context():
            payouts = [db.session.get(Payout, payout_id) for payout_id in ids]
            audit = db.session.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(
                    AuditLog.subject_type == "payout", AuditLog.subject_id.in_(ids), AuditLog.action == "payout.paid"
                )
            )
            return (
                [(p.status, p.external_reference) for p in payouts],
                db.session.scalar(select(func.count()).select_from(LedgerTransaction)),
                audit,
                db.session.get(PayoutBatch, batch_id).status,
                check(db.session),
                balance(db.session, "payout_clearing", "USD"),
            )

    statuses, transactions, audited, batch_status, problems, clearing = state()
    assert statuses == [("paid", "WIRE-1")] * 3
    assert audited == 3 and problems == [] and clearing == 0
    assert batch_status == "closed", "every payout in it is paid"

    again = post_on_batch(checking, batch_id, f"/finance/payouts/{batch_id}/paid", {"reference": "WIRE-2", "ids": ids})
    assert again.status_code == 303
    assert state()[:3] == ([("paid", "WIRE-1")] * 3, transactions, 3), "a repeated post pays nothing twice"
