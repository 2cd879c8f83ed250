"""Report pages: an affiliate's dashboard and breakdowns; staff overview, fraud, payouts and drill-downs.

An affiliate's reports are always scoped to the signed-in affiliate; the program filter
only offers programs they have links on. Every table is paginated and downloadable as CSV
through ``write_csv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import Blueprint, abort, render_template, request
from flask_login import current_user
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import Link, Program, Role, User
from affiliate.money import to_decimal
from affiliate.reports.charts import bar_chart
from affiliate.reports.forms import ReportForm
from affiliate.services import reports as service
from affiliate.services.exports import write_csv
from affiliate.services.report_figures import BREAKDOWNS, Period, Row, Scope

PAGE_SIZE = 50
TOP = 10
PARTNER_BREAKDOWNS = tuple(name for name, spec in BREAKDOWNS.items() if not spec.staff_only)
# Program-wide tables for staff; breakdowns by a click's dimension are per affiliate (the drill-down).
STAFF_BREAKDOWNS = ("day", "program", "affiliate", "excluded")

partner = Blueprint("reports", __name__, url_prefix="/partner/reports")
partner.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))
staff = Blueprint("staff_reports", __name__, url_prefix="/admin/reports")
staff.before_request(require_roles(Role.ADMIN, Role.FINANCE))


@dataclass
class Page:
    """One page of a list, shaped like Flask-SQLAlchemy's pagination for the pager macro."""

    items: list
    page: int
    pages: int
    total: int

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


@partner.route("/")
def dashboard():
    return _dashboard(current_user, "reports.breakdown", {})


@partner.route("/<dimension>")
def breakdown(dimension: str):
    return _breakdown_page(current_user, dimension, PARTNER_BREAKDOWNS, {})


@partner.route("/<dimension>.csv")
def breakdown_csv(dimension: str):
    return _breakdown_csv(current_user, dimension, PARTNER_BREAKDOWNS)


@staff.route("/")
def overview():
    form, period = _filters(_all_programs())
    if period is None:
        return render_template("reports/overview.html", form=form, report=None), 400
    report = service.overview(db.session, Scope(program_id=form.program.data or None), period)
    return render_template(
        "reports/overview.html", form=form, report=report, charts=_charts(report.days), query=_query(form), top=TOP
    )


@staff.route("/<dimension>")
def program_breakdown(dimension: str):
    return _breakdown_page(None, dimension, STAFF_BREAKDOWNS, {})


@staff.route("/<dimension>.csv")
def program_breakdown_csv(dimension: str):
    return _breakdown_csv(None, dimension, STAFF_BREAKDOWNS)


@staff.route("/fraud")
def fraud():
    form, period = _filters(_all_programs())
    if period is None:
        return render_template("reports/fraud.html", form=form, clicks=None, flags=None), 400
    scope = Scope(program_id=form.program.data or None)
    clicks = service.breakdown(db.session, scope, period, "excluded")
    flags = _paginate(service.conversion_flags(db.session, scope, period))
    return render_template("reports/fraud.html", form=form, clicks=clicks, flags=flags, query=_query(form))


@staff.route("/fraud.csv")
def fraud_csv():
    form, period = _filters(_all_programs())
    if period is None:
        abort(400)
    flags = service.conversion_flags(db.session, Scope(program_id=form.program.data or None), period)
    header = ("rule", "action", "conversions", "awaiting_review")
    rows = [(flag.rule, flag.action, flag.conversions, flag.awaiting_review) for flag in flags]
    return csv_download(write_csv(rows, header), f"clicktrail-fraud-flags-{period.start}-{period.end}.csv")


@staff.route("/payouts")
def payouts():
    form, period = _filters([])
    if period is None:
        return render_template("reports/payouts.html", form=form, built=None, paid=None), 400
    built, paid = service.payout_summary(db.session, period)
    return render_template("reports/payouts.html", form=form, built=_paginate(built), paid=paid, query=_query(form))


@staff.route("/payouts.csv")
def payouts_csv():
    _, period = _filters([])
    if period is None:
        abort(400)
    built, paid = service.payout_summary(db.session, period)
    header = ("counted_by", "status", "currency", "payouts", "amount")
    rows = [(kind, p.status, p.currency, p.payouts, to_decimal(p.amount_cents, p.currency))
            for kind, summary in (("built", built), ("paid", paid)) for p in summary]  # fmt: skip
    return csv_download(write_csv(rows, header), f"clicktrail-payouts-{period.start}-{period.end}.csv")


@staff.route("/affiliates/<int:user_id>")
def affiliate(user_id: int):
    return _dashboard(_affiliate_or_404(user_id), "staff_reports.affiliate_breakdown", {"user_id": user_id})


