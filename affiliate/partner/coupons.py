"""An affiliate's coupon codes: the codes they may give their audience, and asking for a new one."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import Program, Role, utcnow
from affiliate.services import coupons, enrollment
from affiliate.validators import options

bp = Blueprint("partner_coupons", __name__, url_prefix="/partner/coupons")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


class RequestForm(Form):
    program = SelectField("Program", coerce=str)
    code = StringField(
        "Code you would like",
        validators=[DataRequired(), Length(max=40)],
        description="3 to 40 letters, digits, dashes or underscores. An admin approves it.",
    )


@bp.route("/", methods=["GET", "POST"])
def index():
    programs = [entry.program for entry in enrollment.standings(db.session, current_user.id) if entry.can_promote]
    form = RequestForm()
    form.program.choices = options((str(program.id), program.name) for program in programs)
    status = 200
    if form.validate_on_submit():
        program = next(p for p in programs if str(p.id) == form.program.data)
        try:
            coupon = coupons.create(
                db.session,
                program,
                current_user,
                coupons.CouponSettings(form.code.data),
                actor=current_user,
                now=utcnow(),
                requested=True,
            )
        except coupons.CouponError as error:
            db.session.rollback()
            form.form_errors.append(str(error))
            status = 422
        else:
            db.session.commit()
            flash(f"Asked for {coupon.code} in {program.name}: it works once an admin approves it.", "success")
            return redirect(url_for("partner_coupons.index"))
    elif form.is_submitted():
        status = 422
    names = {program.id: program.name for program in db.session.query(Program)}
    mine = coupons.of_affiliate(db.session, current_user.id)
    return render_template("partner/coupons/index.html", form=form, coupons=mine, names=names), status
