"""What each webhook event says: the ``data`` of its message, a plain dict built from the rows of the event.

Every payload holds ids, statuses, amounts in minor units next to their currency (``"amount": 12345,
"currency": "USD"``, as the conversion API answers) and times in ISO 8601 UTC (``"2026-12-01T09:30:00Z"``).
None holds a secret (signing secrets, API keys, password or second-factor hashes), payout details (an IBAN, a
PayPal or Wise address, the payee's name as the bank has it), fraud evidence (scores, the rules that fired,
reviewers' notes, suspension reasons), or where a customer was (IP address, device fingerprint, visitor cookie).
A customer's email is sent only when the merchant reported it; the address a member typed on our hosted signup
page stays with us. A change that breaks receivers gets a new ``webhooks.API_VERSION``.
"""

from __future__ import annotations

import json
from datetime import datetime

from affiliate.models import Commission, Conversion, Enrollment, Link, Payout, PayoutBatch, User


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def affiliate(user: User, *, previous_status: str | None = None) -> dict:
    """affiliate.applied / .approved / .suspended: the account and the contact details its owner gave the program.

    ``previous_status`` tells an approval from a reactivation (both make the affiliate active).
    """
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "website": user.website,
        "status": user.status,
        "previous_status": previous_status,
        "referred_by": user.referred_by_id,
        "created_at": iso(user.created_at),
        "decided_at": iso(user.decided_at),
    }


def enrollment(row: Enrollment) -> dict:
    """enrollment.approved: an affiliate may now promote the program."""
    return {
        "program_id": row.program_id,
        "affiliate_id": row.affiliate_id,
        "status": row.status,
        "created_at": iso(row.created_at),
        "decided_at": iso(row.decided_at),
    }


def link(row: Link) -> dict:
    """link.created: the tracking link's code and what the affiliate labelled it with."""
    return {
        "id": row.id,
        "code": row.code,
        "program_id": row.program_id,
        "affiliate_id": row.affiliate_id,
        "campaign": row.campaign,
        **{f"sub{n}": getattr(row, f"sub{n}") for n in range(1, 6)},
        "deep_link": row.deep_link,
        "created_at": iso(row.created_at),
    }


def conversion(row: Conversion, *, status: str | None = None) -> dict:
    """conversion.created / .flagged / .approved / .rejected: a signup or sale, who it is credited to, and the
    customer as the merchant named them. ``status`` overrides a row not yet refreshed after an update."""
    trace = json.loads(row.decision_trace) if row.decision_trace else {}
    # A member's address from the hosted signup page is ours, not something the merchant told us.
    email = row.customer_email if row.customer_user_id is None else None
    return {
        "id": row.id,
        "program_id": row.program_id,
        "type": row.type,
        "order_id": row.order_id,
        "amount": row.amount_cents,
        "currency": row.currency,
        "status": status or row.status,
        "affiliate_id": row.affiliate_id,
        "attribution": {"attributed": row.affiliate_id is not None, "matched_by": trace.get("matched_by")},
        "customer": {"external_id": row.customer_external_id, "email": email},
        "metadata": json.loads(row.extra) if row.extra else {},
        "occurred_at": iso(row.occurred_at),
        "created_at": iso(row.created_at),
    }


def refund(row: Conversion) -> dict:
    """refund.created: a full or partial refund of an earlier sale (``refund_of`` is the sale's id)."""
    return {
        "id": row.id,
        "program_id": row.program_id,
        "order_id": row.order_id,
        "refund_id": row.refund_key or None,
        "refund_of": row.refund_of_id,
        "amount": row.amount_cents,
        "currency": row.currency,
        "affiliate_id": row.affiliate_id,
        "occurred_at": iso(row.occurred_at),
        "created_at": iso(row.created_at),
    }


def commission(row: Commission, *, status: str) -> dict:
    """commission.created / .approved: what one conversion earns one beneficiary. ``status`` is passed in: the
    row's own is expired by the guarded update that changed it."""
    return {
        "id": row.id,
        "program_id": row.program_id,
        "conversion_id": row.conversion_id,
        "affiliate_id": row.affiliate_id,
        "kind": row.kind,
        "tier_level": row.tier_level,
        "amount": row.amount_cents,
        "currency": row.currency,
        "status": status,
        "available_at": iso(row.available_at),
        "created_at": iso(row.created_at),
    }


def commission_reversed(
    row: Commission, *, status: str, reversed_cents: int, reason: str, refund: Conversion | None = None
) -> dict:
    """commission.reversed: part or all of a commission taken back, how much now, and why.

    ``reason`` is "refund" (``refund`` names it; a partial refund leaves the commission live, its status
    unchanged), "conversion_rejected" (its conversion was rejected in review) or "commission_rejected"
    (finance rejected the pending commission itself).
    """
    return commission(row, status=status) | {
        "reversed_amount": reversed_cents,
        "reason": reason,
        "refund": None if refund is None else {"id": refund.id, "refund_id": refund.refund_key or None},
    }


def payout_batch(batch: PayoutBatch, *, payouts: int, held: int, approved_at: datetime) -> dict:
    """payout_batch.approved: a batch the second finance user approved; ``held`` payouts are not being paid."""
    return {
        "id": batch.id,
        "currency": batch.currency,
        "total": batch.total_cents,
        "status": "approved",
        "payouts": payouts,
        "held": held,
        "created_at": iso(batch.created_at),
        "approved_at": iso(approved_at),
    }


def payout(row: Payout, *, status: str, reference: str | None = None, paid_at: datetime | None = None) -> dict:
    """payout.paid / .failed: one affiliate's payout in a batch and how it was sent, never where to (the
    destination is payout details); a failure's reason is finance's own words and stays in the portal."""
    return {
        "id": row.id,
        "batch_id": row.batch_id,
        "affiliate_id": row.affiliate_id,
        "amount": row.amount_cents,
        "currency": row.currency,
        "method": row.method,
        "status": status,
        "reference": reference,
        "paid_at": iso(paid_at),
    }
