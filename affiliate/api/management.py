"""The management API: a program's plan versions, partner groups, enrollments, invitations and adjustments.

A key reaches only its own program, and only what its scopes allow (services/api_keys.SCOPES). It acts for
the admin who issued it: every change is audited with that admin as the actor and the key beside them, and a
key whose issuer is no longer an active admin is refused. What the portal refuses, the API refuses, through
the same services: a plan change never reaches the past, a removal needs a reason, an adjustment over the
approval threshold waits for a finance user's approval in the portal (a key never approves one).

Every write is idempotent on its ``Clicktrail-Request-Id``: sent again, it gets the first answer with
``Idempotent-Replayed: true`` and changes nothing; the same id with another method, path or body is a 409.

Why one module: one blueprint of thin handlers over services, sharing the key checks, the idempotent replay
and the JSON shapes; each resource is a short section.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from affiliate.api.common import (
    ApiError,
    Authenticated,
    api_blueprint,
    authenticate,
    field,
    iso,
    json_object,
    no_unknown_fields,
    parse_time,
)
from affiliate.api.strict_json import require_int, require_str
from affiliate.extensions import db
from affiliate.mail import external_url
from affiliate.models import (
    Adjustment,
    AdjustmentStatus,
    ApiIdempotencyKey,
    ApiKey,
    CommissionPlan,
    Enrollment,
    EnrollmentStatus,
    GroupMembership,
    PartnerGroup,
    Role,
    User,
    UserStatus,
)
from affiliate.money import MAX_CENTS
from affiliate.params import BIG_ID_MAX, ID_MAX, parse_id
from affiliate.services import adjustments, enrollment, groups
from affiliate.services.commissions import COUNT, MARGINAL, REVENUE, WHOLE_PERIOD, PlanTerms, TierRate
from affiliate.services.plans import MAX_TIERS, PlanError, in_words, save_plan
from affiliate.services.standing import terms_of

bp = api_blueprint("api_management", __name__)

LAST_USED_EVERY_SECONDS = 60
# A retry comes within the signature's 300-second window; a day keeps every answer a retry could ask for.
IDEMPOTENCY_KEPT = timedelta(days=1)
PAGE_LIMIT = 100
PAGE_LIMIT_MAX = 500
MAX_MOVED = 500
REASON_MAX = 1000
PLAN_FIELDS = {"group_id", "affiliate_id", "effective_from", "terms"}
TERMS_FIELDS = {
    "flat", "percent_bps", "tier_basis", "tier_scope", "tiers", "second_tier_bps", "recurring_months",
    "referrer_reward", "referee_reward", "bonus_threshold", "bonus",
}  # fmt: skip
TIER_FIELDS = {"threshold", "percent_bps", "flat"}


# ---- requests -------------------------------------------------------------------------------------------------


def reads(scope: str):
    """A GET endpoint needing ``scope``; the view gets the authenticated request and returns its JSON."""

    def decorate(view):
        @functools.wraps(view)
        def endpoint(**kwargs):
            authenticated = authenticate(scope, json_body=False)
            _issuer(authenticated.key)
            answer = view(authenticated, **kwargs)
            _note_use(authenticated.key)
            db.session.commit()
            return answer

        return endpoint

    return decorate


def writes(scope: str):
    """A POST endpoint needing ``scope``, made idempotent on the request id.

    The view gets the authenticated request, the admin it acts for and the JSON body, and returns
    ``(answer, status)``; its changes, the stored answer and the audit rows commit together.
    """

    def decorate(view):
        @functools.wraps(view)
        def endpoint(**kwargs):
            authenticated = authenticate(scope, json_body=True)
            actor = _issuer(authenticated.key)
            body = json_object(authenticated.raw)
            claim = _claim(authenticated)
            if not isinstance(claim, ApiIdempotencyKey):
                return claim
            try:
                answer, status = view(authenticated, actor, body, **kwargs)
                claim.status, claim.response = status, json.dumps(answer)
                _note_use(authenticated.key)
                db.session.commit()
            except IntegrityError as error:
                # Another request changed the same row at the same moment; this one changed nothing.
                message = "A simultaneous change got there first; read and send again."
                raise ApiError(409, "conflict", message) from error
            return answer, status

        return endpoint

    return decorate


def _issuer(key: ApiKey) -> User:
    """The admin a key acts for; a key outlives its issuer's admin rights only for reporting conversions."""
    issuer = db.session.get(User, key.created_by_id) if key.created_by_id else None
    if issuer is None or issuer.role != Role.ADMIN or issuer.status != UserStatus.ACTIVE:
        raise ApiError(
            403,
            "issuer_not_admin",
            "The admin who issued this key is no longer one; ask a current admin for a new key.",
        )
    return issuer


