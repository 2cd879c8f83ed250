"""A program's webhook endpoints and program-wide postbacks, for admins: add, change, rotate the secret, turn
off or on, delete, and each endpoint's delivery log with a button to send a message again."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectField, SelectMultipleField, StringField, URLField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from affiliate import outbound
from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import Delivery, Postback, Program, Role, WebhookEndpoint, utcnow
from affiliate.services import deliveries, postbacks, webhooks
from affiliate.validators import options

bp = Blueprint("admin_webhooks", __name__, url_prefix="/admin/programs/<int:program_id>/webhooks")
bp.before_request(require_roles(Role.ADMIN))


class EndpointForm(Form):
    url = URLField(
        "Endpoint URL",
        validators=[DataRequired(), Length(max=2000)],
        description="https only. It receives a signed POST for each event you choose.",
    )
    description = StringField("Description", validators=[Optional(), Length(max=200)])
    events = SelectMultipleField(
        "Events",
        choices=options([(webhooks.ALL, "Every event"), *webhooks.EVENTS.items()]),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )


class PostbackForm(Form):
    url_template = StringField(
        "Postback URL",
        validators=[DataRequired(), Length(max=2000)],
        description="Macros: " + ", ".join("{" + m + "}" for m in postbacks.MACROS),
    )
    method = SelectField("Method", choices=options([("GET", "GET"), ("POST", "POST (values also as a form body)")]))
    events = SelectMultipleField(
        "Send when",
        choices=options(postbacks.EVENTS.items()),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )


class ActionForm(Form):
    """A bare form: what it does is in its address."""


def check_webhook_url(url: str):
    return outbound.check_url(url, allow_loopback=current_app.config["OUTBOUND_ALLOW_LOOPBACK"])


def check_postback_url(url: str):
    config = current_app.config
    return outbound.check_url(
        url, allow_http=config["POSTBACK_ALLOW_HTTP"], allow_loopback=config["OUTBOUND_ALLOW_LOOPBACK"]
    )


@bp.route("/", methods=["GET", "POST"])
def index(program_id: int):
    program = _program_or_404(program_id)
    form = EndpointForm()
    if form.validate_on_submit():
        settings = webhooks.EndpointSettings(form.url.data, tuple(form.events.data or ()), form.description.data)
        try:
            endpoint = webhooks.create_endpoint(
                db.session, program, settings, actor=current_user, now=utcnow(), check_url=check_webhook_url
            )
        except webhooks.WebhookError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
        else:
            db.session.commit()
            flash("Endpoint added. Its signing secret is below: give it to whoever verifies the messages.", "success")
            return redirect(url_for("admin_webhooks.show", program_id=program.id, endpoint_id=endpoint.id))
    return _render_index(program, form, PostbackForm(prefix="postback"))


@bp.post("/postbacks")
def add_postback(program_id: int):
    program = _program_or_404(program_id)
    form = PostbackForm(prefix="postback")
    if form.validate_on_submit():
        settings = postbacks.PostbackSettings(form.url_template.data, form.method.data, tuple(form.events.data or ()))
        try:
            postbacks.save(
                db.session, program, None, settings, actor=current_user, now=utcnow(), check_url=check_postback_url
            )
        except postbacks.PostbackError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
        else:
            db.session.commit()
            flash("Program-wide postback saved: it fires for every affiliate's conversions.", "success")
            return redirect(url_for("admin_webhooks.index", program_id=program.id))
    return _render_index(program, EndpointForm(formdata=None), form, 422)


def _program_postback_or_404(program_id: int, postback_id: int) -> Postback:
    postback = db.session.get(Postback, postback_id)
    if postback is None or postback.program_id != program_id or postback.affiliate_id is not None:
        abort(404)
    return postback


@bp.post("/postbacks/<int:postback_id>/enabled/<any(on, off):state>")
def set_postback_enabled(program_id: int, postback_id: int, state: str):
    postback = _program_postback_or_404(program_id, postback_id)
    if ActionForm().validate_on_submit():
        postbacks.set_enabled(db.session, postback, state == "on", actor=current_user, now=utcnow())
        db.session.commit()
        flash("Postback turned on: its waiting calls go now." if state == "on" else "Postback turned off.", "success")
    return redirect(url_for("admin_webhooks.index", program_id=program_id))


@bp.post("/postbacks/<int:postback_id>/resend")
def resend_postback(program_id: int, postback_id: int):
    postback = _program_postback_or_404(program_id, postback_id)
    if ActionForm().validate_on_submit():
        sent = postbacks.resend_dead(db.session, postback, actor=current_user, now=utcnow())
        db.session.commit()
        flash(f"{sent} call{'s' if sent != 1 else ''} will be sent again now.", "success")
    return redirect(url_for("admin_webhooks.index", program_id=program_id))


@bp.post("/postbacks/<int:postback_id>/delete")
def delete_postback(program_id: int, postback_id: int):
    postback = _program_postback_or_404(program_id, postback_id)
    if ActionForm().validate_on_submit():
        postbacks.delete(db.session, postback, actor=current_user, now=utcnow())
        db.session.commit()
        flash("Postback deleted.", "success")
    return redirect(url_for("admin_webhooks.index", program_id=program_id))


@bp.route("/<int:endpoint_id>", methods=["GET", "POST"])
def show(program_id: int, endpoint_id: int):
    endpoint = _endpoint_or_404(program_id, endpoint_id)
    events = endpoint.events.split()
    form = EndpointForm(obj=endpoint) if not EndpointForm().is_submitted() else EndpointForm()
    if not form.is_submitted():
        form.events.data = events
    status = 200
    if form.validate_on_submit():
        settings = webhooks.EndpointSettings(form.url.data, tuple(form.events.data or ()), form.description.data)
        try:
            webhooks.update_endpoint(
                db.session, endpoint, settings, actor=current_user, now=utcnow(), check_url=check_webhook_url
            )
        except webhooks.WebhookError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
            status = 422
        else:
            db.session.commit()
            flash("Endpoint saved.", "success")
            return redirect(url_for("admin_webhooks.show", program_id=program_id, endpoint_id=endpoint.id))
    elif form.is_submitted():
        status = 422
    return render_template(
        "admin/webhooks/show.html",
        program=endpoint_program(endpoint),
        endpoint=endpoint,
        form=form,
        action=ActionForm(),
        log=deliveries.log_of(db.session, webhook_id=endpoint.id),
        counts=deliveries.counts(db.session, webhook_id=endpoint.id),
        overlap=webhooks.signing_secrets(endpoint, utcnow())[1:],
    ), status


@bp.post("/<int:endpoint_id>/rotate")
def rotate(program_id: int, endpoint_id: int):
    endpoint = _endpoint_or_404(program_id, endpoint_id)
    if ActionForm().validate_on_submit():
        webhooks.rotate_secret(db.session, endpoint, actor=current_user, now=utcnow())
        db.session.commit()
        flash("New signing secret made. For 24 hours messages carry signatures with both secrets.", "success")
    return redirect(url_for("admin_webhooks.show", program_id=program_id, endpoint_id=endpoint_id))


@bp.post("/<int:endpoint_id>/enabled/<any(on, off):state>")
def set_enabled(program_id: int, endpoint_id: int, state: str):
    endpoint = _endpoint_or_404(program_id, endpoint_id)
    if ActionForm().validate_on_submit():
        webhooks.set_enabled(db.session, endpoint, state == "on", actor=current_user, now=utcnow())
        db.session.commit()
        flash(
            "Endpoint turned on: waiting messages go now."
            if state == "on"
            else "Endpoint turned off: events from now on are not sent to it; messages already waiting go once it is "
            "turned on again.",
            "success",
        )
    return redirect(url_for("admin_webhooks.show", program_id=program_id, endpoint_id=endpoint_id))


@bp.post("/<int:endpoint_id>/delete")
def delete(program_id: int, endpoint_id: int):
    endpoint = _endpoint_or_404(program_id, endpoint_id)
    if ActionForm().validate_on_submit():
        webhooks.delete_endpoint(db.session, endpoint, actor=current_user, now=utcnow())
        db.session.commit()
        flash("Endpoint deleted, with its waiting messages.", "success")
        return redirect(url_for("admin_webhooks.index", program_id=program_id))
    return redirect(url_for("admin_webhooks.show", program_id=program_id, endpoint_id=endpoint_id))


@bp.post("/<int:endpoint_id>/deliveries/<bigid:delivery_id>/redeliver")
def redeliver(program_id: int, endpoint_id: int, delivery_id: int):
    endpoint = _endpoint_or_404(program_id, endpoint_id)
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.webhook_id != endpoint.id:
        abort(404)
    if ActionForm().validate_on_submit():
        deliveries.redeliver(db.session, delivery, now=utcnow())
        db.session.commit()
        flash(f"Message {delivery.message_id} will be sent again now, with the same id.", "success")
    return redirect(url_for("admin_webhooks.show", program_id=program_id, endpoint_id=endpoint_id))


def endpoint_program(endpoint: WebhookEndpoint) -> Program:
    return db.session.get(Program, endpoint.program_id)


def _render_index(program: Program, form: EndpointForm, postback_form: PostbackForm, status: int = 200):
    endpoints = webhooks.endpoints_of(db.session, program.id)
    program_postbacks = postbacks.postbacks_of(db.session, program.id, None)
    return render_template(
        "admin/webhooks/index.html",
        program=program,
        endpoints=endpoints,
        counts={e.id: deliveries.counts(db.session, webhook_id=e.id) for e in endpoints},
        form=form,
        postback_form=postback_form,
        postbacks=program_postbacks,
        dead={
            postback.id: deliveries.counts(db.session, postback_id=postback.id).get(deliveries.DEAD, 0)
            for postback in program_postbacks
        },
        action=ActionForm(),
    ), status


def _program_or_404(program_id: int) -> Program:
    return db.session.get(Program, program_id) or abort(404)


def _endpoint_or_404(program_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.program_id != program_id:
        abort(404)
    return endpoint
