"""Attribution: which click, if any, earned a conversion, and a trace that says why.

Pure functions: the conversion's facts, the candidate clicks (touches), the program's terms
and an existing customer binding go in; the decision comes out. No clock, no database.

The rules, in order:

1. Matching. A touch matches the conversion by its click id (the strongest evidence: the
   merchant names the click), else by its visitor cookie, else by its device fingerprint
   (the weakest). Empty values never match. A touch that matches nothing loses ("no_match").
2. Qualifying. A matching touch qualifies when it is on the conversion's program, was made at
   or before the conversion, at most ``window`` before it (inclusive: a conversion exactly
   ``window`` after the click is attributed, one second later it is not), is not a bot, was
   not rejected by fraud rules, and its affiliate is active in the program (not suspended, and
   admitted by its enrollment: never removed from it). The first failed test is its reason.
3. Confidence. Among qualifying touches, the strongest match tier that has any decides;
   qualifying touches of weaker tiers lose ("weaker_match").
4. Model. Within that tier, last click takes the latest touch and first click the earliest;
   equal times are broken by the click's database id (higher wins for last click, lower for
   first click), so the decision is the same however the candidates are ordered.
5. Binding. A customer whose earlier conversion was attributed stays with that affiliate for
   the program's recurring period: while the binding is in force (and its affiliate active) it
   wins over every click and code. An expired binding, or one whose affiliate is no longer
   active, is ignored, and the trace says so.
6. Codes. A coupon the customer typed (or a referral code carried by ct.js) names an affiliate
   without a click. A code that is not the program's, retired, or whose affiliate is not active
   is ignored. A valid code credits its affiliate when no click qualifies; when a click of
   another affiliate qualifies, the program's precedence decides (``Terms.code_wins``). When the
   winning click is the code's own affiliate's, both agree and the click is credited.
7. Pause. While the program is paused (``Terms.paused``) the decision is made and traced all the
   same, and credits nobody: what would have won loses to "program_paused".

Why one module: the seven rules above are one decision, and each step below is written in their order, with
the trace line that explains it beside the code that decides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MATCH_ORDER = ("click_id", "visitor", "fingerprint")
LAST_CLICK = "last_click"
FIRST_CLICK = "first_click"


@dataclass(frozen=True)
class Touch:
    """One candidate click, as loaded from the clicks table."""

    id: int
    click_id: str
    program_id: int
    affiliate_id: int
    link_id: int
    clicked_at: datetime
    visitor_id: str | None
    fingerprint: str | None
    is_bot: bool = False
    fraud_action: str | None = None
    affiliate_active: bool = True


@dataclass(frozen=True)
class ConversionFacts:
    program_id: int
    occurred_at: datetime
    click_id: str | None = None
    visitor_id: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Terms:
    window: timedelta
    model: str = LAST_CLICK
    code_wins: bool = False  # a valid code wins over another affiliate's qualifying click
    paused: bool = False  # the program is paused: what would have won is recorded, and credits nobody


@dataclass(frozen=True)
class Code:
    """A coupon (or referral code) the conversion carried, as found in the program; None fields: not found."""

    kind: str  # "coupon" | "referral_code"
    code: str
    id: int | None = None  # the coupon's id, or the link's for a referral code
    affiliate_id: int | None = None
    link_id: int | None = None
    usable: bool = True  # False: retired, declined or still requested
    affiliate_active: bool = True


@dataclass(frozen=True)
class Binding:
    """A customer already bound to an affiliate by an earlier attributed conversion."""

    affiliate_id: int
    touch_id: int | None
    bound_at: datetime
    until: datetime | None  # end of the recurring period; None binds for life
    affiliate_active: bool = True


@dataclass(frozen=True)
class TraceLine:
    touch_id: int | None
    click_id: str | None
    affiliate_id: int | None
    link_id: int | None
    clicked_at: datetime | None
    matched_by: str | None
    outcome: str  # "won" | "lost" | "ignored" (a binding not in force)
    reason: str
    detail: str

    def as_dict(self) -> dict:
        return {
            "touch_id": self.touch_id,
            "click_id": self.click_id,
            "affiliate_id": self.affiliate_id,
            "link_id": self.link_id,
            "clicked_at": self.clicked_at.isoformat() if self.clicked_at else None,
            "matched_by": self.matched_by,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Attribution:
    touch: Touch | None
    affiliate_id: int | None
    matched_by: str | None
    trace: tuple[TraceLine, ...]
    model: str = LAST_CLICK
    window_seconds: int = 0
    code: Code | None = None
    code_wins: bool = False
    # Whether the code's affiliate had a qualifying click of their own (None: no valid code).
    code_affiliate_clicked: bool | None = None
    paused: bool = False

    def as_dict(self) -> dict:
        """JSON-ready: times as ISO 8601 strings."""
        decided = {
            "affiliate_id": self.affiliate_id,
            "touch_id": self.touch.id if self.touch else None,
            "matched_by": self.matched_by,
            "model": self.model,
            "window_seconds": self.window_seconds,
            "summary": self.summary,
            "trace": [line.as_dict() for line in self.trace],
        }
        if self.paused:
            decided["paused"] = True
        if self.code is not None:
            decided["code"] = {
                "kind": self.code.kind,
                "code": self.code.code,
                "id": self.code.id,
                "precedence": "code" if self.code_wins else "click",
            }
        return decided

    @property
    def summary(self) -> str:
        if self.paused:
            return "The program is paused: the conversion is recorded and credits no affiliate."
        if self.affiliate_id is None:
            return "No qualifying click: the conversion is not attributed."
        if self.matched_by == "binding":
            return "The customer is bound to the affiliate credited with their first conversion."
        if self.matched_by in CODE_NAMES:
            return f"The {CODE_NAMES[self.matched_by]} {self.code.code} credits its affiliate."
        rule = "latest" if self.model == LAST_CLICK else "earliest"
        return f"The {rule} qualifying click matched by {MATCH_NAMES[self.matched_by]} wins."


MATCH_NAMES = {"click_id": "click id", "visitor": "visitor cookie", "fingerprint": "device fingerprint"}
CODE_NAMES = {"coupon": "coupon", "referral_code": "referral code"}


def attribute(
    conversion: ConversionFacts,
    touches: Iterable[Touch],
    terms: Terms,
    binding: Binding | None = None,
    code: Code | None = None,
) -> Attribution:
    """Decide which touch earned the conversion, following the rules in this module's docstring."""
    _aware(conversion.occurred_at)
    candidates = sorted(touches, key=lambda touch: (touch.clicked_at, touch.id))
    for touch in candidates:
        _aware(touch.clicked_at)
    window_seconds = int(terms.window.total_seconds())
    lines: dict[int, TraceLine] = {}
    qualifying: dict[str, list[Touch]] = {tier: [] for tier in MATCH_ORDER}
    for touch in candidates:
        match = _match(touch, conversion)
        reason = "no_match" if match is None else _disqualified(touch, conversion, terms)
        if reason is None:
            qualifying[match].append(touch)
        else:
            lines[touch.id] = _line(touch, match, "lost", reason, _why(reason, touch, conversion, terms))

    bound = _binding_in_force(binding, conversion)
    binding_line = _binding_line(binding, bound)
    winner: Touch | None = None
    tier: str | None = None
    if bound:
        for matched, group in qualifying.items():
            for touch in group:
                won = touch.id == binding.touch_id
                lines[touch.id] = _line(
                    touch,
                    matched,
                    "won" if won else "lost",
                    "won" if won else "customer_bound",
                    "The bound customer's original click." if won else BOUND,
                )
        winner = next((touch for touch in candidates if touch.id == binding.touch_id), None)
    else:
        tier = next((name for name in MATCH_ORDER if qualifying[name]), None)
        if tier is not None:
            winner = _pick(qualifying[tier], terms.model)
        for matched, group in qualifying.items():
            for touch in group:
                if touch is winner:
                    lines[touch.id] = _line(touch, matched, "won", "won", WON[terms.model])
                elif matched != tier:
                    lines[touch.id] = _line(touch, matched, "lost", "weaker_match", _weaker(matched, tier))
                else:
                    reason = _lost_to(touch, winner, terms.model)
                    lines[touch.id] = _line(touch, matched, "lost", reason, LOST[reason])
    problem = _code_problem(code) if code is not None else None
    valid = code is not None and problem is None
    clicked = (
        any(touch.affiliate_id == code.affiliate_id for group in qualifying.values() for touch in group)
        if valid
        else None
    )
    decided = {"code": code, "code_wins": terms.code_wins, "code_affiliate_clicked": clicked}
    code_line = None
    code_takes_it = False
    if code is not None:
        if problem is not None:
            code_line = _code_line(code, "ignored", problem, CODE_IGNORED[problem])
        elif bound:
            code_line = _code_line(code, "lost", "customer_bound", BOUND)
        elif winner is None:
            code_takes_it = True
            code_line = _code_line(code, "won", "no_click", "No click qualifies: the code credits its affiliate.")
        elif winner.affiliate_id == code.affiliate_id:
            code_line = _code_line(code, "won", "same_affiliate", "The winning click is the code's affiliate's too.")
        elif terms.code_wins:
            code_takes_it = True
            code_line = _code_line(code, "won", "code_wins", "The program lets a code win over a click.")
            lines[winner.id] = _line(
                winner,
                tier,
                "lost",
                "code_wins",
                "A code of another affiliate wins: the program lets codes win over clicks.",
            )
        else:
            code_line = _code_line(
                code,
                "lost",
                "click_wins",
                "A qualifying click of another affiliate wins: the program lets clicks win over codes.",
            )
    trace = tuple(lines[touch.id] for touch in candidates)
    if code_line is not None:
        trace = (code_line, *trace)
    if binding_line is not None:
        trace = (binding_line, *trace)
    if bound:
        result = Attribution(winner, binding.affiliate_id, "binding", trace, terms.model, window_seconds, **decided)
    elif code_takes_it:
        result = Attribution(None, code.affiliate_id, code.kind, trace, terms.model, window_seconds, **decided)
    else:
        result = Attribution(
            winner,
            winner.affiliate_id if winner else None,
            tier if winner else None,
            trace,
            terms.model,
            window_seconds,
            **decided,
        )
    return _paused(result) if terms.paused else result


