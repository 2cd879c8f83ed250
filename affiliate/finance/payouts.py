"""Payout batches for finance: build, approve (a second person, with a fresh login), export, mark paid or failed."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.auth.sessions import login_is_fresh
from affiliate.downloads import csv_download
from affiliate.extensions import db
from affiliate.finance.forms import (
    BuildBatchForm,
    CancelBatchForm,
    MarkFailedForm,
    MarkManyPaidForm,
    MarkPaidForm,
    RepeatExportForm,
)
from affiliate.models import (
    BatchStatus,
    Payout,
    PayoutBatch,
    PayoutStatus,
    Role,
    utcnow,
)
from affiliate.money import format_amount, to_decimal
from affiliate.params import form_ids, paginate, sort_param
from affiliate.services import audit, batches, people
from affiliate.services import payouts as service
from affiliate.services.exports import FORMATS, ExportError, write_csv
from affiliate.services.payout_reports import paid_in_year
from affiliate.validators import options

HELD_SHOWN = 20  # flashes live in the session cookie: name the first few held affiliates, count the rest
FIRST_YEAR, LAST_YEAR = 2000, 9998

bp = Blueprint("finance_payouts", __name__, url_prefix="/finance/payouts")
bp.before_request(require_roles(Role.FINANCE, Role.ADMIN))


@bp.route("/")
def index():
    status = request.args.get("status", "")
    if status not in set(BatchStatus):
        status = ""
    sort = sort_param(batches.BATCH_SORTS, batches.NEWEST)
    page = paginate(batches.newest_first(status=status or None, sort=sort))
    deciders = {batch.created_by_id for batch in page.items} | {batch.approved_by_id for batch in page.items}
    names = people.names(db.session, deciders)
    filters = {"status": status} if status else {}
    return render_template(
        "finance/payouts/index.html",
        page=page,
        progress=batches.progress_of(db.session, page.items),
        names=names,
        form=_build_form(),
        statuses=list(BatchStatus),
        status=status,
        filters=filters,
        sort=sort,
        kept={**filters, **sort.args()},
    )


@bp.post("/build")
def build():
    """Reserve every qualifying affiliate's approved balance into a draft batch; amounts come from the ledger."""
    form = _build_form()
    if not form.validate_on_submit():
        _flash_errors(form)
        return redirect(url_for("finance_payouts.index"), 303)
    currency = form.currency.data
    try:
        batch, held = service.build_batch(db.session, currency, actor=current_user, now=utcnow())
    except service.PayoutError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("finance_payouts.index"), 303)
    db.session.commit()
    if held:
        flash(_held_message(held), "warning")
    if batch is None:
        flash(f"Nothing to pay: no affiliate with payout details is owed the minimum payout in {currency}.", "info")
        return redirect(url_for("finance_payouts.index"), 303)
    count = batches.payout_count(db.session, batch.id)
    total = format_amount(batch.total_cents, currency)
    flash(
        f"Batch #{batch.id} built: {count} payout{'s' if count != 1 else ''}, {total}. "
        "A second finance user must approve it.",
        "success",
    )
    return redirect(url_for("finance_payouts.show", batch_id=batch.id), 303)


@bp.route("/<int:batch_id>")
def show(batch_id: int):
    return _render_batch(_batch_or_404(batch_id))


@bp.post("/<int:batch_id>/approve")
def approve(batch_id: int):
    """The checker approves a draft batch; it needs the password and the second factor given in the last few minutes."""
    batch = _batch_or_404(batch_id)
    now = utcnow()
    if not login_is_fresh(now, second_factor=True):
        flash(
            "Approving a batch needs a recent sign-in. Enter your password and your second factor, then approve again.",
            "info",
        )
        return redirect(url_for("auth.reauth", next=url_for("finance_payouts.show", batch_id=batch.id)), 303)
    try:
        service.approve_batch(db.session, batch, approver=current_user, now=now, acknowledged=_acknowledged())
    except service.PayoutError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_batch(batch, 409)
    db.session.commit()
    flash(f"Batch #{batch.id} approved. Export it, pay it, then mark each payout paid or failed.", "success")
    return redirect(url_for("finance_payouts.show", batch_id=batch.id), 303)


@bp.route("/<int:batch_id>/export/<any(paypal, wise, bank):export_format>", methods=["GET", "POST"])
def export(batch_id: int, export_format: str):
    """Make a provider file of an approved batch and record it; a second file of a format needs a confirmation."""
    batch = _batch_or_404(batch_id)
    form = RepeatExportForm()
    if request.method == "GET":
        return _render_repeat(batch, export_format, form)
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_batch(batch, 400)
    try:
        exported = service.export_batch(
            db.session, batch, export_format, actor=current_user, now=utcnow(), repeat=bool(form.confirm_repeat.data)
        )
    except service.RepeatExport:
        db.session.rollback()
        return _render_repeat(batch, export_format, form, 409)
    except service.PayoutError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_batch(batch, 409)
    except ExportError as error:
        db.session.commit()  # no file, but the payouts of suspended affiliates found on the way stay held
        flash(str(error), "error")
        return _render_batch(batch, 409)
    db.session.commit()
    suffix = f"-again-{exported.record.id}" if exported.record.repeat else ""
    return csv_download(exported.text, f"clicktrail-batch-{batch.id}-{export_format}{suffix}.csv")


