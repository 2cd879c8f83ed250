"""The Stripe endpoint end to end: events in the shapes of Stripe's API reference, signed as Stripe signs them
(``t=<timestamp>,v1=<HMAC-SHA256 of "<timestamp>.<body>">``, computed here independently of the ``stripe``
package that verifies them), posted through the HTTP layer; then what the program's ledger and commissions say.

A subscriber comes through Alice's link and pays through Stripe Checkout; two renewals follow, then a partial
refund and a cancellation. Replays, wrong secrets, stale timestamps and events out of order change nothing
they should not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Conversion, Program, StripeCustomer, StripeEvent, User, utcnow
from affiliate.services import accrual, coupons
from affiliate.services.ledger import balance
from tests.api.helpers import click
from tests.factories import Visitor, make_admin, make_affiliate, make_link, make_program
from tests.money.test_accrual import set_plan

SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
_ids = count(1)


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def event(kind: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    """An Event object as Stripe's API reference shows it; created a second on, so never before a click just made."""
    return {
        "id": event_id or f"evt_1Q{next(_ids):012d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()) + 1,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def checkout(
    session_id: str,
    *,
    mode: str,
    amount: int,
    reference: str | None = None,
    customer: str = "cus_Alpha1",
    subscription: str | None = None,
    payment_intent: str | None = None,
    promotion: str | None = None,
) -> dict:
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": mode,
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": amount,
        "amount_total": amount,
        "currency": "usd",
        "customer": customer,
        "customer_details": {"email": "subscriber@example.com", "name": "Sam Subscriber"},
        "client_reference_id": reference,
        "subscription": subscription,
        "payment_intent": payment_intent,
        "invoice": None,
        "livemode": False,
        "discounts": [{"coupon": None, "promotion_code": promotion}] if promotion else [],
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    }


def invoice(
    invoice_id: str,
    *,
    amount: int,
    reason: str,
    customer: str = "cus_Alpha1",
    subscription: str = "sub_1",
    charge: str | None = None,
) -> dict:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "customer_email": "subscriber@example.com",
        "amount_due": amount,
        "amount_paid": amount,
        "amount_remaining": 0,
        "currency": "usd",
        "billing_reason": reason,
        "status": "paid",
        "paid": True,
        "subscription": subscription,
        "charge": charge,
        "payment_intent": f"pi_{invoice_id}",
        "livemode": False,
    }


def charge(
    charge_id: str,
    *,
    amount: int,
    refunded: int,
    invoice_id: str | None = None,
    customer: str = "cus_Alpha1",
    payment_intent: str | None = None,
) -> dict:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "refunded": refunded == amount,
        "currency": "usd",
        "customer": customer,
        "invoice": invoice_id,
        "payment_intent": payment_intent,
        "paid": True,
        "status": "succeeded",
    }


def subscription_deleted(subscription_id: str, customer: str = "cus_Alpha1") -> dict:
    return {"id": subscription_id, "object": "subscription", "customer": customer, "status": "canceled"}


