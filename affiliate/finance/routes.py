"""Finance's first page: what waits for them (conversions to review, commissions, adjustments, payout batches at
each step), each count linking to the list that holds it."""

from __future__ import annotations

from flask import Blueprint, render_template

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Role
from affiliate.services import batches
from affiliate.services.waiting import waiting

RECENT_BATCHES = 5

bp = Blueprint("finance", __name__, url_prefix="/finance")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    recent = list(db.session.scalars(batches.newest_first().limit(RECENT_BATCHES)))
    return render_template(
        "finance/index.html",
        waiting=waiting(db.session),
        recent=recent,
        progress=batches.progress_of(db.session, recent),
    )
