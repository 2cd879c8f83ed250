"""An affiliate's earnings: balances from the ledger, every commission with its rule, payouts, and a statement CSV."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import Role
from affiliate.money import to_decimal
from affiliate.params import paginate
from affiliate.services import payout_reports
from affiliate.services.exports import write_csv
from affiliate.services.payout_reports import statement as build_statement

bp = Blueprint("partner_earnings", __name__, url_prefix="/partner/earnings")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))
PAYOUTS_SHOWN = 24  # the statement CSV has every one
ADJUSTMENTS_SHOWN = 24


@bp.route("/")
def index():
    me = current_user.id
    balances = payout_reports.balances(db.session, me)
    page = paginate(payout_reports.commissions_of(me))
    orders = payout_reports.order_ids(db.session, {commission.conversion_id for commission in page.items})
    payouts = payout_reports.recent_payouts(db.session, me, PAYOUTS_SHOWN)
    adjustments = payout_reports.posted_adjustments(db.session, me, ADJUSTMENTS_SHOWN)
    carried = {
        currency: b["affiliate_payable"] for currency, b in balances.items() if b.get("affiliate_payable", 0) < 0
    }
    return render_template(
        "partner/earnings/index.html",
        balances=balances,
        page=page,
        orders=orders,
        payouts=payouts,
        carried=carried,
        adjustments=adjustments,
    )


@bp.route("/statement.csv")
def statement():
    """Every commission, refund, bonus, clawback and payout of the signed-in affiliate with a running balance."""
    header = ("date_utc", "type", "description", "currency", "amount", "balance")
    rows = [
        (
            line.at.strftime("%Y-%m-%d %H:%M:%S"),
            line.kind,
            line.description,
            line.currency,
            to_decimal(line.amount_cents, line.currency),
            to_decimal(line.balance_cents, line.currency),
        )
        for line in build_statement(db.session, current_user.id)
    ]
    return csv_download(write_csv(rows, header), "clicktrail-statement.csv")
