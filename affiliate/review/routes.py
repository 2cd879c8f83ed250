"""Flagged conversions wait here for finance: see why, approve or reject one or many, with a note."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Conversion, ConversionStatus, Program, Role, User, utcnow
from affiliate.params import form_ids, paginate, parse_id, query_id
from affiliate.services.fraud import DEFAULT_RULES, DESCRIPTIONS, Action
from affiliate.services.fraud_rules import RuleError, parse_settings, save_rules
from affiliate.services.review import DECISIONS
from affiliate.services.review import decide as decide_conversions
from affiliate.services.screening import program_rules
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

PAGE_SIZE = 50
MAX_BATCH = 500

review = Blueprint("review", __name__, url_prefix="/finance/review")
review.before_request(require_roles(Role.FINANCE, Role.ADMIN))

rules = Blueprint("fraud_rules", __name__, url_prefix="/admin/programs/<int:program_id>/fraud")
rules.before_request(require_roles(Role.ADMIN))


@review.route("/")
def queue():
    query = select(Conversion).where(Conversion.status == ConversionStatus.FLAGGED)
    args = request.args
    if query_id("program"):
        query = query.where(Conversion.program_id == query_id("program"))
    if query_id("affiliate"):
        query = query.where(Conversion.affiliate_id == query_id("affiliate"))
    rule = args.get("rule")
    if rule in DEFAULT_RULES:
        query = query.where(Conversion.fraud_reasons.contains(json.dumps({"rule": rule})[1:-1]))
    page = paginate(query.order_by(Conversion.created_at, Conversion.id), per_page=PAGE_SIZE)
    affiliates = db.session.execute(
        select(User.id, User.name).where(User.id.in_({c.affiliate_id for c in page.items if c.affiliate_id}))
    ).all()
    filters = _filters(args)
    return render_template(
        "review/queue.html",
        page=page,
        reasons={c.id: json.loads(c.fraud_reasons or "[]") for c in page.items},
        names=dict(affiliates),
        programs=db.session.scalars(select(Program).order_by(Program.name)).all(),
        rules=list(DEFAULT_RULES),
        filters=filters,
    )


@review.post("/decide")
def decide():
    """Approve or reject the ticked conversions; only those still flagged change (a guarded UPDATE)."""
    decision = DECISIONS.get(request.form.get("decision", ""))
    ids = form_ids(big=True)[:MAX_BATCH]
    note = (request.form.get("note") or "").strip()[:1000]
    if decision is None or not ids:
        flash("Tick at least one conversion and choose approve or reject.", "error")
        return redirect(url_for("review.queue", **_filters(request.args)))
    if unstorable(note):
        flash(f"The note {UNSTORABLE_MESSAGE}.", "error")
        return redirect(url_for("review.queue", **_filters(request.args)))
    if decision == ConversionStatus.REJECTED and not note:
        flash("Say why when rejecting: the note is kept in the audit log.", "error")
        return redirect(url_for("review.queue", **_filters(request.args)))
    changed = decide_conversions(db.session, ids, request.form["decision"], actor_id=current_user.id, note=note,
                                 now=utcnow())  # fmt: skip
    db.session.commit()
    skipped = len(ids) - len(changed)
    message = f"{len(changed)} conversion{'s' if len(changed) != 1 else ''} {decision.value}."
    if skipped:
        message += f" {skipped} had already been decided and did not change."
    flash(message, "success")
    return redirect(url_for("review.queue", **_filters(request.args)))


def _filters(args) -> dict[str, int | str]:
    """The queue's filters in a query string: program and affiliate ids, and a rule name."""
    filters: dict[str, int | str] = {
        key: parse_id(args.get(key)) for key in ("program", "affiliate") if parse_id(args.get(key))
    }
    if args.get("rule") in DEFAULT_RULES:
        filters["rule"] = args["rule"]
    return filters


@rules.route("/", methods=["GET", "POST"])
def edit(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            parsed = parse_settings(request.form)
        except RuleError as error:
            errors[error.field] = str(error)
        else:
            changed = save_rules(db.session, program, parsed, actor=current_user, now=utcnow())
            db.session.commit()
            flash(f"{changed} rule{'s' if changed != 1 else ''} changed. Changes apply to new clicks and conversions "
                  "(clicks within 30 seconds); verdicts already given stay as they were.", "success")  # fmt: skip
            return redirect(url_for("fraud_rules.edit", program_id=program.id))
    return render_template(
        "review/rules.html", program=program, settings=program_rules(db.session, program.id), errors=errors,
        form=request.form, descriptions=DESCRIPTIONS, actions=[a.value for a in Action],
        thresholds={name: list(rule.settings) for name, rule in DEFAULT_RULES.items()},
    ), (422 if errors else 200)  # fmt: skip