def _claim(authenticated: Authenticated):
    """Take this request id for this key, or answer the request again as it was first answered."""
    now = g.api_now
    digest = hashlib.sha256(authenticated.raw).hexdigest()
    request_id = authenticated.signed.request_id
    mine = (ApiIdempotencyKey.api_key_id == authenticated.key.id, ApiIdempotencyKey.request_id == request_id)
    earlier = db.session.scalar(select(ApiIdempotencyKey).where(*mine))
    if earlier is None:
        db.session.execute(delete(ApiIdempotencyKey).where(ApiIdempotencyKey.created_at < now - IDEMPOTENCY_KEPT))
        claim = ApiIdempotencyKey(
            api_key_id=authenticated.key.id,
            request_id=request_id,
            method=request.method,
            path=request.path[:255],
            body_sha256=digest,
            status=0,
            response="",
            created_at=now,
        )
        db.session.add(claim)
        try:
            db.session.flush()  # PostgreSQL: the same id sent twice at once waits here for the first to finish
            return claim
        except IntegrityError:
            db.session.rollback()
            earlier = db.session.scalar(select(ApiIdempotencyKey).where(*mine))
            if earlier is None:
                raise ApiError(409, "conflict", "This request id is in use by another request; send again.") from None
    if (earlier.method, earlier.path, earlier.body_sha256) != (request.method, request.path[:255], digest):
        raise ApiError(
            409,
            "request_id_reused",
            "This Clicktrail-Request-Id was used for another request; give each new request its own id.",
        )
    db.session.rollback()
    return json.loads(earlier.response), earlier.status, {"Idempotent-Replayed": "true"}


def _note_use(key: ApiKey) -> None:
    # At most once a minute, so a busy key is not a hot row.
    if g.key_last_used is None or (g.api_now - g.key_last_used).total_seconds() > LAST_USED_EVERY_SECONDS:
        db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=g.api_now))


def _page(*, big: bool = False) -> tuple[int, int]:
    """``?after=<id>&limit=<n>``: the ids after a cursor, and how many (``big``: ids of a table with 64-bit keys,
    such as the deliveries, whose cursors pass 32 bits)."""
    after_text = request.args.get("after")
    after = 0 if after_text is None else parse_id(after_text, big=big)
    if after is None:
        raise ApiError(
            400, "invalid_parameter", f"after is an id between 1 and {BIG_ID_MAX if big else ID_MAX}.", "after"
        )
    limit_text = request.args.get("limit", str(PAGE_LIMIT))
    # Length first: int() of a long digit string is slow, and past 4,300 digits an error.
    digits = limit_text.lstrip("0")
    if not (
        limit_text.isascii() and limit_text.isdigit() and len(digits) <= 3 and 1 <= int(digits or "0") <= PAGE_LIMIT_MAX
    ):
        raise ApiError(400, "invalid_parameter", f"limit is between 1 and {PAGE_LIMIT_MAX}.", "limit")
    return after, int(digits)


def _status_filter(allowed: tuple[str, ...]) -> str | None:
    status = request.args.get("status")
    if status is not None and status not in allowed:
        raise ApiError(400, "invalid_parameter", f"status is one of {', '.join(allowed)}.", "status")
    return status


def _optional_id(body: dict, name: str) -> int | None:
    if body.get(name) is None:
        return None
    return field(body, name, require_int, minimum=1, maximum=ID_MAX)