@pytest.fixture
def shop(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    set_plan(app, program.id, percent_bps=2_000, flat_cents=0, recurring_months=12)  # 20% of every payment
    with app.app_context():
        db.session.get(Program, program.id).stripe_webhook_secret = SECRET
        db.session.commit()
    alice = make_affiliate(app, name="Alice")
    return {"admin": admin, "program": program, "alice": alice, "link": make_link(app, alice, program)}


def post(app, program_id: int, payload: dict, **signing):
    body = json.dumps(payload).encode()
    return app.test_client().post(
        f"/integrations/stripe/{program_id}",
        data=body,
        headers={"Stripe-Signature": signed(body, **signing), "Content-Type": "application/json"},
    )


def deliver(app, program_id: int, *events: dict) -> list[str]:
    """Post each event as Stripe would; the outcome of each."""
    outcomes = []
    for payload in events:
        answer = post(app, program_id, payload)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        outcomes.append(answer.get_json()["status"])
    return outcomes


def sales_and_refunds(app) -> list[tuple[str, str, int, int | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(Conversion.type, Conversion.order_id, Conversion.amount_cents, Conversion.affiliate_id).order_by(
                Conversion.id
            )
        ).all()
        return [tuple(row) for row in rows]


def earned(app, affiliate_id: int) -> int:
    """What the ledger holds for the affiliate (pending commissions net of reversals), after the money job ran."""
    with app.app_context():
        accrual.run(db.session, now=utcnow() + timedelta(minutes=10))
        db.session.commit()
        return -balance(db.session, f"affiliate_pending:{affiliate_id}", "USD")


def clicked(redirector, code: str) -> str:
    click_id = click(Visitor(redirector), code)
    redirector.recorder.flush()
    return click_id


def test_a_checkout_two_renewals_a_partial_refund_and_a_cancellation(app, redirector, shop):
    program, alice = shop["program"], shop["alice"]
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 30  # the sale half a minute after its click: screening finds nothing to hold it for
    outcomes = deliver(
        app,
        program.id,
        event(
            "checkout.session.completed",
            checkout("cs_test_a1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1"),
            created=start,
        ),
        event(
            "invoice.paid", invoice("in_1", amount=5000, reason="subscription_create", charge="ch_1"), created=start + 1
        ),
        event(
            "invoice.paid", invoice("in_2", amount=5000, reason="subscription_cycle", charge="ch_2"), created=start + 2
        ),
        event(
            "invoice.paid", invoice("in_3", amount=5000, reason="subscription_cycle", charge="ch_3"), created=start + 3
        ),
        event("charge.refunded", charge("ch_1", amount=5000, refunded=2000, invoice_id="in_1"), created=start + 4),
        event("customer.subscription.deleted", subscription_deleted("sub_1"), created=start + 5),
        event(
            "invoice.paid", invoice("in_4", amount=5000, reason="subscription_cycle", charge="ch_4"), created=start + 6
        ),
    )
    assert outcomes == ["recorded"] * 6 + ["ignored"], "after the cancellation no invoice is a sale"
    assert sales_and_refunds(app) == [
        ("sale", "in_1", 5000, alice.id),
        ("sale", "in_2", 5000, alice.id),
        ("sale", "in_3", 5000, alice.id),
        ("refund", "in_1", 2000, alice.id),
    ]
    # 20% of three payments of $50, less 20% of the $20 refunded: the rules, worked out by hand.
    assert earned(app, alice.id) == 3 * 1000 - 400
    with app.app_context():
        first = db.session.scalar(select(Conversion).where(Conversion.order_id == "in_1"))
        assert json.loads(first.decision_trace)["matched_by"] == "click_id"
        renewal = db.session.scalar(select(Conversion).where(Conversion.order_id == "in_2"))
        assert json.loads(renewal.decision_trace)["matched_by"] == "binding"


@pytest.mark.parametrize("details", ["sub_1", ["sub_1"], 7, None])
def test_a_renewal_whose_subscription_details_are_not_an_object_is_still_credited_by_the_customer(
    app, redirector, shop, details
):
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 30
    completed = checkout("cs_test_d1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1")
    renewal = {**invoice("in_d2", amount=5000, reason="subscription_cycle"), "subscription": None}
    renewal["parent"] = {"type": "subscription_details", "subscription_details": details}
    outcomes = deliver(
        app,
        shop["program"].id,
        event("checkout.session.completed", completed, created=start),
        event("invoice.paid", invoice("in_d1", amount=5000, reason="subscription_create"), created=start + 1),
        event("invoice.paid", renewal, created=start + 2),
    )
    assert outcomes == ["recorded"] * 3
    assert sales_and_refunds(app)[-1] == ("sale", "in_d2", 5000, shop["alice"].id)


def test_the_same_event_twice_is_handled_once(app, redirector, shop):
    click_id = clicked(redirector, shop["link"].code)
    session = checkout("cs_test_p1", mode="payment", amount=7000, reference=click_id, payment_intent="pi_p1")
    payment = event("checkout.session.completed", session)
    assert deliver(app, shop["program"].id, payment, payment) == ["recorded", "recorded"]
    assert sales_and_refunds(app) == [("sale", "pi_p1", 7000, shop["alice"].id)]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1


@pytest.mark.parametrize("bad", ["wrong-secret", "stale", "future", "no-signature", "tampered"])
def test_an_event_that_does_not_verify_is_a_400_and_changes_nothing(app, shop, bad):
    payload = event(
        "checkout.session.completed",
        checkout("cs_test_x", mode="payment", amount=7000, reference=shop["link"].code, payment_intent="pi_x"),
    )
    body = json.dumps(payload).encode()
    header = {
        "wrong-secret": signed(body, secret="whsec_someone_else"),
        "stale": signed(body, timestamp=int(time.time()) - 600),
        "future": signed(body, timestamp=int(time.time()) + 600),
        "no-signature": "",
        "tampered": signed(body.replace(b"7000", b"9000")),
    }[bad]
    answer = app.test_client().post(
        f"/integrations/stripe/{shop['program'].id}", data=body, headers={"Stripe-Signature": header}
    )
    assert answer.status_code == 400
    assert sales_and_refunds(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": 1}', b'{"id": "evt_1", "type": "x", "created": 1}'])
def test_a_signed_body_that_is_not_an_event_is_a_400(app, shop, raw):
    answer = app.test_client().post(
        f"/integrations/stripe/{shop['program'].id}", data=raw, headers={"Stripe-Signature": signed(raw)}
    )
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (b"\xff\xfe", "t={now},v1=" + "0" * 64),  # not UTF-8
        (b"{}", "t={now},v1=" + "\u00e9" * 64),  # a signature of characters Stripe never writes
    ],
    ids=["body-not-utf8", "signature-not-ascii"],
)
def test_an_unreadable_body_or_signature_is_a_400_before_any_check_of_it(app, shop, body, header):
    answer = app.test_client().post(
        f"/integrations/stripe/{shop['program'].id}",
        data=body,
        headers={"Stripe-Signature": header.format(now=int(time.time()))},
    )
    assert answer.status_code == 400
    assert "error" in answer.get_json()


@pytest.mark.parametrize(
    "change",
    [{"id": "evt_\ud800x"}, {"id": "evt_\u0000"}, {"type": "\u0000invoice.paid"}, {"type": "invoice.paid\udfff"}],
    ids=["id-surrogate", "id-nul", "type-nul", "type-surrogate"],
)
def test_a_signed_event_with_text_no_database_keeps_is_a_400_and_stores_nothing(app, shop, change):
    payload = {**event("invoice.paid", invoice("in_t", amount=100, reason="subscription_cycle")), **change}
    body = json.dumps(payload).encode()  # escapes the characters, as JSON allows: the parser must refuse them
    answer = app.test_client().post(
        f"/integrations/stripe/{shop['program'].id}", data=body, headers={"Stripe-Signature": signed(body)}
    )
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


def test_a_program_without_a_stripe_secret_takes_no_events(app):
    program = make_program(app, make_admin(app))
    payload = event("invoice.paid", invoice("in_9", amount=100, reason="subscription_cycle"))
    assert post(app, program.id, payload).status_code == 404
    assert post(app, 999_999, payload).status_code == 404


def test_an_invoice_before_its_checkout_waits_for_it(app, redirector, shop):
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 1
    first_invoice = event("invoice.paid", invoice("in_1", amount=5000, reason="subscription_create"), created=start + 1)
    assert deliver(app, shop["program"].id, first_invoice) == ["waiting"]
    assert sales_and_refunds(app) == []
    completed = checkout("cs_test_a1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1")
    session = event("checkout.session.completed", completed, created=start)
    assert deliver(app, shop["program"].id, session) == ["recorded"]
    assert sales_and_refunds(app) == [("sale", "in_1", 5000, shop["alice"].id)]
    with app.app_context():
        assert db.session.scalar(select(StripeEvent.status).where(StripeEvent.type == "invoice.paid")) == "recorded"


def test_refunds_out_of_order_refund_what_stripe_refunded_in_total(app, redirector, shop):
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 1
    deliver(
        app,
        shop["program"].id,
        event(
            "checkout.session.completed",
            checkout("cs_p", mode="payment", amount=8000, reference=click_id, payment_intent="pi_8"),
            created=start,
        ),
    )
    later = event(
        "charge.refunded", charge("ch_8", amount=8000, refunded=5000, payment_intent="pi_8"), created=start + 2
    )
    earlier = event(
        "charge.refunded", charge("ch_8", amount=8000, refunded=1000, payment_intent="pi_8"), created=start + 1
    )
    assert deliver(app, shop["program"].id, later, earlier, later) == ["recorded", "ignored", "recorded"]
    refunds = [row for row in sales_and_refunds(app) if row[0] == "refund"]
    assert refunds == [("refund", "pi_8", 5000, shop["alice"].id)]


def test_a_checkout_with_an_affiliates_promotion_code_and_no_click_credits_the_coupon(app, shop):
    with app.app_context():
        coupons.create(
            db.session,
            db.session.get(Program, shop["program"].id),
            db.session.get(User, shop["alice"].id),
            coupons.CouponSettings("PODCAST20", stripe_promotion_code="promo_1PodCast20"),
            actor=db.session.get(User, shop["admin"].id),
            now=utcnow(),
        )
        db.session.commit()
    completed = checkout("cs_c", mode="payment", amount=4000, payment_intent="pi_c", promotion="promo_1PodCast20")
    payment = event("checkout.session.completed", completed)
    assert deliver(app, shop["program"].id, payment) == ["recorded"]
    assert sales_and_refunds(app) == [("sale", "pi_c", 4000, shop["alice"].id)]
    with app.app_context():
        sale = db.session.scalar(select(Conversion).where(Conversion.order_id == "pi_c"))
        assert json.loads(sale.decision_trace)["matched_by"] == "coupon"


def test_a_checkout_with_no_referral_and_a_sale_in_another_currency_are_not_credited(app, shop):
    plain = event("checkout.session.completed", checkout("cs_n", mode="payment", amount=4000, payment_intent="pi_n"))
    foreign = checkout("cs_f", mode="payment", amount=4000, reference=shop["link"].code, payment_intent="pi_f")
    foreign["currency"] = "eur"
    assert deliver(app, shop["program"].id, plain, event("checkout.session.completed", foreign)) == [
        "ignored",
        "refused",
    ]
    assert sales_and_refunds(app) == []


def test_a_checkout_and_its_first_invoice_arriving_at_once_always_end_in_one_sale(app, redirector, shop):
    """Delivered together many times: neither may decide on what the other has not committed yet."""
    click_id = clicked(redirector, shop["link"].code)
    rounds = 8
    for n in range(rounds):
        customer = f"cus_race{n}"
        events = [
            event(
                "checkout.session.completed",
                checkout(
                    f"cs_race{n}",
                    mode="subscription",
                    amount=3000,
                    reference=click_id,
                    customer=customer,
                    subscription=f"sub_race{n}",
                ),
            ),
            event(
                "invoice.paid",
                invoice(
                    f"in_race{n}",
                    amount=3000,
                    reason="subscription_create",
                    customer=customer,
                    subscription=f"sub_race{n}",
                ),
            ),
        ]
        start = threading.Barrier(2)
        answers: list[int] = []

        def send(payload, start=start, answers=answers):
            start.wait()
            answers.append(post(app, shop["program"].id, payload).status_code)

        threads = [threading.Thread(target=send, args=(payload,)) for payload in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers == [200, 200]
    sales = [row for row in sales_and_refunds(app) if row[1].startswith("in_race")]
    assert sorted(sales) == sorted(("sale", f"in_race{n}", 3000, shop["alice"].id) for n in range(rounds))
    with app.app_context():
        assert (
            db.session.scalar(select(func.count()).select_from(StripeEvent).where(StripeEvent.status == "waiting")) == 0
        )


def _hostile_objects() -> list[tuple[str, dict]]:
    session = checkout("cs_h", mode="payment", amount=4000, reference="x", payment_intent="pi_h")
    paid = invoice("in_h", amount=4000, reason="subscription_cycle")
    refunded = charge("ch_h", amount=4000, refunded=100)
    changes = [
        ("checkout.session.completed", {**session, "amount_total": "4000"}),
        ("checkout.session.completed", {**session, "amount_total": 10**30}),
        ("checkout.session.completed", {**session, "amount_total": -5}),
        ("checkout.session.completed", {**session, "currency": 7}),
        ("checkout.session.completed", {**session, "discounts": 12}),
        ("checkout.session.completed", {**session, "discounts": ["promo_x", None]}),
        ("checkout.session.completed", {**session, "client_reference_id": "<script>" * 40}),
        ("checkout.session.completed", {**session, "payment_intent": "pi_" + "9" * 300}),
        ("checkout.session.completed", {**session, "payment_intent": None, "id": "cs\x00nul"}),
        ("checkout.session.completed", {**session, "customer": {"id": ["nested"]}}),
        ("checkout.session.completed", {**session, "customer_details": {"email": "a\x00@b.example"}}),
        ("checkout.session.completed", {**session, "mode": "subscription", "customer": None}),
        ("invoice.paid", {**paid, "customer": 42}),
        ("invoice.paid", {**paid, "amount_paid": 1.5}),
        ("invoice.paid", {**paid, "parent": "sub_1"}),
        ("invoice.paid", {**paid, "subscription": None, "parent": {"subscription_details": "sub_1"}}),
        ("invoice.paid", {**paid, "parent": {"subscription_details": ["sub_1"]}}),
        ("charge.refunded", {**refunded, "amount_refunded": True}),
        ("charge.refunded", {**refunded, "payment_intent": ["pi_h"]}),
        ("customer.subscription.deleted", {"id": None, "customer": None}),
        ("payment_intent.succeeded", {"id": "pi_h"}),
    ]
    return changes


@pytest.mark.parametrize(("kind", "obj"), _hostile_objects(), ids=lambda value: value if isinstance(value, str) else "")
def test_a_signed_event_with_strange_fields_is_answered_without_an_error_and_stores_no_sale(app, shop, kind, obj):
    answer = post(app, shop["program"].id, event(kind, obj))
    assert answer.status_code in (200, 400), answer.get_data(as_text=True)
    if answer.status_code == 200:
        assert answer.get_json()["status"] in ("ignored", "refused", "waiting")
    assert sales_and_refunds(app) == []


def test_a_checkout_naming_a_click_still_in_the_click_log_is_credited_once_the_click_is_stored(app, redirector, shop):
    late = click(Visitor(redirector), shop["link"].code)  # logged; stored on flush()
    completed = checkout("cs_late", mode="payment", amount=5000, reference=late, payment_intent="pi_late")
    paid = event("checkout.session.completed", completed, created=int(time.time()) + 30)  # not too fast after the click
    assert deliver(app, shop["program"].id, paid) == ["recorded"]
    assert sales_and_refunds(app) == [("sale", "pi_late", 5000, None)], "waiting for its click"
    redirector.recorder.flush()
    assert sales_and_refunds(app) == [("sale", "pi_late", 5000, shop["alice"].id)]
    assert earned(app, shop["alice"].id) == 1000


@pytest.mark.parametrize("session_id", [None, "", "cs-with-a-dash", "x" * 200, "ü"])
def test_a_subscription_checkout_whose_id_cannot_be_kept_is_refused_and_binds_no_customer(app, shop, session_id):
    """The customer's binding was begun before the id was read: a refusal must leave none of it behind."""
    obj = checkout("cs_x", mode="subscription", amount=5000, reference=shop["link"].code, subscription="sub_1")
    if session_id is None:
        del obj["id"]
    else:
        obj["id"] = session_id
    answer = post(app, shop["program"].id, event("checkout.session.completed", obj))
    assert answer.status_code == 200 and answer.get_json()["status"] == "refused", answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeCustomer)) == 0


