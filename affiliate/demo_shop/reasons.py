"""What the demo shop tells its shopper about the credit for their order, from the conversion API's answer alone.

One sentence per reason the answer can carry: how the partner who referred them was credited (``matched_by``),
why a click or code earned nothing (``attribution.reasons``, the trace's reasons) and which check held the order
back (``fraud.rules``). The shopper reads what they can act on, never a rule's identifier, an affiliate's id or
the evidence a check found (which network, which device): the same redaction as an affiliate's view of a trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from affiliate.demo_shop.merchant import StoredSale

# How the partner was credited, by what matched the order.
CREDITED = {
    "click_id": "You came through the partner's link, so the partner who referred you is credited with this order.",
    "visitor": "This browser came through the partner's link earlier (its cookie remembers the visit), so the partner "
    "who referred you is credited.",
    "fingerprint": "This device came through the partner's link earlier, so the partner who referred you is credited.",
    "binding": "You first bought through this partner, so they keep the credit for your orders during the program's "
    "recurring period.",
    "coupon": "You used the coupon of the partner who referred you, so they are credited.",
    "referral_code": "The partner's referral code came with your order, so they are credited.",
}
# Why a click or a code earned nothing, by the reason in the answer ("no_click": the answer names no reason at all).
NOT_CREDITED = {
    "no_click": "You did not come through a partner's link (no link, cookie or device of a partner matched), so no "
    "partner is credited. Follow a partner's link before you buy to credit them.",
    "no_match": "The partner link on record does not match this order's link, browser or device.",
    "other_program": "The partner link you followed was for another program.",
    "after_conversion": "The partner's link was followed after the order was placed, so it did not lead to it.",
    "outside_window": "You followed the partner's link longer ago than this program credits visits for, so that "
    "visit no longer counts. Follow the link again before you buy.",
    "bot": "The visit through the partner's link looked automated (a bot or a link preview), and such visits never "
    "earn. Opening the link yourself in a browser counts.",
    "fraud_rejected": "A fraud check turned down the visit through the partner's link (for instance many clicks in a "
    "row, or a link loaded without anyone clicking it), so it earns nothing.",
    "affiliate_inactive": "The partner whose link you followed is not active in the program at the moment.",
    "weaker_match": "Another visit matched your order more surely, by its link rather than by a cookie or device.",
    "older": "You followed another partner's link later; this program credits the latest one.",
    "newer": "You followed another partner's link earlier; this program credits the first one.",
    "tie_lower_id": "Two partners' links were followed at the same moment; the program credits one of them.",
    "tie_higher_id": "Two partners' links were followed at the same moment; the program credits one of them.",
    "customer_bound": "You are a returning customer: the partner who first referred you keeps the credit.",
    "code_wins": "A partner's coupon came with your order, and this program lets a coupon win over a link.",
    "click_wins": "You came through another partner's link, and this program lets a link win over a coupon.",
    "binding_expired": "The credit your first purchase gave a partner has run out (the program's recurring period "
    "is over).",
    "binding_affiliate_inactive": "The partner who first referred you is no longer active in the program.",
    "code_unknown": "The coupon you entered is not a partner coupon of this program.",
    "code_not_usable": "The coupon you entered is retired or not approved yet, so it credits nobody.",
    "code_affiliate_inactive": "The partner whose coupon you entered is not active in the program at the moment.",
    "program_paused": "The shop's partner program is paused, so no partner is credited with orders placed meanwhile.",
}
# Which check held the order back, by fraud rule: what it noticed, in the shopper's terms.
HELD_BACK = {
    "self_referral": "The order came from the email address, network or device of the partner who referred you, and "
    "partners do not earn on their own purchases.",
    "too_fast": "The order came within seconds of following the partner's link, sooner than people usually buy.",
    "click_spamming": "Most of this partner's sales come long after their links were followed.",
    "existing_customer": "You have bought in this program before, and it pays partners for new customers only.",
    "disposable_email": "The email address is at a disposable-address provider.",
    "paid_traffic": "The partner's link was reached through a paid ad, which this program does not allow.",
    "blocked_country": "The visit came from a country this program does not accept.",
    "country_mismatch": "The partner's link was followed from one country and the order placed from another.",
    "conversion_rate_outlier": "This partner's links turn into sales far more often than is plausible.",
    "shared_device": "Many orders came from this network or device recently.",
    "coupon_leak": "This coupon is mostly used by shoppers who never followed its partner's link.",
}
HELD_BACK_OTHER = "A fraud check held the order back."
# What happens next, by the conversion's status.
NEXT = {
    "pending": "The partner's commission waits out the program's hold period before it is paid.",
    "approved": "The partner's commission is approved.",
    "flagged": "The program's finance team reviews the order before the partner earns anything from it.",
    "rejected": "The partner earns nothing from this order.",
}
REJECTED = "Your order came through a partner, but a fraud check rejected it, so no partner is credited with it."
STATUS = {"pending": "Recorded", "approved": "Approved", "flagged": "Waiting for review", "rejected": "Not credited"}


@dataclass(frozen=True)
class Explanation:
    """The credit for one order, as its shopper reads it."""

    status: str  # "Waiting for review"
    credited: bool
    reasons: tuple[str, ...]  # why the partner is or is not credited, one sentence each
    held_back: tuple[str, ...]  # why a check flagged or rejected the order
    next_step: str


def explain(answer: StoredSale) -> Explanation:
    """The conversion API's answer in the shopper's words."""
    conversion, attribution = answer.conversion, answer.attribution
    status = str(conversion.get("status") or "")
    lost = [reason for reason in attribution.get("reasons") or [] if reason in NOT_CREDITED]
    rejected = status == "rejected"
    if attribution.get("attributed") and rejected:
        # Matched, but a fraud check threw the order out: nobody is credited with it, whatever matched.
        reasons = (REJECTED,)
    elif attribution.get("attributed"):
        credited = CREDITED.get(attribution.get("matched_by") or "", "The partner who referred you is credited.")
        # What the shopper did that counted for nothing: the coupon they typed, or a link credited to another.
        reasons = (credited, *(NOT_CREDITED[r] for r in lost if r.startswith("code_") or r == "click_wins"))
    else:
        reasons = tuple(NOT_CREDITED[reason] for reason in lost) or (NOT_CREDITED["no_click"],)
    rules = (answer.conversion.get("fraud") or {}).get("rules") or []
    held = tuple(dict.fromkeys(HELD_BACK.get(rule, HELD_BACK_OTHER) for rule in rules))
    if status in ("flagged", "rejected") and not held:
        held = (HELD_BACK_OTHER,)
    return Explanation(
        status=STATUS.get(status, status.replace("_", " ").capitalize()),
        credited=bool(attribution.get("attributed")) and not rejected,
        reasons=tuple(dict.fromkeys(reasons)),
        held_back=held,
        next_step=NEXT.get(status, "") if attribution.get("attributed") else "",
    )
