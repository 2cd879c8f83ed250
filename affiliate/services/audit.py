"""The audit log: who changed what, when, from what to what; and each entry in words people read.

A change made through the management API names the admin who issued the key as its actor and the key itself
(``actor_key_id``): the API puts the key's id in ``session.info[API_KEY_INFO]`` for the length of the request.

``describe(entry, names)`` words one entry: a sentence ("Approved commission on order A-1001 ($12.00) for Bob
Blogger") and its changes ("Status: pending → approved"), amounts in the subject's currency and ids as names.
Every action written anywhere has a sentence in ``ACTIONS`` (a unit test scans the code for them); ``names_for``
loads, in a few queries, the names a page of entries needs.

Why one module: the writer and the wording of what it writes are one vocabulary; an action added to the one
needs its sentence in the other, and the test that says so reads both here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from affiliate.formatting import NOTHING, money, when
from affiliate.models import (
    Adjustment,
    ApiKey,
    AuditLog,
    Commission,
    Conversion,
    Coupon,
    PartnerGroup,
    Payout,
    PayoutBatch,
    Postback,
    Program,
    User,
    WebhookEndpoint,
)
from affiliate.services.fraud import action_label, rule_label, setting_label

API_KEY_INFO = "audit_api_key_id"


def record(
    session: Session,
    *,
    actor_id: int | None,
    action: str,
    subject_type: str,
    subject_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
    note: str | None = None,
) -> AuditLog:
    """Add one audit row describing a change; the caller commits it with the change."""
    entry = AuditLog(
        actor_id=actor_id,
        actor_key_id=session.info.get(API_KEY_INFO),
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=json.dumps(before, sort_keys=True, default=str) if before is not None else None,
        after=json.dumps(after, sort_keys=True, default=str) if after is not None else None,
        note=note,
        at=now,
    )
    session.add(entry)
    return entry


def entries(subjects: tuple[str, ...], action: str | None = None) -> Select:
    """Audit entries about any of ``subjects`` (of one ``action``, when given), newest first (for the paginator)."""
    query = select(AuditLog).where(AuditLog.subject_type.in_(subjects))
    if action:
        query = query.where(AuditLog.action == action)
    return query.order_by(AuditLog.at.desc(), AuditLog.id.desc())


def history_of(session: Session, subject_type: str, subject_id: int, limit: int | None = None) -> list:
    """The audit entries about one subject, newest first, each with its actor's email."""
    query = (
        select(AuditLog, User.email)
        .outerjoin(User, User.id == AuditLog.actor_id)
        .where(AuditLog.subject_type == subject_type, AuditLog.subject_id == subject_id)
        .order_by(AuditLog.id.desc())
    )
    return list(session.execute(query if limit is None else query.limit(limit)).all())


def latest(session: Session, limit: int) -> list:
    """The latest audit entries of any kind, newest first, each with its actor's email."""
    query = select(AuditLog, User.email).outerjoin(User, User.id == AuditLog.actor_id).order_by(AuditLog.id.desc())
    return list(session.execute(query.limit(limit)).all())