@pytest.mark.parametrize("shape", ["2024", "2025"])
@pytest.mark.parametrize("invoice_first", [False, True])
def test_a_one_off_checkout_and_its_invoice_are_one_sale(app, redirector, shop, invoice_first, shape):
    """Checkout's invoice creation sends a paid invoice for the same payment as the completed checkout: they share
    the payment intent, and in the 2025 shape (whose invoice names none) the checkout names its invoice."""
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 30
    subscribed = [
        event("checkout.session.completed",
              checkout("cs_s1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1"),
              created=start),
        event("invoice.paid", invoice("in_1", amount=5000, reason="subscription_create"), created=start + 1),
    ]  # fmt: skip
    one_off = event(
        "checkout.session.completed",
        checkout("cs_p9", mode="payment", amount=3000, reference=click_id, payment_intent="pi_9") | {"invoice": "in_9"},
        created=start + 2,
    )
    invoiced = {**invoice("in_9", amount=3000, reason="manual"), "subscription": None, "payment_intent": "pi_9"}
    its_invoice = event("invoice.paid", basil(invoiced) if shape == "2025" else invoiced, created=start + 3)
    pair = [its_invoice, one_off] if invoice_first else [one_off, its_invoice]
    outcomes = deliver(app, shop["program"].id, *subscribed, *pair)
    assert outcomes == ["recorded", "recorded", "recorded", "ignored"]
    sales = [row for row in sales_and_refunds(app) if row[0] == "sale"]
    assert sorted(row[2] for row in sales) == [3000, 5000], "the 30.00 payment is one sale, not two"


