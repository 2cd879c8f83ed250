"""Affiliates create, list and pause their tracking links."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.models import Role, utcnow
from affiliate.params import paginate, query_id
from affiliate.partner.forms import LinkForm, ToggleForm
from affiliate.services import enrollment
from affiliate.services import links as link_service
from affiliate.validators import options

bp = Blueprint("partner_links", __name__, url_prefix="/partner/links")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def index():
    page = paginate(link_service.links_of(current_user.id))
    counts = link_service.click_counts(db.session, current_user.id, [link.id for link in page.items])
    # A link still redirects when its affiliate may no longer earn in the program (removed, not admitted, or the
    # program paused): its badge says so, rather than "active" over clicks that are recorded as rejected.
    earning = {
        program.id: enrollment.standing(program, enrollment.enrollment_of(db.session, program.id, current_user.id))
        for program in {link.program for link in page.items}
    }
    return render_template(
        "partner/links/index.html",
        page=page,
        counts=counts,
        empty=link_service.ClickCounts(),
        form=ToggleForm(),
        earning=earning,
    )


@bp.route("/new", methods=["GET", "POST"])
def create():
    programs = [entry.program for entry in enrollment.standings(db.session, current_user.id) if entry.can_promote]
    form = LinkForm()
    form.program_id.choices = options((program.id, program.name) for program in programs)
    if request.method == "GET" and query_id("program"):
        form.program_id.data = query_id("program")
    if form.validate_on_submit():
        link_request = link_service.LinkRequest(
            program_id=form.program_id.data,
            campaign=(form.campaign.data or "").strip() or None,
            subs=tuple((getattr(form, f"sub{n}").data or "").strip() or None for n in range(1, 6)),
            deep_link=(form.deep_link.data or "").strip() or None,
        )
        try:
            link = link_service.create_link(
                db.session,
                current_user,
                link_request,
                now=utcnow(),
                allow_http_loopback=current_app.config["ALLOW_HTTP_LOOPBACK_DESTINATIONS"],
            )
        except link_service.LinkError as error:
            db.session.rollback()
            target = getattr(form, error.field) if error.field else None
            (target.errors if target is not None else form.form_errors).append(str(error))
        else:
            db.session.commit()
            flash(f"Link created: {link_url(link.code)}", "success")
            return redirect(url_for("partner_links.index"))
    return render_template("partner/links/create.html", form=form, programs=programs)


@bp.route("/<int:link_id>/pause", methods=["POST"])
def pause(link_id: int):
    return _set_active(link_id, active=False)


@bp.route("/<int:link_id>/resume", methods=["POST"])
def resume(link_id: int):
    return _set_active(link_id, active=True)


def _set_active(link_id: int, *, active: bool):
    if not ToggleForm().validate_on_submit():
        abort(400)
    try:
        link = link_service.set_link_active(db.session, current_user, link_id, active=active)
    except link_service.LinkError:
        abort(404)
    db.session.commit()
    flash(f"Link {link.code} {'resumed' if active else 'paused'}.", "success")
    return redirect(url_for("partner_links.index"), 303)


def link_url(code: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/r/{code}"