# Every action the code writes -> (the kind of change, for a filter; the sentence). In a sentence, {s} is the
# subject in words; {program}, {group}, {rule} and {whom} come from the entry's record (see ``_fields``).
ACTIONS: dict[str, tuple[str, str]] = {
    "commission.approval": ("Commission approved", "Approved {s}"),
    "commission.rejection": ("Commission rejected", "Rejected {s}"),
    "commission.conversion_rejected": ("Commission taken back", "Took back {s}: its conversion was rejected"),
    "conversion.approve": ("Conversion approved after review", "Approved {s} after review"),
    "conversion.reject": ("Conversion rejected", "Rejected {s}"),
    "conversion.erase": ("Customer's data erased", "Erased the customer's personal data from {s}"),
    "payout.held": ("Payout held", "Held {s}"),
    "payout.cancelled": ("Payout cancelled", "Cancelled {s}"),
    "payout.paid": ("Payout paid", "Marked {s} paid"),
    "payout.failed": ("Payout failed", "Marked {s} failed"),
    "payout_batch.build": ("Payout batch built", "Built {s}"),
    "payout_batch.approve": ("Payout batch approved", "Approved {s}"),
    "payout_batch.cancel": ("Payout batch cancelled", "Cancelled {s}"),
    "payout_batch.export": ("Payout file exported", "Exported the payout file of {s}"),
    "payout_batch.export_repeat": ("Payout file exported again", "Exported the payout file of {s} again"),
    "payout_batch.close": ("Payout batch closed", "Closed {s}: every payout in it is paid or failed"),
    "adjustment.create": ("Bonus or clawback added", "Added {s}"),
    "adjustment.approve": ("Bonus or clawback approved", "Approved {s}"),
    "adjustment.reject": ("Bonus or clawback rejected", "Rejected {s}"),
    "affiliate.approve": ("Affiliate approved", "Approved the affiliate account of {s}"),
    "affiliate.reject": ("Application declined", "Declined the application of {s}"),
    "affiliate.suspend": ("Affiliate suspended", "Suspended {s}"),
    "affiliate.reactivate": ("Affiliate reactivated", "Reactivated {s}"),
    "affiliate.recruiter_changed": ("Recruiter changed", "Changed who recruited {s}"),
    "enrollment.applied": ("Applied to a program", "Applied to join {s}"),
    "enrollment.invited": ("Joined by invitation", "Joined {s} by invitation"),
    "enrollment.approve": ("Enrollment approved", "Enrolled {s} in {program}"),
    "enrollment.reject": ("Enrollment declined", "Declined the application of {s} to {program}"),
    "enrollment.remove": ("Removed from a program", "Removed {s} from {program}"),
    "enrollment.kept": ("Kept on when a program stopped being open", "Kept {s} on in {program}"),
    "group.created": ("Partner group created", "Created the partner group {group} in {s}"),
    "group.moved": ("Moved to a partner group", "Moved {s} to {group} in {program}"),
    "plan.version_added": ("Commission plan changed", "Changed the commission plan of {s}{whom}"),
    "program.created": ("Program created", "Created the program {s}"),
    "program.updated": ("Program settings changed", "Changed the settings of {s}"),
    "program.stripe_secret_set": ("Stripe secret set", "Set the Stripe signing secret of {s}"),
    "program.stripe_secret_removed": ("Stripe secret removed", "Removed the Stripe signing secret of {s}"),
    "fraud_rule.update": ("Fraud rule changed", "Changed the fraud rule “{rule}” of {s}"),
    "coupon.requested": ("Coupon requested", "Requested {s}"),
    "coupon.created": ("Coupon created", "Created {s}"),
    "coupon.changed": ("Coupon changed", "Changed {s}"),
    "coupon.approved": ("Coupon approved", "Approved {s}"),
    "coupon.declined": ("Coupon declined", "Declined {s}"),
    "coupon.retired": ("Coupon retired", "Retired {s}"),
    "api_key.issue": ("API key issued", "Issued {s}"),
    "api_key.rotate": ("API key's secret rotated", "Started a new signing secret for {s}"),
    "api_key.retire_previous": ("API key's old secret retired", "Retired the previous signing secret of {s}"),
    "api_key.revoke": ("API key revoked", "Revoked {s}"),
    "webhook.created": ("Webhook endpoint added", "Added {s}"),
    "webhook.updated": ("Webhook endpoint changed", "Changed {s}"),
    "webhook.secret_rotated": ("Webhook secret rotated", "Started a new signing secret for {s}"),
    "webhook.enabled": ("Webhook endpoint turned on", "Turned on {s}"),
    "webhook.disabled": ("Webhook endpoint turned off", "Turned off {s}"),
    "webhook.deleted": ("Webhook endpoint deleted", "Deleted {s}"),
    "postback.saved": ("Postback saved", "Saved {s}"),
    "postback.deleted": ("Postback deleted", "Deleted {s}"),
    "postback.enabled": ("Postback turned on", "Turned on {s}"),
    "postback.disabled": ("Postback turned off", "Turned off {s}"),
    "postback.resent": ("Postback calls sent again", "Sent again the calls of {s} that ran out of retries"),
    "user.password_changed": ("Password changed", "Changed the password of {s}"),
    "user.password_reset": ("Password reset", "Reset the password of {s} by an emailed link"),
    "user.email_verified": ("Email address confirmed", "Confirmed the email address of {s}"),
    "user.payout_details_changed": ("Payout details changed", "Changed the payout details of {s}"),
    "user.sessions_ended": ("Signed out elsewhere", "Signed {s} out on other devices"),
    "user.totp_enabled": ("Authenticator app set up", "Set up an authenticator app for {s}"),
    "user.totp_disabled": ("Authenticator app removed", "Removed the authenticator app of {s}"),
    "user.recovery_codes_issued": ("Recovery codes issued", "Issued new recovery codes to {s}"),
    "user.recovery_code_used": ("Recovery code used", "Signed in as {s} with a recovery code"),
    "user.second_factor_reset": ("Two-step sign-in reset", "Reset the two-step sign-in of {s}"),
    "user.security_key_added": ("Security key added", "Added a security key to {s}"),
    "user.security_key_removed": ("Security key removed", "Removed a security key of {s}"),
    "user.erase": ("Account erased", "Erased the personal data of {s}"),
    "person.erase": ("Person's data erased", "Erased a person's data on request"),
}