def test_payments_past_32_bits_and_refunds_of_the_longest_charge_ids_are_recorded(app, shop):
    """Amounts up to the API's limit fit every column a sale touches; a charge id may take 128 characters."""
    code, program_id = shop["link"].code, shop["program"].id
    big = checkout("cs_big", mode="payment", amount=3_000_000_000, reference=code, payment_intent="pi_big")
    subscribed = checkout("cs_sub", mode="subscription", amount=0, reference=code, subscription="sub_1")
    first_invoice = invoice("in_big", amount=2_500_000_000, reason="subscription_create")
    longest = "ch_" + "A" * 125
    outcomes = deliver(
        app,
        program_id,
        event("checkout.session.completed", big),
        event("checkout.session.completed", subscribed),
        event("invoice.paid", first_invoice),
        event("charge.refunded", charge(longest, amount=3_000_000_000, refunded=1_000, payment_intent="pi_big")),
        event("charge.refunded", charge(longest, amount=3_000_000_000, refunded=1_500, payment_intent="pi_big")),
    )
    assert outcomes == ["recorded"] * 5
    assert sorted(amount for kind, _, amount, _ in sales_and_refunds(app) if kind != "sale") == [500, 1_000]
    assert sorted(amount for kind, _, amount, _ in sales_and_refunds(app) if kind == "sale") == [
        2_500_000_000,
        3_000_000_000,
    ]


