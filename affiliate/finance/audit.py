"""Finance's audit log: every state change of money, newest first, filterable by what changed."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Role
from affiliate.params import paginate
from affiliate.services import audit

# What money depends on; account, program and API key changes are on the admin dashboard.
SUBJECTS = ("commission", "conversion", "payout", "payout_batch", "adjustment")

bp = Blueprint("finance_audit", __name__, url_prefix="/finance/audit")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    subject = request.args.get("subject", "")
    if subject not in SUBJECTS:
        subject = ""
    page = paginate(audit.entries((subject,) if subject else SUBJECTS))
    shown = audit.context_of(db.session, page.items)
    return render_template(
        "finance/audit/index.html",
        page=page,
        emails=shown.emails,
        keys=shown.keys,
        batches=shown.batches,
        subject=subject,
        subjects=SUBJECTS,
        filters={"subject": subject} if subject else {},
    )