# Plain words for the statuses records carry; any other status is its name with spaces.
STATUS_WORDS = {"pending_approval": "waiting for approval", "active": "active", "draft": "draft"}

# Record keys -> what they are called; keys not here read as their name in words ("cookie_days" -> "Cookie days").
KEY_LABELS = {
    "status": "Status",
    "amount_cents": "Amount",
    "affiliate_id": "Affiliate",
    "program_id": "Program",
    "group_id": "Group",
    "recruiter_id": "Recruited by",
    "plan_id": "Plan version",
    "effective_from": "In force from",
    "flat_cents": "Flat amount",
    "percent_bps": "Percentage",
    "second_tier_bps": "Recruiter's share",
    "referrer_reward_cents": "Referrer's reward",
    "referee_reward_cents": "New customer's reward",
    "bonus_cents": "Bonus",
    "minimum_payout_cents": "Minimum payout",
    "attribution_window_days": "Attribution window (days)",
    "cookie_days": "Cookie lifetime (days)",
    "hold_days": "Hold (days)",
    "destination_url": "Destination",
    "fallback_url": "Fallback address",
    "code_precedence": "When a code and a click disagree",
    "enrollment": "How affiliates join",
    "url": "Address",
    "url_template": "Address",
    "iban": "IBAN",
    "email": "Email",
    "totp": "Authenticator app",
    "security_keys": "Security keys",
    "ended": "Sessions ended",
    "left": "Recovery codes left",
    "count": "Recovery codes",
    "overlap_hours": "Old secret still valid (hours)",
    "stripe_promotion_code": "Stripe promotion code",
    "discount_text": "Discount",
    "action": "When it fires",
    "weight": "Weight",
}
# Kept out of the list of changes: the sentence or the amounts already say them, or they identify nothing a reader
# needs (a session's row id).
HIDDEN = {"rule", "prefix", "key", "session_id"}
# Keys whose values are choices named in snake_case ("last_click"), read with spaces.
CHOICES = {"attribution_model", "code_precedence", "tier_basis", "tier_scope", "method", "kind", "format"}
LINKS = {"payout_batch": "finance_payouts.show", "conversion": "admin_conversions.show"}


@dataclass(frozen=True)
class Change:
    """One field of a record before and after the change, in words; None on the side that had no record."""

    label: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.before is None:
            return f"{self.label}: {self.after}"
        return f"{self.label}: {self.before} → {self.after or NOTHING}"


@dataclass(frozen=True)
class Subject:
    """What an entry is about, in words, with the currency its amounts are in and the page that shows it."""

    words: str
    currency: str | None = None
    link: tuple[str, dict] | None = None


@dataclass(frozen=True)
class Names:
    """What a page of entries needs to read as words: people, programs, groups, API keys and each subject."""

    people: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, email)
    keys: dict[int, str] = field(default_factory=dict)  # API key id -> prefix
    programs: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, currency)
    groups: dict[int, str] = field(default_factory=dict)
    subjects: dict[tuple[str, int], Subject] = field(default_factory=dict)

    def person(self, user_id: Any) -> str:
        return self.people[user_id][0] if user_id in self.people else f"user #{user_id}"


@dataclass(frozen=True)
class Wording:
    """One audit entry in words."""

    kind: str  # "Commission approved"
    sentence: str  # "Approved commission on order A-1001 ($12.00) for Bob Blogger"
    changes: tuple[Change, ...]
    actor: str  # the person's name, or "System"
    actor_email: str | None
    key_prefix: str | None  # the API key the change came through
    link: tuple[str, dict] | None  # (endpoint, its arguments): the page of the subject