def basil(invoice_object: dict, *, payments: list[dict] | None = None) -> dict:
    """An invoice as API versions from 2025 (basil) send it: no charge, payment intent or subscription on it (the
    subscription under parent.subscription_details), the payments listed under ``payments`` when included."""
    shaped = {key: value for key, value in invoice_object.items() if key not in ("charge", "payment_intent", "paid")}
    subscription = shaped.pop("subscription")
    shaped["parent"] = {"type": "subscription_details", "subscription_details": {"subscription": subscription}}
    if payments is not None:
        shaped["payments"] = {"object": "list", "data": payments}
    return shaped


@pytest.mark.parametrize("with_payments", [False, True], ids=["bare", "payments-listed"])
def test_a_refund_of_a_subscription_payment_in_the_2025_shape_reverses_its_sale(app, redirector, shop, with_payments):
    """Basil's charges name no invoice and its invoices name no charge: the refund still finds the sale it
    refunds, by the payments the invoice lists, or by the customer's one invoice of that amount."""
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 1
    payments = [{"object": "invoice_payment", "payment": {"type": "payment_intent", "payment_intent": "pi_b1"}}]
    first = basil(
        invoice("in_b1", amount=3000, reason="subscription_create"), payments=payments if with_payments else None
    )
    refunded = charge("ch_b1", amount=3000, refunded=3000, payment_intent="pi_b1") | {"created": start + 1}
    del refunded["invoice"]
    outcomes = deliver(
        app,
        shop["program"].id,
        event(
            "checkout.session.completed",
            checkout("cs_b", mode="subscription", amount=3000, reference=click_id, subscription="sub_1"),
            created=start,
        ),
        event("invoice.paid", first, created=start + 1),
        event("charge.refunded", refunded, created=start + 2),
    )
    assert outcomes == ["recorded", "recorded", "recorded"]
    assert sales_and_refunds(app) == [
        ("sale", "in_b1", 3000, shop["alice"].id),
        ("refund", "in_b1", 3000, shop["alice"].id),
    ]
    assert earned(app, shop["alice"].id) == 0


