"""Finance's audit log: every state change of money, newest first, in words, filterable by what changed."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Role
from affiliate.params import paginate
from affiliate.services import audit

# What money depends on, and its name on the filter; account, program and API key changes are on the admin dashboard.
SUBJECTS = {
    "commission": "Commission",
    "conversion": "Conversion",
    "payout": "Payout",
    "payout_batch": "Payout batch",
    "adjustment": "Bonus or clawback",
}

bp = Blueprint("finance_audit", __name__, url_prefix="/finance/audit")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    subject = request.args.get("subject", "")
    if subject not in SUBJECTS:
        subject = ""
    subjects = (subject,) if subject else tuple(SUBJECTS)
    kinds = audit.kinds(subjects)
    action = request.args.get("action", "")
    if action not in kinds:
        action = ""
    page = paginate(audit.entries(subjects, action or None))
    names = audit.names_for(db.session, page.items)
    filters = {key: value for key, value in (("subject", subject), ("action", action)) if value}
    return render_template(
        "finance/audit/index.html",
        page=page,
        wordings={entry.id: audit.describe(entry, names) for entry in page.items},
        subject=subject,
        subjects=SUBJECTS,
        action=action,
        kinds=kinds,
        filters=filters,
    )
