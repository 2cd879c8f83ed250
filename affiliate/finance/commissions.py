"""Finance's view of commissions: filter them, and approve or reject pending ones, many at once, with a note."""

from __future__ import annotations

from flask import Blueprint, flash, render_template, request
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.finance.bulk_decide import Selection, bulk_decide
from affiliate.models import CommissionStatus, Role, utcnow
from affiliate.params import list_filters, paginate, sort_param
from affiliate.services import conversion_lists, people, programs, review

ALL = "all"

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
        filters=_kept(request.args),
        show_again=lambda selection: (_index(selection), 422),
    )


def _index(selection: Selection) -> str:
    shared = list_filters()
    filters = _filters(request.args)
    status = filters.get("status", CommissionStatus.PENDING)
    sort = sort_param(review.COMMISSION_SORTS, review.OLDEST_COMMISSION)
    page = paginate(
        review.commissions(
            status=None if status == ALL else status,
            program_id=shared.program_id,
            affiliate=shared.affiliate,
            order=shared.order,
            days=shared.days,
            sort=sort,
        )
    )
    for error in shared.errors:
        flash(error, "warning")
    return render_template(
        "finance/commissions/index.html",
        page=page,
        names=people.names(db.session, (c.affiliate_id for c in page.items)),
        conversions=conversion_lists.by_id(db.session, (c.conversion_id for c in page.items)),
        status=status,
        statuses=[ALL, *CommissionStatus],
        programs=programs.by_name(db.session),
        filters=filters,
        sort=sort,
        kept={**filters, **sort.args()},
        selection=selection,
    )


def _filters(args) -> dict[str, str]:
    """The page's filters in a query string: a status (the page shows pending ones when none is asked, and all of
    them for one it does not know), a program, an affiliate (name, email, referral code or id), part of an order id,
    and the days the commissions were made on."""
    status = args.get("status")
    chosen = {"status": status if status in (ALL, *CommissionStatus) else ALL} if status else {}
    return {**chosen, **list_filters().args}


def _kept(args) -> dict[str, str]:
    """The filters and the order asked for, to go back to the same list after a decision."""
    return {**_filters(args), **sort_param(review.COMMISSION_SORTS, review.OLDEST_COMMISSION).args()}