def _affiliate(affiliate_id: int, name: str = "affiliate_id") -> User:
    affiliate = db.session.get(User, affiliate_id)
    if affiliate is None or affiliate.role != Role.AFFILIATE:
        raise ApiError(422, "invalid_field", f"{name} names no affiliate.", name)
    return affiliate


def _group(program_id: int, group_id: int | None, name: str = "group_id") -> PartnerGroup | None:
    if group_id is None:
        return None
    group = db.session.get(PartnerGroup, group_id)
    if group is None or group.program_id != program_id:
        raise ApiError(422, "invalid_field", f"{name} names none of this program's groups.", name)
    return group


# ---- plans ----------------------------------------------------------------------------------------------------


@bp.get("/plans")
@reads("plans:read")
def plans(authenticated: Authenticated):
    """Every plan version of the program, newest first, each saying whether it is the one in force for its owner."""
    program = authenticated.key.program
    versions = db.session.scalars(
        select(CommissionPlan)
        .where(CommissionPlan.program_id == program.id)
        .order_by(CommissionPlan.effective_from.desc(), CommissionPlan.id.desc())
    ).all()
    in_force, seen = set(), set()
    for plan in versions:  # newest first: the first started version per owner is the one in force
        owner = (plan.group_id, plan.affiliate_id)
        if owner not in seen and plan.effective_from <= g.api_now:
            seen.add(owner)
            in_force.add(plan.id)
    return {"plans": [_plan_json(plan, program.currency, plan.id in in_force) for plan in versions]}


@bp.post("/plans")
@writes("plans:write")
def add_plan(authenticated: Authenticated, actor: User, body: dict):
    """Add a plan version for the default group, a named group or one affiliate, from now or a later moment."""
    program = authenticated.key.program
    no_unknown_fields(body, PLAN_FIELDS)
    group = _group(program.id, _optional_id(body, "group_id"))
    affiliate_id = _optional_id(body, "affiliate_id")
    if affiliate_id is not None:
        _affiliate(affiliate_id)
    starts = parse_time(body.get("effective_from"), "effective_from") or g.api_now
    terms = _terms(body.get("terms"))
    try:
        plan = save_plan(
            db.session,
            program.id,
            terms,
            affiliate_id=affiliate_id,
            group_id=group.id if group else None,
            effective_from=starts,
            actor_id=actor.id,
            now=g.api_now,
            currency=program.currency,
        )
    except PlanError as error:
        raise ApiError(422, "invalid_plan", str(error), "terms") from error
    return {"plan": _plan_json(plan, program.currency, plan.effective_from <= g.api_now)}, 201


def _terms(value) -> PlanTerms:
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_field", "terms must be an object (the API document lists its fields).", "terms")
    no_unknown_fields(value, TERMS_FIELDS, prefix="terms.")

    def number(name: str, maximum: int, minimum: int = 0, source: dict = value, prefix: str = "terms.") -> int:
        if source.get(name) is None:
            return 0
        try:
            return field(source, name, require_int, minimum=minimum, maximum=maximum)
        except ApiError as error:
            raise ApiError(error.status, error.code, prefix + error.message, prefix + name) from error

    def choice(name: str, options: tuple[str, ...], default: str) -> str:
        chosen = value.get(name, default)
        if chosen not in options:
            raise ApiError(422, "invalid_field", f"terms.{name} is one of {', '.join(options)}.", f"terms.{name}")
        return chosen

    tiers = value.get("tiers") or []
    if not isinstance(tiers, list) or len(tiers) > MAX_TIERS:
        raise ApiError(422, "invalid_field", f"terms.tiers is a list of at most {MAX_TIERS} tiers.", "terms.tiers")
    rates = []
    for index, tier in enumerate(tiers):
        prefix = f"terms.tiers[{index}]."
        if not isinstance(tier, dict):
            raise ApiError(422, "invalid_field", f"{prefix[:-1]} must be an object.", prefix[:-1])
        no_unknown_fields(tier, TIER_FIELDS, prefix=prefix)
        if tier.get("threshold") is None:
            raise ApiError(422, "missing_field", f"{prefix}threshold is required.", prefix + "threshold")
        rates.append(
            TierRate(
                threshold=number("threshold", MAX_CENTS, 1, tier, prefix),
                percent_bps=number("percent_bps", 10_000, source=tier, prefix=prefix),
                flat_cents=number("flat", MAX_CENTS, source=tier, prefix=prefix),
            )
        )
    recurring = value.get("recurring_months", 0)
    bonus_threshold = value.get("bonus_threshold")
    return PlanTerms(
        flat_cents=number("flat", MAX_CENTS),
        percent_bps=number("percent_bps", 10_000),
        tier_basis=choice("tier_basis", (COUNT, REVENUE), COUNT),
        tier_scope=choice("tier_scope", (WHOLE_PERIOD, MARGINAL), WHOLE_PERIOD),
        tiers=tuple(sorted(rates, key=lambda rate: rate.threshold)),
        second_tier_bps=number("second_tier_bps", 10_000),
        recurring_months=None if recurring is None else number("recurring_months", 1200),
        referrer_reward_cents=number("referrer_reward", MAX_CENTS),
        referee_reward_cents=number("referee_reward", MAX_CENTS),
        bonus_threshold=None if bonus_threshold is None else number("bonus_threshold", MAX_CENTS, 1),
        bonus_cents=number("bonus", MAX_CENTS),
    )