def test_a_2025_refund_of_a_renewal_that_comes_before_its_invoice_waits_for_it_not_for_last_months(app, shop):
    """Every invoice of a subscription is of one amount: a refund of this month's payment that arrives before this
    month's invoice must not land on last month's, recorded already without a charge or payment intent."""
    month = 20 * 86400  # a short one, so the first invoice is inside the program's window
    start = int(time.time()) - month
    first = basil(invoice("in_m1", amount=3000, reason="subscription_create"))
    renewal = basil(invoice("in_m2", amount=3000, reason="subscription_cycle"))
    refunded = charge("ch_m2", amount=3000, refunded=3000, payment_intent="pi_m2") | {"created": start + month}
    del refunded["invoice"]
    completed = checkout("cs_m", mode="subscription", amount=3000, reference=shop["link"].code, subscription="sub_1")
    outcomes = deliver(
        app,
        shop["program"].id,
        event("checkout.session.completed", completed, created=start),
        event("invoice.paid", first, created=start + 1),
        event("charge.refunded", refunded, created=start + month + 2),
    )
    assert outcomes == ["recorded", "recorded", "waiting"]
    assert deliver(app, shop["program"].id, event("invoice.paid", renewal, created=start + month + 1)) == ["recorded"]
    assert sales_and_refunds(app) == [
        ("sale", "in_m1", 3000, shop["alice"].id),
        ("sale", "in_m2", 3000, shop["alice"].id),
        ("refund", "in_m2", 3000, shop["alice"].id),
    ]


