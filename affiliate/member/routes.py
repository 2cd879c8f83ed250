"""A member's referral link, the friends who signed up with it, and their rewards."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.mail import external_url
from affiliate.models import Role
from affiliate.services import recruiters
from affiliate.services.accrual import LIVE_COMMISSIONS
from affiliate.services.conversion_lists import earned_by

bp = Blueprint("member", __name__, url_prefix="/member")
bp.before_request(require_roles(Role.MEMBER))


@bp.route("/")
def home():
    friends = [(created_at, name) for created_at, name, _ in recruiters.referrals_by(db.session, current_user.id)]
    rewards = earned_by(db.session, current_user.id)
    totals: dict[str, int] = {}
    for reward in rewards:
        if reward.status in LIVE_COMMISSIONS:
            totals[reward.currency] = totals.get(reward.currency, 0) + reward.amount_cents
    link = external_url("auth.signup", ref=current_user.referral_code)
    return render_template(
        "member/home.html",
        user=current_user,
        link=link,
        friends=friends,
        rewards=rewards,
        totals=sorted(totals.items()),
    )