def _plan_json(plan: CommissionPlan, currency: str, in_force: bool) -> dict:
    terms = terms_of(plan)
    return {
        "id": plan.id,
        "group_id": plan.group_id,
        "affiliate_id": plan.affiliate_id,
        "effective_from": iso(plan.effective_from),
        "created_at": iso(plan.created_at),
        "in_force": in_force,
        "currency": currency,
        "in_words": in_words(terms, currency),
        "terms": {
            "flat": terms.flat_cents,
            "percent_bps": terms.percent_bps,
            "tier_basis": terms.tier_basis,
            "tier_scope": terms.tier_scope,
            "tiers": [
                {"threshold": t.threshold, "percent_bps": t.percent_bps, "flat": t.flat_cents} for t in terms.tiers
            ],
            "second_tier_bps": terms.second_tier_bps,
            "recurring_months": terms.recurring_months,
            "referrer_reward": terms.referrer_reward_cents,
            "referee_reward": terms.referee_reward_cents,
            "bonus_threshold": terms.bonus_threshold,
            "bonus": terms.bonus_cents,
        },
    }


# ---- partner groups -------------------------------------------------------------------------------------------


@bp.get("/groups")
@reads("groups:read")
def list_groups(authenticated: Authenticated):
    """The default group (``id`` null) and the named groups, with how many affiliates each holds."""
    summaries = groups.groups_of(db.session, authenticated.key.program.id)
    return {"groups": [{"id": s.id, "name": s.name, "members": s.members} for s in summaries]}


@bp.post("/groups")
@writes("groups:write")
def create_group(authenticated: Authenticated, actor: User, body: dict):
    no_unknown_fields(body, {"name"})
    name = field(body, "name", require_str, max_length=200)
    try:
        group = groups.create_group(db.session, authenticated.key.program.id, name, actor_id=actor.id, now=g.api_now)
    except groups.GroupError as error:
        raise ApiError(422, "invalid_field", str(error), "name") from error
    return {"group": {"id": group.id, "name": group.name, "members": 0}}, 201


@bp.get("/groups/<int:group_id>/members")
@reads("groups:read")
def group_members(authenticated: Authenticated, group_id: int):
    """The affiliates in a named group, by id, a page at a time."""
    program = authenticated.key.program
    group = db.session.get(PartnerGroup, group_id)
    if group is None or group.program_id != program.id:
        raise ApiError(404, "not_found", "This program has no such group.")
    after, limit = _page()
    rows = db.session.execute(
        select(User.id, User.name, User.email)
        .join(GroupMembership, GroupMembership.affiliate_id == User.id)
        .where(GroupMembership.group_id == group.id, User.id > after)
        .order_by(User.id)
        .limit(limit)
    ).all()
    members = [{"affiliate_id": row.id, "name": row.name, "email": row.email} for row in rows]
    return {"members": members, "next_after": rows[-1].id if len(rows) == limit else None}