def test_a_guests_refund_before_its_checkout_waits_for_it(app, redirector, shop):
    """Checkout in payment mode makes no Stripe customer by default: a refund that comes first names none, so it
    waits on its payment intent, and is recorded when the checkout is."""
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 1
    refunded = charge("ch_g", amount=1000, refunded=1000, payment_intent="pi_g", customer=None)
    assert deliver(app, shop["program"].id, event("charge.refunded", refunded, created=start + 2)) == ["waiting"]
    completed = checkout("cs_g", mode="payment", amount=1000, reference=click_id, payment_intent="pi_g", customer=None)
    assert deliver(app, shop["program"].id, event("checkout.session.completed", completed, created=start)) == [
        "recorded"
    ]
    assert sales_and_refunds(app) == [
        ("sale", "pi_g", 1000, shop["alice"].id),
        ("refund", "pi_g", 1000, shop["alice"].id),
    ]
    assert earned(app, shop["alice"].id) == 0


def test_a_2025_refund_of_a_renewal_paid_by_bank_debit_days_after_its_charge_reverses_its_sale(app, shop):
    """A SEPA or ACH debit is charged when it starts and the invoice is paid when it settles, days later: the
    refund of that charge still finds its invoice."""
    day = 86400
    start = int(time.time()) - 30 * day
    completed = checkout("cs_s", mode="subscription", amount=3000, reference=shop["link"].code, subscription="sub_1")
    first = basil(invoice("in_s1", amount=3000, reason="subscription_create"))
    renewal = basil(invoice("in_s2", amount=3000, reason="subscription_cycle"))
    refunded = charge("ch_s2", amount=3000, refunded=3000, payment_intent="pi_s2") | {"created": start + 20 * day}
    del refunded["invoice"]
    outcomes = deliver(
        app,
        shop["program"].id,
        event("checkout.session.completed", completed, created=start),
        event("invoice.paid", first, created=start + 1),
        event("invoice.paid", renewal, created=start + 25 * day),
        event("charge.refunded", refunded, created=start + 26 * day),
    )
    assert outcomes == ["recorded", "recorded", "recorded", "recorded"]
    assert sales_and_refunds(app)[-1] == ("refund", "in_s2", 3000, shop["alice"].id)


