"""Staff reports: the program-wide overview, fraud, payouts and breakdowns, and any affiliate's reports (drill-down)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from affiliate.auth.access import require_roles
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import Role
from affiliate.money import to_decimal
from affiliate.replica import reading_session
from affiliate.reports import pages
from affiliate.reports.pages import PARTNER_BREAKDOWNS, charts, filters, paginate_rows, query_of
from affiliate.services import programs
from affiliate.services import reports as service
from affiliate.services.exports import write_csv
from affiliate.services.report_figures import Scope

TOP = 10
# Program-wide tables for staff; breakdowns by a click's dimension are per affiliate (the drill-down).
STAFF_BREAKDOWNS = ("day", "program", "affiliate", "excluded")

bp = Blueprint("admin_reports", __name__, url_prefix="/admin/reports")
bp.before_request(require_roles(Role.ADMIN, Role.FINANCE))


@bp.route("/")
def overview():
    form, period = filters(programs.by_name(db.session))
    if period is None:
        return render_template("admin/reports/overview.html", form=form, report=None), 400
    report = service.overview(reading_session(), Scope(program_id=form.program.data or None), period)
    return render_template(
        "admin/reports/overview.html",
        form=form,
        report=report,
        charts=charts(report.days),
        query=query_of(form),
        top=TOP,
    )


@bp.route("/<dimension>")
def program_breakdown(dimension: str):
    return pages.breakdown_page(None, dimension, STAFF_BREAKDOWNS, {})


@bp.route("/<dimension>.csv")
def program_breakdown_csv(dimension: str):
    return pages.breakdown_csv(None, dimension, STAFF_BREAKDOWNS)


@bp.route("/fraud")
def fraud():
    form, period = filters(programs.by_name(db.session))
    if period is None:
        return render_template("admin/reports/fraud.html", form=form, clicks=None, flags=None), 400
    scope = Scope(program_id=form.program.data or None)
    clicks = service.breakdown(reading_session(), scope, period, "excluded")
    flags = paginate_rows(service.conversion_flags(reading_session(), scope, period))
    return render_template("admin/reports/fraud.html", form=form, clicks=clicks, flags=flags, query=query_of(form))


@bp.route("/fraud.csv")
def fraud_csv():
    form, period = filters(programs.by_name(db.session))
    if period is None:
        abort(400)
    flags = service.conversion_flags(reading_session(), Scope(program_id=form.program.data or None), period)
    header = ("rule", "action", "conversions", "awaiting_review")
    rows = [(flag.rule, flag.action, flag.conversions, flag.awaiting_review) for flag in flags]
    return csv_download(write_csv(rows, header), f"clicktrail-fraud-flags-{period.start}-{period.end}.csv")


@bp.route("/payouts")
def payouts():
    form, period = filters([])
    if period is None:
        return render_template("admin/reports/payouts.html", form=form, built=None, paid=None), 400
    built, paid = service.payout_summary(db.session, period)
    return render_template(
        "admin/reports/payouts.html", form=form, built=paginate_rows(built), paid=paid, query=query_of(form)
    )


@bp.route("/payouts.csv")
def payouts_csv():
    _, period = filters([])
    if period is None:
        abort(400)
    built, paid = service.payout_summary(db.session, period)
    header = ("counted_by", "status", "currency", "payouts", "amount")
    rows = [
        (kind, p.status, p.currency, p.payouts, to_decimal(p.amount_cents, p.currency))
        for kind, summary in (("built", built), ("paid", paid))
        for p in summary
    ]
    return csv_download(write_csv(rows, header), f"clicktrail-payouts-{period.start}-{period.end}.csv")


@bp.route("/affiliates/<int:user_id>")
def affiliate(user_id: int):
    return pages.dashboard(pages.affiliate_or_404(user_id), "admin_reports.affiliate_breakdown", {"user_id": user_id})


@bp.route("/affiliates/<int:user_id>/<dimension>")
def affiliate_breakdown(user_id: int, dimension: str):
    person = pages.affiliate_or_404(user_id)
    return pages.breakdown_page(person, dimension, PARTNER_BREAKDOWNS, {"user_id": user_id})


@bp.route("/affiliates/<int:user_id>/<dimension>.csv")
def affiliate_breakdown_csv(user_id: int, dimension: str):
    return pages.breakdown_csv(pages.affiliate_or_404(user_id), dimension, PARTNER_BREAKDOWNS)