@bp.post("/group-memberships")
@writes("groups:write")
def move_to_group(authenticated: Authenticated, actor: User, body: dict):
    """Put affiliates in a group (``group_id`` null: the default group); says how many moved."""
    program = authenticated.key.program
    no_unknown_fields(body, {"affiliate_ids", "group_id"})
    ids = body.get("affiliate_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_MOVED:
        raise ApiError(422, "invalid_field", f"affiliate_ids is a list of 1 to {MAX_MOVED} ids.", "affiliate_ids")
    for index in range(len(ids)):
        field({"affiliate_ids": ids[index]}, "affiliate_ids", require_int, minimum=1, maximum=ID_MAX)
    if "group_id" not in body:
        raise ApiError(422, "missing_field", "group_id is required (null for the default group).", "group_id")
    group = _group(program.id, _optional_id(body, "group_id"))
    try:
        moved = groups.move(
            db.session, program.id, list(ids), group.id if group else None, actor_id=actor.id, now=g.api_now
        )
    except groups.GroupError as error:
        raise ApiError(422, "invalid_field", str(error), "affiliate_ids") from error
    return {"moved": moved, "group_id": group.id if group else None}, 200


# ---- enrollment -----------------------------------------------------------------------------------------------


@bp.get("/enrollments")
@reads("enrollments:read")
def list_enrollments(authenticated: Authenticated):
    """The program's enrollment records, by affiliate id, a page at a time (``?status=`` filters)."""
    program = authenticated.key.program
    status = _status_filter(tuple(EnrollmentStatus))
    after, limit = _page()
    query = (
        select(Enrollment, User.name, User.email, GroupMembership.group_id)
        .join(User, User.id == Enrollment.affiliate_id)
        .outerjoin(
            GroupMembership, (GroupMembership.affiliate_id == User.id) & (GroupMembership.program_id == program.id)
        )
        .where(Enrollment.program_id == program.id, Enrollment.affiliate_id > after)
        .order_by(Enrollment.affiliate_id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(Enrollment.status == status)
    rows = db.session.execute(query).all()
    records = [_enrollment_json(row[0], row.name, row.email, row.group_id) for row in rows]
    return {
        "enrollment_policy": program.enrollment,
        "enrollments": records,
        "next_after": rows[-1][0].affiliate_id if len(rows) == limit else None,
    }


@bp.post("/enrollments/<int:affiliate_id>/decision")
@writes("enrollments:write")
def decide_enrollment(authenticated: Authenticated, actor: User, body: dict, affiliate_id: int):
    """Approve, reject or remove an affiliate on this program; rejecting and removing need the reason they see."""
    program = authenticated.key.program
    affiliate = db.session.get(User, affiliate_id)
    if affiliate is None or affiliate.role != Role.AFFILIATE:
        raise ApiError(404, "not_found", "There is no such affiliate.")
    no_unknown_fields(body, {"decision", "reason"})
    decision = field(body, "decision", require_str, max_length=16)
    if decision not in ("approve", "reject", "remove"):
        raise ApiError(422, "invalid_field", "decision is approve, reject or remove.", "decision")
    reason = field(body, "reason", require_str, max_length=REASON_MAX, optional=True)
    if decision != "approve" and not (reason or "").strip():
        raise ApiError(422, "missing_field", "Rejecting or removing needs the reason the affiliate reads.", "reason")
    try:
        record = enrollment.decide(
            db.session, program, affiliate.id, decision, actor_id=actor.id, reason=reason, now=g.api_now
        )
    except enrollment.EnrollmentError as error:
        raise ApiError(409, "enrollment_conflict", str(error)) from error
    group_id = groups.group_of(db.session, program.id, affiliate.id)
    return {"enrollment": _enrollment_json(record, affiliate.name, affiliate.email, group_id)}, 200


@bp.post("/invitations")
@writes("enrollments:write")
def invite(authenticated: Authenticated, actor: User, body: dict):
    """A signed invitation link to the program that puts whoever accepts it in a group (null: the default)."""
    program = authenticated.key.program
    no_unknown_fields(body, {"group_id"})
    group = _group(program.id, _optional_id(body, "group_id"))
    token = enrollment.invitation(current_app.config["SECRET_KEY"], program, group.id if group else None)
    days = current_app.config["INVITATION_DAYS"]
    return {
        "url": external_url("partner.join", token=token),
        "group_id": group.id if group else None,
        "expires_at": iso(g.api_now + timedelta(days=days)),
    }, 201


def _enrollment_json(record: Enrollment, name: str, email: str, group_id: int | None) -> dict:
    return {
        "affiliate_id": record.affiliate_id,
        "name": name,
        "email": email,
        "status": record.status,
        "reason": record.reason,
        "group_id": group_id,
        "applied_at": iso(record.created_at),
        "decided_at": iso(record.decided_at),
    }


# ---- adjustments ----------------------------------------------------------------------------------------------


@bp.get("/adjustments")
@reads("adjustments:read")
def list_adjustments(authenticated: Authenticated):
    """The program's bonuses and clawbacks, by id, a page at a time (``?status=`` filters)."""
    status = _status_filter(tuple(AdjustmentStatus))
    after, limit = _page()
    query = (
        select(Adjustment)
        .where(Adjustment.program_id == authenticated.key.program.id, Adjustment.id > after)
        .order_by(Adjustment.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(Adjustment.status == status)
    found = db.session.scalars(query).all()
    return {
        "adjustments": [_adjustment_json(a) for a in found],
        "next_after": found[-1].id if len(found) == limit else None,
    }


@bp.get("/adjustments/<int:adjustment_id>")
@reads("adjustments:read")
def show_adjustment(authenticated: Authenticated, adjustment_id: int):
    adjustment = db.session.get(Adjustment, adjustment_id)
    if adjustment is None or adjustment.program_id != authenticated.key.program.id:
        raise ApiError(404, "not_found", "This program has no such adjustment.")
    return {"adjustment": _adjustment_json(adjustment)}


@bp.post("/adjustments")
@writes("adjustments:write")
def add_adjustment(authenticated: Authenticated, actor: User, body: dict):
    """A bonus or clawback in the program's currency: posted at once within the approval threshold, else left
    ``pending_approval`` for a finance user in the portal."""
    no_unknown_fields(body, {"affiliate_id", "kind", "amount", "reason"})
    affiliate_id = field(body, "affiliate_id", require_int, minimum=1, maximum=ID_MAX)
    _affiliate(affiliate_id)
    kind = field(body, "kind", require_str, max_length=16)
    if kind not in ("bonus", "clawback"):
        raise ApiError(422, "invalid_field", "kind is bonus or clawback.", "kind")
    amount = field(body, "amount", require_int, minimum=1, maximum=MAX_CENTS)
    reason = field(body, "reason", require_str, max_length=REASON_MAX)
    if not reason.strip():
        raise ApiError(422, "invalid_field", "reason is the text the affiliate reads; it cannot be blank.", "reason")
    wanted = adjustments.AdjustmentRequest(
        affiliate_id=affiliate_id,
        program_id=authenticated.key.program.id,
        kind=kind,
        amount_cents=amount,
        reason=reason,
        currency=authenticated.key.program.currency,
    )
    try:
        adjustment = adjustments.create(
            db.session,
            wanted,
            actor=actor,
            now=g.api_now,
            thresholds=current_app.config["ADJUSTMENT_APPROVAL_THRESHOLDS"],
        )
    except adjustments.AdjustmentError as error:
        raise ApiError(422, "invalid_adjustment", str(error)) from error
    db.session.flush()
    return {"adjustment": _adjustment_json(adjustment)}, 201


def _adjustment_json(adjustment: Adjustment) -> dict:
    return {
        "id": adjustment.id,
        "affiliate_id": adjustment.affiliate_id,
        "kind": adjustment.kind,
        "amount": adjustment.amount_cents,
        "currency": adjustment.currency,
        "reason": adjustment.reason,
        "status": adjustment.status,
        "created_at": iso(adjustment.created_at),
        "approved_at": iso(adjustment.approved_at),
        "rejected_at": iso(adjustment.rejected_at),
        "rejection_note": adjustment.rejection_note,
    }
