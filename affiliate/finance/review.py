"""Flagged conversions wait here for finance: see why, approve or reject one or many, with a note."""

from __future__ import annotations

import json

from flask import Blueprint, flash, render_template, request
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.finance.bulk_decide import Selection, bulk_decide
from affiliate.models import Role, utcnow
from affiliate.params import list_filters, paginate, sort_param
from affiliate.services import people, programs, review
from affiliate.services.fraud import DEFAULT_RULES

bp = Blueprint("finance_review", __name__, url_prefix="/finance/review")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def queue():
    return _queue(Selection())


@bp.post("/decide")
def decide():
    """Approve or reject the ticked conversions; only those still flagged change (a guarded UPDATE)."""

    def decide_conversions(ids: list[int], decision: str, note: str) -> list[int]:
        return review.decide(db.session, ids, decision, actor_id=current_user.id, note=note, now=utcnow())

    return bulk_decide(
        decide_conversions,
        noun="conversion",
        unchanged="had already been decided and did not change.",
        back="finance_review.queue",
        filters=_kept(request.args),
        show_again=lambda selection: (_queue(selection), 422),
    )


def _queue(selection: Selection) -> str:
    shared = list_filters()
    filters = _filters(request.args)
    sort = sort_param(review.QUEUE_SORTS, review.OLDEST_FLAGGED)
    page = paginate(
        review.flagged(
            program_id=shared.program_id,
            rule=filters.get("rule"),
            affiliate=shared.affiliate,
            order=shared.order,
            days=shared.days,
            sort=sort,
        )
    )
    for error in shared.errors:
        flash(error, "warning")
    return render_template(
        "finance/review/queue.html",
        page=page,
        reasons={c.id: json.loads(c.fraud_reasons or "[]") for c in page.items},
        names=people.names(db.session, (c.affiliate_id for c in page.items)),
        programs=programs.by_name(db.session),
        rules=list(DEFAULT_RULES),
        filters=filters,
        sort=sort,
        kept={**filters, **sort.args()},
        selection=selection,
    )


def _filters(args) -> dict[str, str]:
    """The queue's filters in a query string: a program, an affiliate (name, email, referral code or id), part of
    an order id, the days the conversions occurred on, and a rule name."""
    filters = dict(list_filters().args)
    if args.get("rule") in DEFAULT_RULES:
        filters["rule"] = args["rule"]
    return filters


def _kept(args) -> dict[str, str]:
    """The filters and the order asked for, to go back to the same list after a decision."""
    return {**_filters(args), **sort_param(review.QUEUE_SORTS, review.OLDEST_FLAGGED).args()}
