"""A program's coupon codes and its Stripe endpoint, for admins.

Coupons: make one for an affiliate, approve or decline what affiliates asked for, make one for each member of
a group, map a code to its Stripe promotion code, retire one. Stripe: the endpoint's address, its signing
secret (kept, never shown again), and what became of the latest events.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.mail import external_url
from affiliate.models import Coupon, Program, Role, User, utcnow
from affiliate.services import coupons, groups
from affiliate.validators import options

bp = Blueprint("admin_coupons", __name__, url_prefix="/admin/programs/<int:program_id>")
bp.before_request(require_roles(Role.ADMIN))
EVENTS_SHOWN = 50


class CouponForm(Form):
    affiliate_id = SelectField("Affiliate", coerce=int, choices=[])
    code = StringField(
        "Code",
        validators=[DataRequired(), Length(max=40)],
        description="3 to 40 letters, digits, dashes or underscores; matched in any case.",
    )
    discount_text = StringField(
        "Discount shown to the affiliate",
        validators=[Optional(), Length(max=200)],
        description="For instance: 20% off the first month.",
    )
    stripe_promotion_code = StringField(
        "Stripe promotion code id",
        validators=[Optional(), Length(max=64)],
        description="promo_…, when customers use this code in Stripe Checkout.",
    )


class GroupCodesForm(Form):
    group_id = SelectField("Group", coerce=int, choices=[])
    pattern = StringField(
        "Pattern",
        default="{name}10",
        validators=[DataRequired(), Length(max=40)],
        description="{name} is each member's name in capitals, letters and digits only.",
    )
    discount_text = StringField("Discount shown to the affiliates", validators=[Optional(), Length(max=200)])


class CouponChangeForm(Form):
    discount_text = StringField("Discount", validators=[Optional(), Length(max=200)])
    stripe_promotion_code = StringField("Stripe promotion code id", validators=[Optional(), Length(max=64)])


class StripeForm(Form):
    secret = StringField(
        "Signing secret",
        validators=[
            DataRequired(),
            Regexp(
                r"^whsec_[A-Za-z0-9]{8,190}$",
                message="Paste the endpoint's signing secret from Stripe: it starts with whsec_.",
            ),
        ],
    )


class ActionForm(Form):
    """A bare form: what it does is in its address."""


@bp.route("/coupons/", methods=["GET", "POST"])
def index(program_id: int):
    program = _program_or_404(program_id)
    form = _coupon_form(program)
    if form.validate_on_submit():
        affiliate = db.session.get(User, form.affiliate_id.data)
        settings = coupons.CouponSettings(form.code.data, form.discount_text.data, form.stripe_promotion_code.data)
        try:
            coupon = coupons.create(db.session, program, affiliate, settings, actor=current_user, now=utcnow())
        except coupons.CouponError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
        else:
            db.session.commit()
            flash(f"Code {coupon.code} is active for {affiliate.name}.", "success")
            return redirect(url_for("admin_coupons.index", program_id=program.id))
    return _render(program, form, _group_form(program), 422 if form.is_submitted() else 200)


@bp.post("/coupons/for-group")
def for_group(program_id: int):
    program = _program_or_404(program_id)
    form = _group_form(program)
    if form.validate_on_submit():
        try:
            made, skipped = coupons.generate_for_group(
                db.session,
                program,
                form.group_id.data,
                form.pattern.data,
                form.discount_text.data,
                actor=current_user,
                now=utcnow(),
            )
        except coupons.CouponError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
        else:
            db.session.commit()
            flash(f"Made {len(made)} codes." + (f" Skipped: {'; '.join(skipped)}." if skipped else ""), "success")
            return redirect(url_for("admin_coupons.index", program_id=program.id))
    return _render(program, _coupon_form(program, formdata=None), form, 422)


@bp.post("/coupons/<int:coupon_id>")
def change(program_id: int, coupon_id: int):
    coupon = _coupon_or_404(program_id, coupon_id)
    form = CouponChangeForm()
    if form.validate_on_submit():
        try:
            coupons.update(
                db.session,
                coupon,
                discount_text=form.discount_text.data,
                stripe_promotion_code=form.stripe_promotion_code.data,
                actor=current_user,
                now=utcnow(),
            )
        except coupons.CouponError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(f"Code {coupon.code} saved.", "success")
    return redirect(url_for("admin_coupons.index", program_id=program_id))


@bp.post("/coupons/<int:coupon_id>/<any(approve, decline, retire):action>")
def decide(program_id: int, coupon_id: int, action: str):
    coupon = _coupon_or_404(program_id, coupon_id)
    if ActionForm().validate_on_submit():
        try:
            if action == "retire":
                coupons.retire(db.session, coupon, actor=current_user, now=utcnow())
            else:
                coupons.decide(db.session, coupon, action == "approve", actor=current_user, now=utcnow())
        except coupons.CouponError as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            db.session.commit()
            done = {"approve": "approved", "decline": "declined", "retire": "retired"}[action]
            flash(f"Code {coupon.code} {done}.", "success")
    return redirect(url_for("admin_coupons.index", program_id=program_id))


@bp.route("/stripe", methods=["GET", "POST"])
def stripe(program_id: int):
    program = _program_or_404(program_id)
    form = StripeForm()
    if form.validate_on_submit():
        coupons.set_stripe_secret(db.session, program, form.secret.data, actor_id=current_user.id, now=utcnow())
        db.session.commit()
        flash("Stripe signing secret saved: events sent to the endpoint below are now taken.", "success")
        return redirect(url_for("admin_coupons.stripe", program_id=program.id))
    events = coupons.recent_stripe_events(db.session, program.id, EVENTS_SHOWN)
    endpoint = external_url("integrations_stripe.receive", program_id=program.id)
    return render_template(
        "admin/coupons/stripe.html", program=program, form=form, events=events, endpoint=endpoint, action=ActionForm()
    ), 422 if form.is_submitted() else 200


@bp.post("/stripe/forget")
def forget_stripe(program_id: int):
    program = _program_or_404(program_id)
    if ActionForm().validate_on_submit() and program.stripe_webhook_secret:
        coupons.set_stripe_secret(db.session, program, None, actor_id=current_user.id, now=utcnow())
        db.session.commit()
        flash("Stripe signing secret removed: the endpoint takes no more events.", "success")
    return redirect(url_for("admin_coupons.stripe", program_id=program_id))


def _render(program: Program, form: CouponForm, group_form: GroupCodesForm, status: int = 200):
    found = coupons.of_program(db.session, program.id)
    used = coupons.times_used(db.session, [c.id for c in found])
    return render_template(
        "admin/coupons/index.html",
        program=program,
        coupons=found,
        used=used,
        form=form,
        group_form=group_form,
        change=CouponChangeForm,
        action=ActionForm(),
    ), status


def _coupon_form(program: Program, formdata=...) -> CouponForm:
    form = CouponForm() if formdata is ... else CouponForm(formdata=formdata)
    form.affiliate_id.choices = options((a.id, f"{a.name} ({a.email})") for a in coupons.promoters(db.session, program))
    return form


def _group_form(program: Program) -> GroupCodesForm:
    form = (
        GroupCodesForm(prefix="group")
        if request.endpoint == "admin_coupons.for_group"
        else GroupCodesForm(prefix="group", formdata=None)
    )
    form.group_id.choices = options(
        (g.id, g.name) for g in groups.groups_of(db.session, program.id) if g.id is not None
    )
    return form


def _program_or_404(program_id: int) -> Program:
    return db.session.get(Program, program_id) or abort(404)


def _coupon_or_404(program_id: int, coupon_id: int) -> Coupon:
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.program_id != program_id:
        abort(404)
    return coupon