PAUSED = "The program was paused when the conversion arrived: it credits no affiliate."


def _paused(result: Attribution) -> Attribution:
    """What a paused program keeps of a decision: the trace, with what would have won marked as lost to the pause."""
    pause = TraceLine(None, None, None, None, None, None, "lost", "program_paused", PAUSED)
    trace = tuple(
        replace(line, outcome="lost", reason="program_paused", detail=PAUSED) if line.outcome == "won" else line
        for line in result.trace
    )
    if not any(line.reason == "program_paused" for line in trace):
        trace = (pause, *trace)
    return replace(
        result, touch=None, affiliate_id=None, matched_by=None, trace=trace, code_affiliate_clicked=None, paused=True
    )


CODE_IGNORED = {
    "code_unknown": "No such code in this program.",
    "code_not_usable": "The code is retired, declined or not yet approved.",
    "code_affiliate_inactive": "The code's affiliate is not active in the program (suspended, not approved, or "
    "removed from it).",
}


def _code_problem(code: Code) -> str | None:
    if code.affiliate_id is None:
        return "code_unknown"
    if not code.usable:
        return "code_not_usable"
    if not code.affiliate_active:
        return "code_affiliate_inactive"
    return None


def _code_line(code: Code, outcome: str, reason: str, detail: str) -> TraceLine:
    return TraceLine(
        None,
        None,
        code.affiliate_id,
        code.link_id,
        None,
        code.kind,
        outcome,
        reason,
        f"{CODE_NAMES[code.kind].capitalize()} {code.code}: {detail}",
    )