@bp.post("/<int:batch_id>/cancel")
def cancel(batch_id: int):
    """Cancel a draft batch: its reserved amounts return to the affiliates' balances for a later batch."""
    batch = _batch_or_404(batch_id)
    form = CancelBatchForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_batch(batch, 422)
    try:
        count = service.cancel_batch(
            db.session, batch, actor=current_user, reason=form.reason.data.strip(), now=utcnow()
        )
    except service.PayoutError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_batch(batch, 409)
    db.session.commit()
    flash(
        f"Batch #{batch.id} cancelled: {count} payout{'s' if count != 1 else ''} returned to the affiliates' "
        "balances for a later batch.",
        "success",
    )
    return redirect(url_for("finance_payouts.show", batch_id=batch.id), 303)


@bp.post("/payout/<int:payout_id>/paid")
def mark_paid(payout_id: int):
    payout = db.session.get(Payout, payout_id) or abort(404)
    form = MarkPaidForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_batch(payout.batch, 422)
    reference = form.reference.data.strip()
    if service.mark_paid(db.session, payout, reference=reference, actor=current_user, now=utcnow()):
        db.session.commit()
        flash(f"Payout #{payout.id} marked paid (reference {reference}).{_closed(payout.batch)}", "success")
        return redirect(url_for("finance_payouts.show", batch_id=payout.batch_id), 303)
    if payout.status == PayoutStatus.HELD:
        db.session.commit()  # the hold mark_paid made instead
        flash(f"Payout #{payout.id} is held, not paid: {payout.hold_reason}.", "error")
        return _render_batch(payout.batch, 409)
    return _not_settled(payout)


@bp.post("/<int:batch_id>/paid")
def mark_many_paid(batch_id: int):
    """Mark the ticked payouts of the batch paid with one reference, each as marking it paid alone does; those
    already paid, failed or held are said, not an error."""
    batch = _batch_or_404(batch_id)
    form = MarkManyPaidForm()
    ids = form_ids()
    if not form.validate_on_submit() or not ids:
        _flash_errors(form)
        if not ids:
            flash("Tick the payouts you paid.", "error")
        return _render_batch(batch, 422, ticked=frozenset(ids), reference=form.reference.data or "")
    reference = form.reference.data.strip()
    try:
        settled = service.mark_many_paid(db.session, batch, ids, reference=reference, actor=current_user, now=utcnow())
    except service.PayoutError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _render_batch(batch, 409, ticked=frozenset(ids), reference=reference)
    db.session.commit()  # the payments, and the holds of suspended affiliates found on the way
    flash(settled.sentence(reference) + _closed(batch), "success" if settled.paid else "warning")
    return redirect(
        url_for("finance_payouts.show", batch_id=batch.id, **sort_param(batches.PAYOUT_SORTS, batches.BY_ID).args()),
        303,
    )


def _closed(batch: PayoutBatch) -> str:
    """A sentence to add when the batch is closed now, else nothing."""
    db.session.refresh(batch)
    closed = batch.status == BatchStatus.CLOSED
    return f" Batch #{batch.id} is closed: every payout in it is paid or failed." if closed else ""


@bp.post("/payout/<int:payout_id>/failed")
def mark_failed(payout_id: int):
    payout = db.session.get(Payout, payout_id) or abort(404)
    form = MarkFailedForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_batch(payout.batch, 422)
    if service.mark_failed(db.session, payout, reason=form.reason.data.strip(), actor=current_user, now=utcnow()):
        db.session.commit()
        flash(
            f"Payout #{payout.id} marked failed: its amount is back in the affiliate's balance.{_closed(payout.batch)}",
            "success",
        )
        return redirect(url_for("finance_payouts.show", batch_id=payout.batch_id), 303)
    return _not_settled(payout)


@bp.route("/yearly")
def yearly():
    year, error = _year_argument()
    if error:
        return render_template("finance/payouts/yearly.html", year=None, totals=[], error=error), 400
    totals = paid_in_year(db.session, year)
    sums: dict[str, int] = {}
    for total in totals:
        sums[total.currency] = sums.get(total.currency, 0) + total.total_cents
    return render_template("finance/payouts/yearly.html", year=year, totals=totals, sums=sums, error=None)