def kind_of(action: str) -> str:
    """The kind of change an action is, in words: "payout.paid" -> "Payout paid"."""
    return ACTIONS[action][0] if action in ACTIONS else _words(action.replace(".", " "))


def kinds(subjects: Iterable[str]) -> dict[str, str]:
    """The actions about ``subjects`` -> their kind in words, in the order of ``ACTIONS`` (for a filter)."""
    wanted = {f"{subject}." for subject in subjects}
    return {action: kind for action, (kind, _) in ACTIONS.items() if action[: action.index(".") + 1] in wanted}


def status_word(status: str | None) -> str:
    """A status as people say it: "pending_approval" -> "waiting for approval"."""
    if not status:
        return NOTHING
    return STATUS_WORDS.get(status) or str(status).replace("_", " ")


def describe(entry: AuditLog, names: Names) -> Wording:
    """The entry in words: a sentence saying who did what to which thing, and what changed."""
    before, after = _load(entry.before), _load(entry.after)
    subject = names.subjects.get((entry.subject_type, entry.subject_id)) or Subject(
        f"{_words(entry.subject_type).lower()} #{entry.subject_id}"
    )
    pattern = ACTIONS[entry.action][1] if entry.action in ACTIONS else f"{kind_of(entry.action)}: {{s}}"
    sentence = pattern.format(s=subject.words, **_fields(before, after, names))
    currency = subject.currency or (after or {}).get("currency") or (before or {}).get("currency")
    actor = names.people.get(entry.actor_id) if entry.actor_id is not None else None
    return Wording(
        kind=kind_of(entry.action),
        sentence=sentence,
        changes=tuple(_changes(before, after, names, currency, entry.subject_type)),
        actor=actor[0] if actor else ("System" if entry.actor_id is None else f"user #{entry.actor_id}"),
        actor_email=actor[1] if actor else None,
        key_prefix=names.keys.get(entry.actor_key_id) if entry.actor_key_id else None,
        link=subject.link,
    )


def in_words(session: Session, rows: Iterable) -> list[tuple[AuditLog, Wording]]:
    """Entries as history_of, latest and batch trails give them (each with its actor's email), with their wording."""
    shown = [row[0] for row in rows]
    names = names_for(session, shown)
    return [(entry, describe(entry, names)) for entry in shown]


