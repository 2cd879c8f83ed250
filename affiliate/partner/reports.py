"""An affiliate's reports: the dashboard and the breakdowns, always of the signed-in affiliate, each also as CSV."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.models import Role
from affiliate.reports import pages
from affiliate.reports.pages import PARTNER_BREAKDOWNS

bp = Blueprint("partner_reports", __name__, url_prefix="/partner/reports")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def dashboard():
    return pages.dashboard(current_user, "partner_reports.breakdown", {})


@bp.route("/<dimension>")
def breakdown(dimension: str):
    return pages.breakdown_page(current_user, dimension, PARTNER_BREAKDOWNS, {})


@bp.route("/<dimension>.csv")
def breakdown_csv(dimension: str):
    return pages.breakdown_csv(current_user, dimension, PARTNER_BREAKDOWNS)
