"""Finance's view of commissions: filter them, and approve or reject pending ones, many at once, with a note."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Commission, CommissionStatus, Program, Role, User, utcnow
from affiliate.params import form_ids, paginate, query_id
from affiliate.services.accrual import approve, reject
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

PAGE_SIZE = 50
MAX_BATCH = 500

bp = Blueprint("finance_commissions", __name__, url_prefix="/finance/commissions")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    status = request.args.get("status", CommissionStatus.PENDING)
    query = select(Commission)
    if status in set(CommissionStatus):
        query = query.where(Commission.status == status)
    if query_id("program"):
        query = query.where(Commission.program_id == query_id("program"))
    if query_id("affiliate"):
        query = query.where(Commission.affiliate_id == query_id("affiliate"))
    page = paginate(query.order_by(Commission.created_at, Commission.id), per_page=PAGE_SIZE)
    names = dict(db.session.execute(
        select(User.id, User.name).where(User.id.in_({c.affiliate_id for c in page.items}))
    ).all())  # fmt: skip
    filters = {key: value for key, value in request.args.items() if key in ("status", "program", "affiliate") and value}
    return render_template(
        "finance/commissions.html", page=page, names=names, status=status, statuses=list(CommissionStatus),
        programs=db.session.scalars(select(Program).order_by(Program.name)).all(), filters=filters,
    )  # fmt: skip


@bp.post("/decide")
def decide():
    """Approve or reject the ticked pending commissions; each changes once (a guarded UPDATE), with its ledger entry."""
    action = request.form.get("decision")
    ids = form_ids(big=True)[:MAX_BATCH]
    note = (request.form.get("note") or "").strip()[:1000]
    if action not in ("approve", "reject") or not ids:
        flash("Tick at least one commission and choose approve or reject.", "error")
        return redirect(url_for("finance_commissions.index"))
    if unstorable(note):
        flash(f"The note {UNSTORABLE_MESSAGE}.", "error")
        return redirect(url_for("finance_commissions.index"))
    if action == "reject" and not note:
        flash("Say why when rejecting: the note is kept in the audit log.", "error")
        return redirect(url_for("finance_commissions.index"))
    now = utcnow()
    changed = 0
    for commission in db.session.scalars(select(Commission).where(Commission.id.in_(ids))):
        if action == "approve":
            changed += approve(db.session, commission, now=now, actor_id=current_user.id)
        else:
            changed += reject(db.session, commission, now=now, actor_id=current_user.id, note=note)
    db.session.commit()
    message = f"{changed} commission{'s' if changed != 1 else ''} {action}d."
    if len(ids) - changed:
        message += (f" {len(ids) - changed} did not change: they were no longer pending, or their conversion is"
                    " under review (decide it in the review queue first).")  # fmt: skip
    flash(message, "success")
    return redirect(url_for("finance_commissions.index"))