def test_a_renewal_paid_before_the_cancellation_but_delivered_after_it_is_a_sale(app, redirector, shop):
    """Stripe sends events in no fixed order: only invoices paid after the cancellation are past the subscription."""
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 30
    outcomes = deliver(
        app,
        shop["program"].id,
        event("checkout.session.completed",
              checkout("cs_c1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1"),
              created=start),
        event("invoice.paid", invoice("in_c1", amount=5000, reason="subscription_create"), created=start + 1),
        event("customer.subscription.deleted", subscription_deleted("sub_1"), created=start + 10),
        event("invoice.paid", invoice("in_c2", amount=5000, reason="subscription_cycle"), created=start + 5),
        event("invoice.paid", invoice("in_c3", amount=5000, reason="subscription_cycle"), created=start + 20),
    )  # fmt: skip
    assert outcomes == ["recorded", "recorded", "recorded", "recorded", "ignored"]
    assert [order for kind, order, _, _ in sales_and_refunds(app) if kind == "sale"] == ["in_c1", "in_c2"]


def test_checkouts_paid_by_bank_debit_are_credited_when_the_debit_settles(app, redirector, shop):
    """A SEPA or ACH debit completes the checkout unpaid: a subscription's invoices are still its sales, and a
    one-off payment is a sale once checkout.session.async_payment_succeeded says it settled."""
    click_id = clicked(redirector, shop["link"].code)
    start = int(time.time()) + 30
    unpaid_subscription = checkout(
        "cs_d1", mode="subscription", amount=5000, reference=click_id, subscription="sub_1"
    ) | {"payment_status": "unpaid"}
    unpaid_one_off = checkout(
        "cs_d2", mode="payment", amount=3000, reference=click_id, customer="cus_Beta2", payment_intent="pi_d2"
    ) | {"payment_status": "unpaid"}
    settled = "checkout.session.async_payment_succeeded"
    outcomes = deliver(
        app,
        shop["program"].id,
        event("checkout.session.completed", unpaid_subscription, created=start),
        event("checkout.session.completed", unpaid_one_off, created=start + 1),
        event("invoice.paid", invoice("in_d1", amount=5000, reason="subscription_create"), created=start + 3),
        event(settled, unpaid_one_off | {"payment_status": "paid"}, created=start + 4),
        event(settled, unpaid_subscription | {"payment_status": "paid"}, created=start + 5),
    )  # fmt: skip
    assert outcomes == ["recorded", "ignored", "recorded", "recorded", "recorded"]
    sales = sorted((order, amount) for kind, order, amount, _ in sales_and_refunds(app) if kind == "sale")
    assert sales == [("in_d1", 5000), ("pi_d2", 3000)]
    assert earned(app, shop["alice"].id) == 1600