WON = {
    LAST_CLICK: "The latest qualifying click with the strongest match.",
    FIRST_CLICK: "The earliest qualifying click with the strongest match.",
}
LOST = {
    "older": "A later qualifying click won (last click).",
    "newer": "An earlier qualifying click won (first click).",
    "tie_lower_id": "Made at the same moment as the winner, which has the higher click id (last click).",
    "tie_higher_id": "Made at the same moment as the winner, which has the lower click id (first click).",
}
BOUND = "The customer is bound to the affiliate of their first attributed conversion."


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("attribution needs timezone-aware datetimes")


def _match(touch: Touch, conversion: ConversionFacts) -> str | None:
    if conversion.click_id and touch.click_id == conversion.click_id:
        return "click_id"
    if conversion.visitor_id and touch.visitor_id == conversion.visitor_id:
        return "visitor"
    if conversion.fingerprint and touch.fingerprint == conversion.fingerprint:
        return "fingerprint"
    return None


def _disqualified(touch: Touch, conversion: ConversionFacts, terms: Terms) -> str | None:
    if touch.program_id != conversion.program_id:
        return "other_program"
    if touch.clicked_at > conversion.occurred_at:
        return "after_conversion"
    if conversion.occurred_at - touch.clicked_at > terms.window:
        return "outside_window"
    if touch.is_bot:
        return "bot"
    if touch.fraud_action == "reject":
        return "fraud_rejected"
    if not touch.affiliate_active:
        return "affiliate_inactive"
    return None


