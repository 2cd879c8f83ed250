"""A member's referral link, the friends who signed up with it, and their rewards."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Commission, Referral, Role, User

bp = Blueprint("member", __name__, url_prefix="/member")
bp.before_request(require_roles(Role.MEMBER))


@bp.route("/")
def home():
    friends = db.session.execute(
        select(Referral.created_at, User.name)
        .join(User, User.id == Referral.referred_id)
        .where(Referral.referrer_id == current_user.id)
        .order_by(Referral.created_at.desc())
    ).all()
    rewards = db.session.scalars(
        select(Commission).where(Commission.affiliate_id == current_user.id).order_by(Commission.id.desc())
    ).all()
    link = url_for("auth.signup", ref=current_user.referral_code, _external=True)
    return render_template("member/home.html", user=current_user, link=link, friends=friends, rewards=rewards)