@staff.route("/affiliates/<int:user_id>/<dimension>")
def affiliate_breakdown(user_id: int, dimension: str):
    person = _affiliate_or_404(user_id)
    return _breakdown_page(person, dimension, PARTNER_BREAKDOWNS, {"user_id": user_id})


@staff.route("/affiliates/<int:user_id>/<dimension>.csv")
def affiliate_breakdown_csv(user_id: int, dimension: str):
    return _breakdown_csv(_affiliate_or_404(user_id), dimension, PARTNER_BREAKDOWNS)


def _dashboard(person: User, breakdown_endpoint: str, route_args: dict):
    form, period = _filters(_programs_of(person.id))
    context = {"form": form, "person": person, "breakdown_endpoint": breakdown_endpoint, "route_args": route_args,
               "breakdowns": [BREAKDOWNS[name] for name in PARTNER_BREAKDOWNS]}  # fmt: skip
    if period is None:
        return render_template("reports/dashboard.html", report=None, **context), 400
    scope = Scope(person.id, form.program.data or None)
    report = service.overview(db.session, scope, period)
    excluded = service.breakdown(db.session, scope, period, "excluded")
    return render_template("reports/dashboard.html", report=report, excluded=excluded, charts=_charts(report.days),
                           query=_query(form), **context)  # fmt: skip


def _breakdown_page(person: User | None, dimension: str, allowed: tuple[str, ...], route_args: dict):
    """One breakdown as a paginated table; ``person`` None is program-wide (staff). Its CSV is the endpoint + _csv."""
    if dimension not in allowed:
        abort(404)
    form, period = _filters(_programs_of(person.id) if person else _all_programs())
    spec = BREAKDOWNS[dimension]
    context = {"form": form, "spec": spec, "person": person, "endpoint": request.endpoint, "route_args": route_args}
    if period is None:
        return render_template("reports/breakdown.html", page=None, **context), 400
    rows = service.breakdown(db.session, Scope(person.id if person else None, form.program.data or None), period,
                             dimension)  # fmt: skip
    return render_template("reports/breakdown.html", page=_paginate(rows),
                           query=_query(form), **context)  # fmt: skip


def _breakdown_csv(person: User | None, dimension: str, allowed: tuple[str, ...]):
    if dimension not in allowed:
        abort(404)
    form, period = _filters(_programs_of(person.id) if person else _all_programs())
    if period is None:
        abort(400)
    scope = Scope(person.id if person else None, form.program.data or None)
    header, rows = service.csv_table(dimension, service.breakdown(db.session, scope, period, dimension))
    return csv_download(write_csv(rows, header), f"clicktrail-{dimension}-{period.start}-{period.end}.csv")


def _filters(programs: list[Program]) -> tuple[ReportForm, Period | None]:
    form = ReportForm(formdata=request.args)
    form.program.choices = [(0, "All programs"), *((program.id, program.name) for program in programs)]
    if not form.validate():
        return form, None
    return form, Period(form.start.data, form.end.data)


def _query(form: ReportForm) -> dict:
    """The filters as query arguments, for links that keep them."""
    query = {"start": form.start.data.isoformat(), "end": form.end.data.isoformat()}
    if form.program.data:
        query["program"] = form.program.data
    return query


def _paginate(rows: list) -> Page:
    """The page of ``rows`` the query asks for: 400 for a page that is not a number, 404 past the last."""
    text = request.args.get("page", "1")
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        abort(400)
    number, pages = int(text), max(1, math.ceil(len(rows) / PAGE_SIZE))
    if not 1 <= number <= pages:
        abort(404)
    return Page(rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE], number, pages, len(rows))


def _charts(days: list[Row]) -> list:
    clicks = [(row.label, row.figures.human) for row in days]
    conversions = [(row.label, row.figures.conversions) for row in days]
    return [bar_chart("chart-clicks", "Human clicks per day", clicks),
            bar_chart("chart-conversions", "Signups and sales per day", conversions)]  # fmt: skip


def _programs_of(affiliate_id: int) -> list[Program]:
    """Programs the affiliate has links on: the only ones their filter offers."""
    return list(db.session.scalars(
        select(Program).where(Program.id.in_(select(Link.program_id).where(Link.affiliate_id == affiliate_id)))
        .order_by(Program.name)
    ))  # fmt: skip


def _all_programs() -> list[Program]:
    return list(db.session.scalars(select(Program).order_by(Program.name)))


def _affiliate_or_404(user_id: int) -> User:
    person = db.session.get(User, user_id)
    if person is None or person.role != Role.AFFILIATE:
        abort(404)
    return person