def names_for(session: Session, shown: Iterable[AuditLog]) -> Names:
    """The names ``describe`` needs for these entries, in one query per kind of thing they mention."""
    shown = list(shown)
    ids: dict[str, set[int]] = {}
    people: set[int] = {entry.actor_id for entry in shown} - {None}
    programs: set[int] = set()
    groups: set[int] = set()
    for entry in shown:
        ids.setdefault(entry.subject_type, set()).add(entry.subject_id)
        for record in (_load(entry.before), _load(entry.after)):
            people |= {record.get(k) for k in ("affiliate_id", "recruiter_id") if isinstance(record.get(k), int)}
            programs |= {record["program_id"]} if isinstance(record.get("program_id"), int) else set()
            groups |= {record["group_id"]} if isinstance(record.get("group_id"), int) else set()

    def rows(*columns, where):
        return session.execute(select(*columns).where(where)).all() if where is not None else []

    def wanted(kind: str, column):
        return column.in_(ids[kind]) if kind in ids else None

    commissions = (
        session.execute(
            select(
                Commission.id,
                Commission.kind,
                Commission.amount_cents,
                Commission.currency,
                Commission.affiliate_id,
                Commission.conversion_id,
                Conversion.order_id,
            )
            .join(Conversion, Conversion.id == Commission.conversion_id)
            .where(Commission.id.in_(ids["commission"]))
        ).all()
        if "commission" in ids
        else []
    )
    conversions = rows(
        Conversion.id,
        Conversion.type,
        Conversion.order_id,
        Conversion.amount_cents,
        Conversion.currency,
        Conversion.affiliate_id,
        where=wanted("conversion", Conversion.id),
    )
    payouts = rows(
        Payout.id,
        Payout.batch_id,
        Payout.amount_cents,
        Payout.currency,
        Payout.affiliate_id,
        where=wanted("payout", Payout.id),
    )
    batches = rows(
        PayoutBatch.id, PayoutBatch.total_cents, PayoutBatch.currency, where=wanted("payout_batch", PayoutBatch.id)
    )
    adjustments = rows(
        Adjustment.id,
        Adjustment.kind,
        Adjustment.amount_cents,
        Adjustment.currency,
        Adjustment.affiliate_id,
        where=wanted("adjustment", Adjustment.id),
    )
    coupons = rows(Coupon.id, Coupon.code, Coupon.affiliate_id, where=wanted("coupon", Coupon.id))
    keys = rows(ApiKey.id, ApiKey.name, ApiKey.prefix, where=wanted("api_key", ApiKey.id))
    endpoints = rows(WebhookEndpoint.id, WebhookEndpoint.url, where=wanted("webhook_endpoint", WebhookEndpoint.id))
    postbacks = rows(Postback.id, Postback.affiliate_id, Postback.program_id, where=wanted("postback", Postback.id))
    people |= ids.get("user", set()) | ids.get("affiliate", set())
    people |= {row.affiliate_id for row in (*commissions, *conversions, *payouts, *adjustments, *coupons, *postbacks)}
    programs |= ids.get("program", set()) | {row.program_id for row in postbacks}
    key_ids = {entry.actor_key_id for entry in shown} - {None}
    names = Names(
        people={
            row.id: (row.name, row.email)
            for row in rows(User.id, User.name, User.email, where=User.id.in_(people - {None}))
        },
        keys=dict(rows(ApiKey.id, ApiKey.prefix, where=ApiKey.id.in_(key_ids))),
        programs={
            row.id: (row.name, row.currency)
            for row in rows(Program.id, Program.name, Program.currency, where=Program.id.in_(programs))
        },
        groups=dict(rows(PartnerGroup.id, PartnerGroup.name, where=PartnerGroup.id.in_(groups))),
    )
    person = names.person
    subjects = names.subjects
    for row in commissions:
        what = COMMISSION_KINDS.get(row.kind, "commission")
        amount = money(row.amount_cents, row.currency)
        link = (LINKS["conversion"], {"conversion_id": row.conversion_id})
        words = f"{what} on order {row.order_id} ({amount}) for {person(row.affiliate_id)}"
        subjects["commission", row.id] = Subject(words, row.currency, link)
    for row in conversions:
        credited = f" credited to {person(row.affiliate_id)}" if row.affiliate_id else ""
        amount = f" ({money(row.amount_cents, row.currency)})" if row.type != "signup" else ""
        words = f"{row.type} {row.order_id}{amount}{credited}"
        subjects["conversion", row.id] = Subject(words, row.currency, (LINKS["conversion"], {"conversion_id": row.id}))
    for row in payouts:
        words = f"payout of {money(row.amount_cents, row.currency)} to {person(row.affiliate_id)}"
        subjects["payout", row.id] = Subject(words, row.currency, (LINKS["payout_batch"], {"batch_id": row.batch_id}))
    for row in batches:
        words = f"payout batch #{row.id} ({money(row.total_cents, row.currency)})"
        subjects["payout_batch", row.id] = Subject(words, row.currency, (LINKS["payout_batch"], {"batch_id": row.id}))
    for row in adjustments:
        words = f"{row.kind} of {money(row.amount_cents, row.currency)} for {person(row.affiliate_id)}"
        subjects["adjustment", row.id] = Subject(words, row.currency, ("finance_adjustments.index", {}))
    for row in coupons:
        subjects["coupon", row.id] = Subject(f"coupon {row.code} of {person(row.affiliate_id)}")
    for row in keys:
        subjects["api_key", row.id] = Subject(f"API key “{row.name}” (ct_{row.prefix}_…)")
    for row in endpoints:
        subjects["webhook_endpoint", row.id] = Subject(f"webhook endpoint {row.url}")
    for row in postbacks:
        whose = f"{person(row.affiliate_id)}'s postback" if row.affiliate_id else "program-wide postback"
        subjects["postback", row.id] = Subject(f"{whose} on {names.programs.get(row.program_id, ('?',))[0]}")
    for user_id in ids.get("user", set()) | ids.get("affiliate", set()):
        subjects["user", user_id] = subjects["affiliate", user_id] = Subject(person(user_id))
    for program_id in ids.get("program", set()):
        if program_id in names.programs:
            name, currency = names.programs[program_id]
            subjects["program", program_id] = Subject(name, currency)
    return names


