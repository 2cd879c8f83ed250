"""Partner groups of a program, for admins: the groups and their plans, new groups, moving affiliates in bulk."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import CommissionPlan, Program, Role, utcnow
from affiliate.params import TICKING_PAGE_SIZE, form_ids, paginate, parse_id
from affiliate.services import people
from affiliate.services.groups import GroupError, create_group, group_names, groups_of, move
from affiliate.services.plans import in_words
from affiliate.services.standing import terms_of

bp = Blueprint("admin_groups", __name__, url_prefix="/admin/programs/<int:program_id>/groups")
bp.before_request(require_roles(Role.ADMIN))

MAX_MOVE = 1000


@bp.route("/")
def index(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    now = utcnow()
    groups = groups_of(db.session, program.id)
    plans = {group.id: in_words(terms_of(_plan(program.id, group.id, now)), program.currency) for group in groups}
    membership = group_names(db.session, program.id)
    page = paginate(people.affiliates_by_name(), TICKING_PAGE_SIZE)
    return render_template(
        "admin/groups/index.html", program=program, groups=groups, plans=plans, page=page, membership=membership
    )


@bp.post("/new")
def create(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    try:
        group = create_group(
            db.session, program.id, request.form.get("name", ""), actor_id=current_user.id, now=utcnow()
        )
    except GroupError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(f"Group {group.name} created. Give it a plan, then move affiliates into it.", "success")
    return redirect(url_for("admin_groups.index", program_id=program.id))


@bp.post("/move")
def move_affiliates(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    ids = form_ids()[:MAX_MOVE]
    target = request.form.get("group", "")
    if not ids:
        flash("Tick at least one affiliate to move.", "error")
        return redirect(url_for("admin_groups.index", program_id=program.id))
    if target == "default":
        group_id = None
    elif parse_id(target) is not None:
        group_id = parse_id(target)
    else:
        flash("Choose the group to move them to.", "error")
        return redirect(url_for("admin_groups.index", program_id=program.id))
    try:
        moved = move(db.session, program.id, ids, group_id, actor_id=current_user.id, now=utcnow())
    except GroupError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(
            f"{moved} affiliate{'s' if moved != 1 else ''} moved. Conversions evaluated from now on are paid by "
            "their new group's plan; commissions already accrued do not change.",
            "success",
        )
    return redirect(url_for("admin_groups.index", program_id=program.id))


def _plan(program_id: int, group_id: int | None, now: datetime) -> CommissionPlan | None:
    """The group's own plan version in force now (the default group's is the program's)."""
    owner = CommissionPlan.group_id.is_(None) if group_id is None else CommissionPlan.group_id == group_id
    return db.session.scalar(
        select(CommissionPlan)
        .where(
            CommissionPlan.program_id == program_id,
            CommissionPlan.affiliate_id.is_(None),
            owner,
            CommissionPlan.effective_from <= now,
        )
        .order_by(CommissionPlan.effective_from.desc(), CommissionPlan.id.desc())
        .limit(1)
    )
