"""Profile, payout details and password of the signed-in person."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, logout_user

from affiliate.account.forms import PasswordForm, PayoutForm, ProfileForm
from affiliate.auth.access import require_roles
from affiliate.auth.sessions import hasher, sign_in
from affiliate.extensions import db
from affiliate.models import PayoutMethod, Role, utcnow
from affiliate.services import accounts

bp = Blueprint("account", __name__, url_prefix="/account")
bp.before_request(require_roles(*Role))


@bp.route("/", methods=["GET", "POST"])
def profile():
    form = ProfileForm(obj=current_user)
    if form.validate_on_submit():
        current_user.name = form.name.data.strip()
        current_user.website = form.website.data or None
        current_user.promotion = form.promotion.data or None
        db.session.commit()
        flash("Profile saved.", "success")
        return redirect(url_for("account.profile"))
    return render_template("account/profile.html", form=form, user=current_user)


@bp.route("/payout", methods=["GET", "POST"])
def payout():
    if current_user.role != Role.AFFILIATE:
        abort(403)
    form = PayoutForm(
        method=current_user.payout_method or "",
        email=current_user.payout_email,
        account_name=current_user.payout_account_name,
        iban=current_user.payout_iban,
    )
    if form.validate_on_submit():
        method = form.method.data
        details = accounts.PayoutDetails(
            method=method,
            email=form.email.data if method in (PayoutMethod.PAYPAL, PayoutMethod.WISE) else None,
            account_name=form.account_name.data.strip() if method == PayoutMethod.BANK else None,
            iban=form.iban.data if method == PayoutMethod.BANK else None,
        )
        if accounts.update_payout_details(db.session, current_user, details, now=utcnow()):
            db.session.commit()
            flash(
                "Payout details saved. For your security, the next payout waits out a short "
                "cooling-off period after a change.",
                "success",
            )
        else:
            flash("Nothing changed.", "info")
        return redirect(url_for("account.payout"))
    return render_template("account/payout.html", form=form, user=current_user)


@bp.route("/password", methods=["GET", "POST"])
def password():
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(
                db.session,
                current_user,
                current=form.current.data,
                new=form.new.data,
                hasher=hasher(),
                min_length=current_app.config["PASSWORD_MIN_LENGTH"],
                now=utcnow(),
            )
        except accounts.InvalidCredentials as error:
            form.current.errors.append(str(error))
        except accounts.WeakPassword as error:
            form.new.errors.append(str(error))
        else:
            user = current_user._get_current_object()
            # Every earlier login, this one's cookies included, is revoked; start afresh here.
            logout_user()
            sign_in(user, remember=False)
            db.session.commit()
            flash("Password changed. You have been signed out everywhere else.", "success")
            return redirect(url_for("account.profile"))
    return render_template("account/password.html", form=form)