COMMISSION_KINDS = {
    "earning": "commission",
    "raise": "tier raise",
    "second_tier": "recruiter's commission",
    "referrer_reward": "referral reward",
    "referee_reward": "new customer's reward",
    "performance_bonus": "performance bonus",
}


def _load(text: str | None) -> dict:
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) else {}


def _words(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _fields(before: dict, after: dict, names: Names) -> dict[str, str]:
    """The parts of a sentence besides its subject, read from the entry's record."""
    record = {**before, **after}
    program = record.get("program_id")
    group = after.get("group_id")
    whom = ""
    if record.get("affiliate_id") and "plan_id" in record:
        whom = f" for {names.person(record['affiliate_id'])}"
    elif record.get("group_id") and "plan_id" in record:
        whom = f" for the group {names.groups.get(record['group_id'], record['group_id'])}"
    return {
        "program": names.programs[program][0] if program in names.programs else f"program #{program}",
        "group": names.groups.get(group, f"group #{group}") if group else "the default group",
        "rule": rule_label(record.get("rule")),
        "whom": whom,
    }


def _changes(before: dict, after: dict, names: Names, currency: str | None, subject_type: str) -> list[Change]:
    """What differs between the record before and after, in words; a new record lists what it was made with."""
    if subject_type == "adjustment" and before:
        after = {"status": after.get("status")}  # the rest of an adjustment's record is in its sentence
    changes = []
    for key in [*before, *(key for key in after if key not in before)]:
        if key in HIDDEN or (key == "currency" and not before):
            continue
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            continue
        if isinstance(old, dict) or isinstance(new, dict):
            changes += _settings(old or {}, new or {}, bool(before))
            continue
        if old is None and new is None:
            continue
        shown_old = _value(key, old, names, currency) if key in before else None
        shown_new = _value(key, new, names, currency) if key in after else NOTHING
        label = KEY_LABELS.get(key) or _words(key)
        changes.append(Change(label, shown_old if before else None, shown_new))
    return changes


def _settings(old: dict, new: dict, had_before: bool) -> list[Change]:
    """A fraud rule's thresholds, each under its own name."""
    return [
        Change(setting_label(key), _plain(old.get(key)) if had_before else None, _plain(new.get(key)))
        for key in [*old, *(key for key in new if key not in old)]
        if old.get(key) != new.get(key)
    ]


def _value(key: str, value: Any, names: Names, currency: str | None) -> str:
    """One recorded value as people read it: amounts in their currency, ids as names, times in UTC."""
    if value is None or value == "" or value == []:
        return "nobody" if key in ("recruiter_id", "affiliate_id") else NOTHING
    if key == "status" or key == "enrollment":
        return status_word(value)
    if key == "action":
        return action_label(value)
    if key.endswith("_cents") and isinstance(value, int):
        return money(value, currency) if currency else f"{value:,} (minor units)"
    if key.endswith("_bps") and isinstance(value, int):
        return f"{value / 100:g}%"
    if key in ("affiliate_id", "recruiter_id") and isinstance(value, int):
        return names.person(value)
    if key == "program_id" and isinstance(value, int):
        return names.programs[value][0] if value in names.programs else f"program #{value}"
    if key == "group_id":
        return names.groups.get(value, f"group #{value}")
    if key == "plan_id":
        return f"#{value}"
    if key == "tiers" and isinstance(value, list):
        return "; ".join(_tier(tier, currency) for tier in value if isinstance(tier, dict)) or "none"
    if isinstance(value, str) and key.endswith(("_from", "_at")):
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if key in CHOICES and isinstance(value, str):
        return value.replace("_", " ")
    return _plain(value)


def _tier(tier: dict, currency: str | None) -> str:
    parts = [f"{tier.get('percent_bps', 0) / 100:g}%"]
    if tier.get("flat_cents") and currency:
        parts.append(money(tier["flat_cents"], currency))
    return f"from {tier.get('threshold')}: {' + '.join(parts)}"


def _plain(value: Any) -> str:
    if value is None or value == "":
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(item) for item in value) or "none"
    return str(value)