def _why(reason: str, touch: Touch, conversion: ConversionFacts, terms: Terms) -> str:
    if reason == "outside_window":
        age = conversion.occurred_at - touch.clicked_at
        return f"Clicked {_span(age)} before the conversion; the window is {_span(terms.window)}."
    return {
        "no_match": "Matches neither the click id, the visitor cookie nor the device of the conversion.",
        "other_program": "A click on another program.",
        "after_conversion": "Clicked after the conversion happened.",
        "bot": "A bot or preview click never earns.",
        "fraud_rejected": "Rejected by a fraud rule.",
        "affiliate_inactive": "The affiliate is not active in the program (suspended, not approved, or removed from "
        "it).",
    }[reason]


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
        f"{seconds} s" if seconds else "",
    ]
    return " ".join(part for part in parts if part) or "0 s"


def _pick(group: list[Touch], model: str) -> Touch:
    if model == FIRST_CLICK:
        return min(group, key=lambda touch: (touch.clicked_at, touch.id))
    return max(group, key=lambda touch: (touch.clicked_at, touch.id))


def _lost_to(touch: Touch, winner: Touch, model: str) -> str:
    if touch.clicked_at == winner.clicked_at:
        return "tie_lower_id" if model == LAST_CLICK else "tie_higher_id"
    return "older" if model == LAST_CLICK else "newer"


def _weaker(matched: str, tier: str | None) -> str:
    return f"Matched by {MATCH_NAMES[matched]}; a click matched by {MATCH_NAMES[tier]} is stronger evidence."


def _binding_in_force(binding: Binding | None, conversion: ConversionFacts) -> bool:
    if binding is None or not binding.affiliate_active:
        return False
    if binding.bound_at > conversion.occurred_at:
        return False
    return binding.until is None or conversion.occurred_at < binding.until  # as a repeat sale earns (docs/money.md)


def _binding_line(binding: Binding | None, bound: bool) -> TraceLine | None:
    if binding is None:
        return None
    if bound:
        outcome, reason, detail = "won", "customer_bound", BOUND
    elif not binding.affiliate_active:
        outcome, reason, detail = (
            "ignored",
            "binding_affiliate_inactive",
            "The bound affiliate is no longer active in the program.",
        )
    else:
        outcome, reason, detail = "ignored", "binding_expired", "The binding has ended (recurring period over)."
    return TraceLine(
        binding.touch_id, None, binding.affiliate_id, None, binding.bound_at, "binding", outcome, reason, detail
    )


def _line(touch: Touch, matched: str | None, outcome: str, reason: str, detail: str) -> TraceLine:
    return TraceLine(
        touch.id, touch.click_id, touch.affiliate_id, touch.link_id, touch.clicked_at, matched, outcome, reason, detail
    )
