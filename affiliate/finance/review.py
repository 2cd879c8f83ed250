"""Flagged conversions wait here for finance: see why, approve or reject one or many, with a note."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.finance.bulk_decide import Selection, bulk_decide
from affiliate.models import Role, utcnow
from affiliate.params import paginate, parse_id
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
        filters=_filters(request.args),
        show_again=lambda selection: (_queue(selection), 422),
    )


def _queue(selection: Selection) -> str:
    filters = _filters(request.args)
    page = paginate(
        review.flagged(
            program_id=filters.get("program"), affiliate_id=filters.get("affiliate"), rule=filters.get("rule")
        )
    )
    return render_template(
        "finance/review/queue.html",
        page=page,
        reasons={c.id: json.loads(c.fraud_reasons or "[]") for c in page.items},
        names=people.names(db.session, (c.affiliate_id for c in page.items)),
        programs=programs.by_name(db.session),
        rules=list(DEFAULT_RULES),
        filters=filters,
        selection=selection,
    )


def _filters(args) -> dict[str, int | str]:
    """The queue's filters in a query string: program and affiliate ids, and a rule name."""
    filters: dict[str, int | str] = {
        key: parse_id(args.get(key)) for key in ("program", "affiliate") if parse_id(args.get(key))
    }
    if args.get("rule") in DEFAULT_RULES:
        filters["rule"] = args["rule"]
    return filters
