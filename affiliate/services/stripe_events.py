"""Stripe's events, read directly: a checkout becomes a sale (or binds a subscriber), a paid invoice a recurring
sale, a refunded charge a refund, a cancelled subscription the end of its recurring sales.

Each event is handled once per Stripe event id (``stripe_events``); a replay gets the first outcome. Stripe
sends events out of order: an invoice of a subscription whose checkout has not arrived yet waits, with its
payload, and is taken up when the checkout is; a refund's amount is worked out from the charge's running
total (``amount_refunded``), so two refunds arriving in either order, or twice, refund what Stripe did.
Amounts are Stripe's minor units as they are, in the currency Stripe names (upper-cased).

Why one module: every handler reads and writes the same few records (the event, the customer binding, the payment
record of each sale) in the order Stripe may send them, and the waiting, matching and savepoint rules between the
handlers only make sense side by side.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from affiliate.models import (
    Click,
    Conversion,
    ConversionType,
    Link,
    Program,
    StripeCustomer,
    StripeEvent,
    StripePayment,
)
from affiliate.services import coupons
from affiliate.services.conversions import (
    MAX_AMOUNT_CENTS,
    ConversionError,
    ConversionRequest,
    RefundRequest,
    click_awaitable,
    record_conversion,
    record_refund,
)

CLICK_ID = re.compile(r"[A-Za-z0-9_-]{22,32}")
# Stripe's object ids (cus_..., in_..., pi_...): kept only in this shape, so nothing else reaches a column.
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,128}")
REFERENCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
EMAIL = re.compile(r"[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+")
RECORDED, WAITING, IGNORED, REFUSED = "recorded", "waiting", "ignored", "refused"


class Outcome(Exception):
    """How an event ends when it is not recorded: ``status`` and a reason for the admin's event log."""

    def __init__(self, status: str, detail: str, waiting_for: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.waiting_for = status, detail, waiting_for


def receive(session: Session, program: Program, event: dict, *, now: datetime) -> StripeEvent:
    """Handle a verified event once; the same event id again returns the stored outcome. The caller commits.

    A program's events are handled one at a time (its row locked on PostgreSQL, as SQLite's single writer
    does): an invoice deciding to wait and the checkout taking up what waits must not pass each other.
    """
    session.execute(select(Program.id).where(Program.id == program.id).with_for_update(key_share=True))
    stored = _stored(session, program.id, event["id"])
    if stored is not None:
        return stored
    row = StripeEvent(
        program_id=program.id,
        event_id=event["id"],
        type=event["type"][:64],
        received_at=now,
        stripe_created_at=datetime.fromtimestamp(event["created"], UTC),
        status=IGNORED,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same event, delivered twice at once: the other delivery handles it
        return _stored(session, program.id, event["id"])
    _handle(session, program, row, event, now)
    if row.status == RECORDED:
        _take_up_waiting(session, program, _customer(event), now)
        _take_up_waiting(session, program, _payment_intent(event), now)
    return row


def _handle(session: Session, program: Program, row: StripeEvent, event: dict, now: datetime) -> None:
    handler = {
        "checkout.session.completed": _checkout,
        # A checkout paid by a bank debit completes unpaid; this comes when the debit settles.
        "checkout.session.async_payment_succeeded": _checkout,
        "invoice.paid": _invoice,
        "charge.refunded": _refund,
        "customer.subscription.deleted": _cancelled,
    }.get(event["type"])
    try:
        if handler is None:
            raise Outcome(IGNORED, "Clicktrail does not use this event.")
        # In a savepoint: an event refused or left waiting halfway keeps nothing its handler had begun to write.
        with session.begin_nested():
            conversion_id = handler(session, program, event["data"]["object"], row.stripe_created_at, now)
        row.conversion_id = conversion_id
        row.status, row.detail, row.waiting_for, row.payload = RECORDED, None, None, None
    except Outcome as outcome:
        row.status, row.detail, row.waiting_for = outcome.status, outcome.detail[:500], outcome.waiting_for
        row.payload = json.dumps(event) if outcome.status == WAITING else None
    except ConversionError as error:
        row.status, row.detail, row.waiting_for, row.payload = REFUSED, error.message[:500], None, None


def _take_up_waiting(session: Session, program: Program, customer: str | None, now: datetime) -> None:
    """Events that waited for this customer's checkout, in Stripe's order."""
    if not customer:
        return
    waiting = session.scalars(
        select(StripeEvent)
        .where(StripeEvent.program_id == program.id, StripeEvent.status == WAITING, StripeEvent.waiting_for == customer)
        .order_by(StripeEvent.stripe_created_at, StripeEvent.id)
        .with_for_update(key_share=True)
    ).all()
    for row in waiting:
        _handle(session, program, row, json.loads(row.payload), now)


def _checkout(session: Session, program: Program, checkout: dict, at: datetime, now: datetime) -> int | None:
    subscribing = checkout.get("mode") == "subscription"
    # A subscription's invoices are its sales, paid or not yet at checkout (a bank debit settles days later); a
    # one-off checkout paid by a debit is a sale when it is paid (checkout.session.async_payment_succeeded).
    if not subscribing and checkout.get("payment_status") not in ("paid", "no_payment_required"):
        raise Outcome(IGNORED, "The checkout is not paid yet: a debit is a sale once it settles.")
    click_id, referral_code = _reference(session, program, checkout.get("client_reference_id"), now)
    coupon = _coupon(session, program, checkout)
    if not (click_id or referral_code or coupon):
        raise Outcome(IGNORED, "The checkout names no click, referral code or affiliate coupon.")
    customer = _text(checkout.get("customer"))
    if subscribing:
        if not customer:
            raise Outcome(IGNORED, "A subscription checkout without a customer.")
        bound = _bound(session, program, customer)
        if bound is None:
            bound = StripeCustomer(program_id=program.id, customer_id=customer, created_at=now)
            session.add(bound)
        bound.checkout_session_id = _object_id(checkout)
        bound.click_id, bound.referral_code, bound.coupon = click_id, referral_code, coupon
        subscription = _text(checkout.get("subscription"))
        if subscription != bound.subscription_id:  # a new subscription; the same checkout again ends nothing
            bound.subscription_id, bound.ended_at = subscription, None
        session.flush()
        return None  # its invoices are the sales
    invoice = _text(checkout.get("invoice"))  # a one-off checkout that also issues an invoice names it
    _unless_paid_already(session, program, _text(checkout.get("payment_intent")), invoice)
    order_id = _text(checkout.get("payment_intent")) or _object_id(checkout)
    report = ConversionRequest(
        type=ConversionType.SALE,
        order_id=order_id,
        amount_cents=_amount(checkout.get("amount_total")),
        currency=_currency(checkout.get("currency")),
        customer_external_id=customer,
        customer_email=_checkout_email(checkout),
        click_id=click_id,
        referral_code=referral_code,
        coupon=coupon,
        occurred_at=at,
        metadata={"stripe_checkout_session": _object_id(checkout)},
    )
    conversion = record_conversion(session, program, report, now=now).conversion
    session.add(
        StripePayment(
            program_id=program.id,
            order_id=order_id,
            payment_intent=_text(checkout.get("payment_intent")),
            invoice=invoice,
            amount_cents=report.amount_cents,
        )
    )
    return conversion.id


def _invoice(session: Session, program: Program, invoice: dict, at: datetime, now: datetime) -> int | None:
    customer = _text(invoice.get("customer"))
    bound = _bound(session, program, customer) if customer else None
    first = invoice.get("billing_reason") == "subscription_create"
    if not bound:
        if first and customer:
            raise Outcome(WAITING, "Waiting for the subscription's checkout.", waiting_for=customer)
        raise Outcome(IGNORED, "The customer did not come through a referral.")
    subscription = _subscription(invoice)
    # Stripe sends events in no fixed order: an invoice paid before the cancellation but delivered after it is
    # still a sale of the subscription.
    if bound.ended_at is not None and subscription == bound.subscription_id and at >= bound.ended_at:
        raise Outcome(IGNORED, "The subscription was cancelled: its recurring period is over.")
    amount = _amount(invoice.get("amount_paid"))
    if amount == 0:
        raise Outcome(IGNORED, "Nothing was paid (a trial or a fully discounted invoice).")
    invoice_id = _object_id(invoice)
    payment_intent, charge = _invoice_payment(invoice)
    _unless_paid_already(session, program, payment_intent, invoice_id)
    report = ConversionRequest(
        type=ConversionType.SALE,
        order_id=invoice_id,
        amount_cents=amount,
        currency=_currency(invoice.get("currency")),
        customer_external_id=customer,
        customer_email=_email(invoice.get("customer_email")),
        # The first invoice is credited as its checkout was; later ones follow the customer's binding.
        click_id=bound.click_id if first else None,
        referral_code=bound.referral_code if first else None,
        coupon=bound.coupon if first else None,
        occurred_at=at,
        metadata={"stripe_invoice": invoice_id, "stripe_subscription": subscription or ""},
    )
    conversion = record_conversion(session, program, report, now=now).conversion
    session.add(
        StripePayment(
            program_id=program.id,
            order_id=invoice_id,
            invoice=invoice_id,
            payment_intent=payment_intent,
            charge=charge,
            amount_cents=amount,
        )
    )
    return conversion.id


def _refund(session: Session, program: Program, charge: dict, at: datetime, now: datetime) -> int | None:
    keys = {
        "charge": _text(charge.get("id")),
        "payment_intent": _text(charge.get("payment_intent")),
        "invoice": _text(charge.get("invoice")),
    }
    matches = [getattr(StripePayment, key) == value for key, value in keys.items() if value]
    payment = matches and session.scalar(
        select(StripePayment).where(StripePayment.program_id == program.id, or_(*matches)).limit(1)
    )
    customer = _text(charge.get("customer"))
    if not payment and customer:
        payment = _invoice_paid_by(session, program, customer, charge)
    if not payment:
        # Stripe sends events in no fixed order: the refund may come before the checkout or invoice it refunds.
        # It waits for them, on the customer, or (a guest checkout, Checkout's default in payment mode, names
        # none) on the payment intent.
        waiting_for = customer or keys["payment_intent"]
        if waiting_for:
            raise Outcome(WAITING, "Waiting for the sale this charge paid.", waiting_for=waiting_for)
        raise Outcome(IGNORED, "The charge paid no referred sale.")
    if not payment.payment_intent and keys["payment_intent"]:
        payment.payment_intent = keys["payment_intent"]
    if not payment.charge and keys["charge"]:
        payment.charge = keys["charge"]
    sale = session.scalar(
        select(Conversion)
        .where(
            Conversion.program_id == program.id,
            Conversion.order_id == payment.order_id,
            Conversion.type == ConversionType.SALE,
        )
        .with_for_update(key_share=True)
    )
    if sale is None:
        raise Outcome(IGNORED, "The sale this charge paid was not recorded.")
    refunded = session.scalar(
        select(func.coalesce(func.sum(Conversion.amount_cents), 0)).where(Conversion.refund_of_id == sale.id)
    )
    total = min(_amount(charge.get("amount_refunded")), sale.amount_cents)
    if total <= refunded:
        raise Outcome(IGNORED, f"Already refunded {refunded} of the {total} Stripe has refunded.")
    report = RefundRequest(
        order_id=payment.order_id,
        refund_id=_refund_key(keys["charge"], total),
        amount_cents=total - refunded,
        occurred_at=at,
    )
    return record_refund(session, program, report, now=now).conversion.id


# An invoice is marked paid when the charge that pays it succeeds: minutes after the charge is made for a card, days
# for a bank debit (SEPA, ACH) that settles later; never before it, but for clocks an hour apart.
CHARGE_SKEW = timedelta(hours=1)
SETTLES_WITHIN = timedelta(days=14)


def _invoice_paid_by(session: Session, program: Program, customer: str, charge: dict) -> StripePayment | None:
    """The customer's invoice this charge paid, when the events cannot say which: API versions from 2025
    (basil) name neither the charge nor the payment intent on an invoice, nor the invoice on a charge. Only an
    invoice recorded without either, of the customer and of the charge's amount, paid after the charge was made and
    within SETTLES_WITHIN of it (a subscription's invoices are all of one amount: the month before, paid before
    this charge existed, is not this charge's), and only when exactly one is, so a refund never lands on another
    payment; else the refund waits for its invoice."""
    created = charge.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created < 2**37:
        return None
    made = datetime.fromtimestamp(created, UTC)
    found = session.scalars(
        select(StripePayment)
        .join(
            Conversion,
            (Conversion.program_id == StripePayment.program_id) & (Conversion.order_id == StripePayment.order_id),
        )
        .where(
            StripePayment.program_id == program.id,
            StripePayment.invoice.is_not(None),
            StripePayment.payment_intent.is_(None),
            StripePayment.charge.is_(None),
            StripePayment.amount_cents == _amount(charge.get("amount")),
            Conversion.type == ConversionType.SALE,
            Conversion.customer_external_id == customer,
            Conversion.occurred_at.between(made - CHARGE_SKEW, made + SETTLES_WITHIN),
        )
        .limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def _invoice_payment(invoice: dict) -> tuple[str | None, str | None]:
    """The payment intent and charge that paid an invoice: on the invoice in older API versions; from 2025
    (basil) under ``payments`` when the event carries them."""
    payment_intent, charge = _text(invoice.get("payment_intent")), _text(invoice.get("charge"))
    for entry in _object(invoice.get("payments")).get("data") or []:
        paid = _object(_object(entry).get("payment"))
        payment_intent = payment_intent or _text(paid.get("payment_intent"))
        charge = charge or _text(paid.get("charge"))
    return payment_intent, charge


def _refund_key(charge: str | None, total: int) -> str:
    """The refund's id: the charge and Stripe's running total refunded, so each step of a charge is recorded once.
    A Stripe id may take all 128 characters a refund id has; a key that would not fit is a digest of itself."""
    key = f"{charge or 'charge'}-{total}"
    return key if len(key) <= 128 else "stripe-" + hashlib.sha256(key.encode()).hexdigest()


def _cancelled(session: Session, program: Program, subscription: dict, at: datetime, now: datetime) -> None:
    bound = session.scalar(
        select(StripeCustomer).where(
            StripeCustomer.program_id == program.id,
            StripeCustomer.customer_id == _text(subscription.get("customer")),
            StripeCustomer.subscription_id == _text(subscription.get("id")),
        )
    )
    if bound is None:
        raise Outcome(IGNORED, "Not the subscription of a referred customer.")
    bound.ended_at = at
    return None


def _unless_paid_already(
    session: Session, program: Program, payment_intent: str | None, invoice: str | None = None
) -> None:
    """One payment is one sale: a one-off Checkout that also issues an invoice sends both a completed checkout and
    a paid invoice for the same payment, and whichever comes second is not a second sale. They share the payment
    intent in older API versions; from 2025 (basil) an invoice may name none, but the checkout names its invoice."""
    matches = [
        column == value
        for column, value in ((StripePayment.payment_intent, payment_intent), (StripePayment.invoice, invoice))
        if value
    ]
    if not matches:
        return
    recorded = session.scalar(
        select(StripePayment.order_id).where(StripePayment.program_id == program.id, or_(*matches)).limit(1)
    )
    if recorded is not None:
        raise Outcome(IGNORED, f"This payment ({payment_intent or invoice}) is already recorded as sale {recorded}.")


def _bound(session: Session, program: Program, customer: str) -> StripeCustomer | None:
    return session.scalar(
        select(StripeCustomer).where(StripeCustomer.program_id == program.id, StripeCustomer.customer_id == customer)
    )


def _reference(session: Session, program: Program, reference, now: datetime) -> tuple[str | None, str | None]:
    """client_reference_id as ct.js offers it: a stored click id, else one of the program's link codes, else a click
    id issued within the last day whose click is still in a click log (the sale waits for it); anything else names
    no referral."""
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        return None, None
    if CLICK_ID.fullmatch(reference) and session.scalar(select(Click.id).where(Click.click_id == reference)):
        return reference, None
    if session.scalar(select(Link.id).where(Link.code == reference, Link.program_id == program.id)):
        return None, reference
    if CLICK_ID.fullmatch(reference) and click_awaitable(reference, now=now):
        return reference, None
    return None, None


def _coupon(session: Session, program: Program, checkout: dict) -> str | None:
    discounts = checkout.get("discounts")
    for discount in discounts if isinstance(discounts, list) else []:
        promotion = discount.get("promotion_code") if isinstance(discount, dict) else None
        if isinstance(promotion, dict):  # expanded
            promotion = promotion.get("id")
        coupon = coupons.by_promotion_code(session, program.id, _text(promotion))
        if coupon is not None:
            return coupon.code
    return None


def _customer(event: dict) -> str | None:
    return _text(event["data"]["object"].get("customer"))


def _payment_intent(event: dict) -> str | None:
    """The payment intent an event's checkout or invoice was paid by, which a guest's refund may wait on."""
    obj = event["data"]["object"]
    return _invoice_payment(obj)[0] if obj.get("object") == "invoice" else _text(obj.get("payment_intent"))


def _subscription(invoice: dict) -> str | None:
    """Older API versions name it on the invoice; 2025 versions under parent.subscription_details."""
    details = _object(_object(invoice.get("parent")).get("subscription_details"))
    return _text(invoice.get("subscription")) or _text(details.get("subscription"))


def _object(value) -> dict:
    """A nested object of the event; anything else (a string, a list, null) is treated as empty."""
    return value if isinstance(value, dict) else {}


def _email(value) -> str | None:
    """An address as the conversion API would take it; anything else is left out (it only feeds fraud rules)."""
    return value if isinstance(value, str) and EMAIL.fullmatch(value) and len(value) <= 254 else None


def _checkout_email(checkout: dict) -> str | None:
    details = checkout.get("customer_details")
    return _email(details.get("email") if isinstance(details, dict) else checkout.get("customer_email"))


def _text(value) -> str | None:
    """A Stripe id (an expanded object gives its id); anything else is treated as absent."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and STRIPE_ID.fullmatch(value) else None


def _object_id(obj: dict) -> str:
    found = _text(obj.get("id"))
    if found is None:
        raise Outcome(REFUSED, "The event's object has no id Clicktrail can keep.")
    return found


def _amount(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_AMOUNT_CENTS:
        raise Outcome(REFUSED, "The event's amount is not a whole number of minor units in range.")
    return value


def _currency(value) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise Outcome(REFUSED, "The event's currency is not a three-letter code.")
    return value.upper()


def _stored(session: Session, program_id: int, event_id: str) -> StripeEvent | None:
    return session.scalar(
        select(StripeEvent).where(StripeEvent.program_id == program_id, StripeEvent.event_id == event_id)
    )
