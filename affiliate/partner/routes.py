"""The partner home: what an approved affiliate sees first."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import func, select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Link, Program, ProgramStatus, Referral, Role, User

RECENT_REFERRALS = 10

bp = Blueprint("partner", __name__, url_prefix="/partner")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def home():
    programs = db.session.scalars(
        select(Program).where(Program.status == ProgramStatus.ACTIVE).order_by(Program.name)
    ).all()
    link_count = db.session.scalar(select(func.count()).where(Link.affiliate_id == current_user.id))
    referrals = db.session.execute(
        select(Referral.created_at, User.name, Program.name)
        .join(User, User.id == Referral.referred_id)
        .outerjoin(Program, Program.id == Referral.program_id)
        .where(Referral.referrer_id == current_user.id)
        .order_by(Referral.created_at.desc())
        .limit(RECENT_REFERRALS)
    ).all()
    referral_count = db.session.scalar(select(func.count()).where(Referral.referrer_id == current_user.id))
    return render_template(
        "partner/home.html",
        user=current_user,
        programs=programs,
        link_count=link_count,
        referrals=referrals,
        referral_count=referral_count,
    )
