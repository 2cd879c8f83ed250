"""An affiliate's earnings: balances from the ledger, every commission with its rule, payouts, and a statement CSV."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import func, select

from affiliate.auth.access import require_roles
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import (
    Adjustment,
    AdjustmentStatus,
    Commission,
    CommissionStatus,
    Conversion,
    LedgerEntry,
    Payout,
    Program,
    Role,
)
from affiliate.money import to_decimal
from affiliate.params import paginate
from affiliate.services.exports import write_csv
from affiliate.services.payout_reports import statement as build_statement

bp = Blueprint("partner_earnings", __name__, url_prefix="/partner/earnings")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))
PAYOUTS_SHOWN = 24  # the statement CSV has every one
ADJUSTMENTS_SHOWN = 24


@bp.route("/")
def index():
    me = current_user.id
    balances: dict[str, dict[str, int]] = {}
    rows = db.session.execute(
        select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.affiliate_id == me)
        .group_by(LedgerEntry.account, LedgerEntry.currency)
    ).all()
    for account, currency, total in rows:
        kind = account.split(":", 1)[0]
        # Credits to the affiliate are negative in the ledger; shown as what is owed to them.
        balances.setdefault(currency, {})[kind] = -int(total)
    paid = db.session.execute(
        select(Commission.currency, func.sum(Commission.amount_cents))
        .where(Commission.affiliate_id == me, Commission.status == CommissionStatus.PAID)
        .group_by(Commission.currency)
    ).all()
    for currency, total in paid:
        balances.setdefault(currency, {})["paid"] = int(total)
    mine = select(Commission).where(Commission.affiliate_id == me)
    page = paginate(mine.order_by(Commission.created_at.desc(), Commission.id.desc()))
    ids = {commission.conversion_id for commission in page.items}
    orders = dict(db.session.execute(select(Conversion.id, Conversion.order_id).where(Conversion.id.in_(ids))).all())
    payouts = db.session.scalars(
        select(Payout).where(Payout.affiliate_id == me).order_by(Payout.created_at.desc(), Payout.id.desc())
        .limit(PAYOUTS_SHOWN)
    ).all()  # fmt: skip
    # Only posted ones: a bonus waiting for a second approver is not yet owed, and a rejected one never was.
    adjustments = db.session.execute(
        select(Adjustment, Program.name)
        .join(Program, Program.id == Adjustment.program_id)
        .where(Adjustment.affiliate_id == me, Adjustment.status == AdjustmentStatus.APPROVED)
        .order_by(Adjustment.approved_at.desc(), Adjustment.id.desc())
        .limit(ADJUSTMENTS_SHOWN)
    ).all()
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
        (line.at.strftime("%Y-%m-%d %H:%M:%S"), line.kind, line.description, line.currency,
         to_decimal(line.amount_cents, line.currency), to_decimal(line.balance_cents, line.currency))
        for line in build_statement(db.session, current_user.id)
    ]  # fmt: skip
    return csv_download(write_csv(rows, header), "clicktrail-statement.csv")
