"""What the partner's and staff's report pages share: an affiliate's dashboard and breakdowns (staff see them as a
drill-down), the filters, the charts and the pagination of a computed list.

An affiliate's reports are always scoped to one affiliate; the program filter only offers programs they have links
on. Every table is paginated and downloadable as CSV through ``write_csv``. The figures are read from the
streaming replica when one is set and close enough (affiliate/replica.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import abort, render_template, request

from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.models import Program, User
from affiliate.params import PAGE_SIZE
from affiliate.replica import reading_session
from affiliate.reports.charts import bar_chart
from affiliate.reports.forms import ReportForm
from affiliate.services import people, programs
from affiliate.services import reports as service
from affiliate.services.exports import write_csv
from affiliate.services.report_figures import BREAKDOWNS, Period, Row, Scope
from affiliate.validators import options

PARTNER_BREAKDOWNS = tuple(name for name, spec in BREAKDOWNS.items() if not spec.staff_only)


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


def dashboard(person: User, breakdown_endpoint: str, route_args: dict):
    form, period = filters(programs.promoted_by(db.session, person.id))
    context = {
        "form": form,
        "person": person,
        "breakdown_endpoint": breakdown_endpoint,
        "route_args": route_args,
        "breakdowns": [BREAKDOWNS[name] for name in PARTNER_BREAKDOWNS],
    }
    if period is None:
        return render_template("shared/reports/dashboard.html", report=None, **context), 400
    scope = Scope(person.id, form.program.data or None)
    report = service.overview(reading_session(), scope, period)
    excluded = service.breakdown(reading_session(), scope, period, "excluded")
    return render_template(
        "shared/reports/dashboard.html",
        report=report,
        excluded=excluded,
        charts=charts(report.days),
        query=query_of(form),
        **context,
    )


def breakdown_page(person: User | None, dimension: str, allowed: tuple[str, ...], route_args: dict):
    """One breakdown as a paginated table; ``person`` None is program-wide (staff). Its CSV is the endpoint + _csv."""
    if dimension not in allowed:
        abort(404)
    form, period = filters(programs.promoted_by(db.session, person.id) if person else programs.by_name(db.session))
    spec = BREAKDOWNS[dimension]
    context = {"form": form, "spec": spec, "person": person, "endpoint": request.endpoint, "route_args": route_args}
    if period is None:
        return render_template("shared/reports/breakdown.html", page=None, **context), 400
    rows = service.breakdown(
        reading_session(), Scope(person.id if person else None, form.program.data or None), period, dimension
    )
    return render_template("shared/reports/breakdown.html", page=paginate_rows(rows), query=query_of(form), **context)


def breakdown_csv(person: User | None, dimension: str, allowed: tuple[str, ...]):
    if dimension not in allowed:
        abort(404)
    form, period = filters(programs.promoted_by(db.session, person.id) if person else programs.by_name(db.session))
    if period is None:
        abort(400)
    scope = Scope(person.id if person else None, form.program.data or None)
    header, rows = service.csv_table(dimension, service.breakdown(reading_session(), scope, period, dimension))
    return csv_download(write_csv(rows, header), f"clicktrail-{dimension}-{period.start}-{period.end}.csv")


def filters(choices: list[Program]) -> tuple[ReportForm, Period | None]:
    form = ReportForm(formdata=request.args)
    form.program.choices = options([(0, "All programs"), *((program.id, program.name) for program in choices)])
    if not form.validate():
        return form, None
    return form, Period(form.start.data, form.end.data)


def query_of(form: ReportForm) -> dict:
    """The filters as query arguments, for links that keep them."""
    query = {"start": form.start.data.isoformat(), "end": form.end.data.isoformat()}
    if form.program.data:
        query["program"] = form.program.data
    return query


def paginate_rows(rows: list) -> Page:
    """The page of ``rows`` the query asks for: 400 for a page that is not a number, 404 past the last."""
    text = request.args.get("page", "1")
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        abort(400)
    number, pages = int(text), max(1, math.ceil(len(rows) / PAGE_SIZE))
    if not 1 <= number <= pages:
        abort(404)
    return Page(rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE], number, pages, len(rows))


def charts(days: list[Row]) -> list:
    clicks = [(row.label, row.figures.human) for row in days]
    conversions = [(row.label, row.figures.conversions) for row in days]
    return [
        bar_chart("chart-clicks", "Human clicks per day", clicks),
        bar_chart("chart-conversions", "Signups and sales per day", conversions),
    ]


def affiliate_or_404(user_id: int) -> User:
    """The affiliate a staff drill-down is about; 404 for anyone else."""
    return people.affiliate(db.session, user_id) or abort(404)