@bp.route("/yearly.csv")
def yearly_csv():
    year, error = _year_argument()
    if error:
        return render_template("finance/payouts/yearly.html", year=None, totals=[], error=error), 400
    header = ("affiliate_id", "name", "email", "payout_methods", "currency", "payouts", "total_paid")
    rows = [
        (
            t.affiliate_id,
            t.name,
            t.email,
            " ".join(t.methods),
            t.currency,
            t.payouts,
            to_decimal(t.total_cents, t.currency),
        )
        for t in paid_in_year(db.session, year)
    ]
    return csv_download(write_csv(rows, header), f"clicktrail-payouts-{year}.csv")


def _render_batch(batch: PayoutBatch, status: int = 200, *, ticked: frozenset[int] = frozenset(), reference: str = ""):
    """The batch's page; after a refused bulk mark-paid, ``ticked`` and ``reference`` are shown again."""
    sort = sort_param(batches.PAYOUT_SORTS, batches.BY_ID)
    rows = batches.payouts_of(db.session, batch.id, sort)
    counts = batches.status_counts(db.session, [batch.id]).get(batch.id, {})
    trail = audit.in_words(db.session, batches.trail(db.session, batch.id, [payout.id for payout, _, _ in rows]))
    names = people.names(db.session, {batch.created_by_id, batch.approved_by_id})
    awaiting = service.awaiting_payment(db.session, batch)
    files = {
        name: (len(lines), sum(line.amount_cents for line in lines))
        for name, fmt in FORMATS.items()
        if (lines := [line for line in awaiting if line.method == fmt.method])
    }
    exports = batches.exports_of(db.session, batch.id)
    changed = service.details_changed(db.session, batch) if batch.status == BatchStatus.DRAFT else []
    return render_template(
        "finance/payouts/show.html",
        batch=batch,
        rows=rows,
        trail=trail,
        names=names,
        files=files,
        formats=FORMATS,
        exportable=batch.status in service.EXPORTABLE,
        paid_form=MarkPaidForm(),
        failed_form=MarkFailedForm(),
        exports=exports,
        exported_formats={e.format for e, _ in exports},
        changed=changed,
        changed_ids=",".join(str(c.affiliate_id) for c in changed),
        progress=batches.progress(batch.status, counts),
        sort=sort,
        sort_filters={"batch_id": batch.id},
        many_form=MarkManyPaidForm(formdata=None, reference=reference),
        ticked=ticked,
        payable=any(p.status == PayoutStatus.APPROVED for p, _, _ in rows),
    ), status


def _render_repeat(batch: PayoutBatch, export_format: str, form: RepeatExportForm, status: int = 200):
    """The page that makes a file: for a format exported before, a warning and a confirmation to tick."""
    earlier = [
        (record, email) for record, email in batches.exports_of(db.session, batch.id) if record.format == export_format
    ]
    return render_template(
        "finance/payouts/export.html",
        batch=batch,
        fmt=FORMATS[export_format],
        export_format=export_format,
        earlier=earlier,
        form=form,
        exportable=batch.status in service.EXPORTABLE,
    ), status


def _acknowledged() -> frozenset[int]:
    """The affiliates whose changed payout details the approver saw and ticked the acknowledgement for."""
    if request.form.get("acknowledge_changes") != "yes":
        return frozenset()
    ids = (request.form.get("changed") or "").split(",")
    return frozenset(int(i) for i in ids if i.isascii() and i.isdigit() and len(i) <= 18)


def _not_settled(payout: Payout):
    """The guarded update changed nothing: say why, and change nothing (no second ledger move)."""
    db.session.rollback()
    if payout.status in (PayoutStatus.PAID, PayoutStatus.FAILED):
        flash(f"Payout #{payout.id} is already settled ({payout.status}); nothing changed.", "error")
    else:
        flash(f"Payout #{payout.id} is {payout.status}: approve its batch before settling it.", "error")
    return _render_batch(payout.batch, 409)


def _batch_or_404(batch_id: int) -> PayoutBatch:
    return db.session.get(PayoutBatch, batch_id) or abort(404)


def _build_form() -> BuildBatchForm:
    form = BuildBatchForm()
    form.currency.choices = options((code, code) for code in batches.currencies(db.session))
    return form


def _held_message(held: list[service.Held]) -> str:
    names = people.names(db.session, (h.affiliate_id for h in held))
    parts = [f"{names.get(h.affiliate_id, h.affiliate_id)} ({h.reason})" for h in held[:HELD_SHOWN]]
    more = f" and {len(held) - HELD_SHOWN} more" if len(held) > HELD_SHOWN else ""
    return f"Held back, though owed the minimum: {'; '.join(parts)}{more}."


def _flash_errors(form) -> None:
    for errors in form.errors.values():
        for error in errors:
            flash(error, "error")


def _year_argument() -> tuple[int, str | None]:
    """The ?year= asked for (this year when absent), or an error for anything that is not a plausible year."""
    raw = (request.args.get("year") or "").strip()
    if not raw:
        return utcnow().year, None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not FIRST_YEAR <= int(raw) <= LAST_YEAR:
        return 0, f"Enter a year between {FIRST_YEAR} and {LAST_YEAR}, such as {utcnow().year}."
    return int(raw), None
