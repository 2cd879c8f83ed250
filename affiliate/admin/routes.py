"""The admin dashboard."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import AuditLog, Program, Role, User, UserStatus

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_roles(Role.ADMIN))


@bp.route("/")
def index():
    counts = dict(
        db.session.execute(
            select(User.status, func.count()).where(User.role == Role.AFFILIATE).group_by(User.status)
        ).all()
    )
    programs = db.session.scalar(select(func.count()).select_from(Program))
    recent = db.session.execute(
        select(AuditLog, User.email)
        .outerjoin(User, User.id == AuditLog.actor_id)
        .order_by(AuditLog.id.desc())
        .limit(20)
    ).all()
    return render_template(
        "admin/index.html",
        pending=counts.get(UserStatus.PENDING.value, 0),
        active=counts.get(UserStatus.ACTIVE.value, 0),
        suspended=counts.get(UserStatus.SUSPENDED.value, 0),
        programs=programs,
        recent=recent,
    )
