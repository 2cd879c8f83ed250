"""Finance's audit log: every state change of money, newest first, filterable by what changed."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import ApiKey, AuditLog, Payout, Role, User
from affiliate.params import paginate

PAGE_SIZE = 50
# What money depends on; account, program and API key changes are on the admin dashboard.
SUBJECTS = ("commission", "conversion", "payout", "payout_batch", "adjustment")

bp = Blueprint("finance_audit", __name__, url_prefix="/finance/audit")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    subject = request.args.get("subject", "")
    query = select(AuditLog)
    if subject in SUBJECTS:
        query = query.where(AuditLog.subject_type == subject)
    else:
        subject = ""
        query = query.where(AuditLog.subject_type.in_(SUBJECTS))
    page = paginate(query.order_by(AuditLog.at.desc(), AuditLog.id.desc()), per_page=PAGE_SIZE)
    actors = {entry.actor_id for entry in page.items} - {None}
    emails = dict(db.session.execute(select(User.id, User.email).where(User.id.in_(actors))).all())
    key_ids = {entry.actor_key_id for entry in page.items} - {None}
    keys = dict(db.session.execute(select(ApiKey.id, ApiKey.prefix).where(ApiKey.id.in_(key_ids))).all())
    payout_ids = {entry.subject_id for entry in page.items if entry.subject_type == "payout"}
    batches = dict(db.session.execute(select(Payout.id, Payout.batch_id).where(Payout.id.in_(payout_ids))).all())
    filters = {"subject": subject} if subject else {}
    return render_template(
        "finance/audit.html", page=page, emails=emails, keys=keys, batches=batches, subject=subject, subjects=SUBJECTS,
        filters=filters,
    )  # fmt: skip
