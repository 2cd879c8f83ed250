"""Finance's view of commissions: filter them, and approve or reject pending ones, many at once, with a note."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.finance.bulk_decide import Selection, bulk_decide
from affiliate.models import CommissionStatus, Role, utcnow
from affiliate.params import paginate, query_id
from affiliate.services import people, programs, review

FILTERS = ("status", "program", "affiliate")

bp = Blueprint("finance_commissions", __name__, url_prefix="/finance/commissions")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    return _index(Selection())


@bp.post("/decide")
def decide():
    """Approve or reject the ticked pending commissions; each changes once (a guarded UPDATE), with its ledger entry."""

    def decide_commissions(ids: list[int], decision: str, note: str) -> list[int]:
        return review.decide_commissions(db.session, ids, decision, actor_id=current_user.id, note=note, now=utcnow())

    return bulk_decide(
        decide_commissions,
        noun="commission",
        unchanged="did not change: they were no longer pending, or their conversion is under review (decide it in"
        " the review queue first).",
        back="finance_commissions.index",
        filters=_filters(request.args),
        show_again=lambda selection: (_index(selection), 422),
    )


def _index(selection: Selection) -> str:
    status = request.args.get("status", CommissionStatus.PENDING)
    page = paginate(
        review.commissions(status=status, program_id=query_id("program"), affiliate_id=query_id("affiliate"))
    )
    return render_template(
        "finance/commissions/index.html",
        page=page,
        names=people.names(db.session, (c.affiliate_id for c in page.items)),
        status=status,
        statuses=list(CommissionStatus),
        programs=programs.by_name(db.session),
        filters=_filters(request.args),
        selection=selection,
    )


def _filters(args) -> dict[str, str]:
    """The page's filters in a query string: status, program and affiliate, as given."""
    return {key: value for key, value in args.items() if key in FILTERS and value}
