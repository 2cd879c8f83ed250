"""Profile, payout details, password and signed-in devices of the signed-in person."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from affiliate.account.forms import PasswordForm, PayoutForm, ProfileForm, SignOutForm
from affiliate.auth import notices
from affiliate.auth.access import only_roles, require_roles
from affiliate.auth.notices import device_name
from affiliate.auth.passwords import authenticate, form_page, hash_new_password
from affiliate.auth.sessions import SECOND_FACTOR_AT, login_is_fresh, sign_in
from affiliate.extensions import db
from affiliate.models import PayoutMethod, Role, utcnow
from affiliate.services import accounts, applicants, throttles, user_sessions

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


@bp.route("/application")
@only_roles(Role.AFFILIATE)
def application():
    """Where an affiliate who cannot use the partner pages yet (pending, rejected, suspended) starts."""
    if current_user.can_use_partner_pages:
        return redirect(url_for("partner.home"))
    return render_template(
        "account/application.html",
        user=current_user,
        programs=applicants.programs_applied_to(db.session, current_user.id),
    )


@bp.route("/payout", methods=["GET", "POST"])
@only_roles(Role.AFFILIATE)
def payout():
    """Where earnings are sent; changing it needs the password typed recently, as approving a payout does."""
    if not login_is_fresh(utcnow()):
        # Someone at an unattended browser, or with a stolen cookie, must not redirect the money.
        if request.method == "POST":
            flash("Your payout details were not saved: confirm it is you, then enter them again.", "info")
        return redirect(url_for("auth.reauth", next=url_for("account.payout")), 303)
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
            notices.payout_details_changed(current_user)
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
    throttled = None
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            min_length = current_app.config["PASSWORD_MIN_LENGTH"]
            accounts.check_password(form.new.data, min_length=min_length, email=user.email)
            # The sign-in check, so guesses at the current password count towards the same throttles.
            checked = authenticate(user.email, form.current.data)
            old_hash = checked.password_hash
            new_hash = hash_new_password(form.new.data)
            accounts.change_password(db.session, user, old_hash=old_hash, new_hash=new_hash, now=utcnow())
        except throttles.Throttled as error:
            throttled = error
            form.current.errors.append(str(error))
        except accounts.InvalidCredentials:
            form.current.errors.append("Your current password is incorrect.")
        except accounts.WeakPassword as error:
            form.new.errors.append(str(error))
        else:
            # Every earlier login, this one's cookies included, is revoked; start afresh here.
            given = session.get(SECOND_FACTOR_AT)
            logout_user()
            sign_in(user, remember=False)
            if given is not None:  # the new login keeps the second factor this one gave, and when
                session[SECOND_FACTOR_AT] = given
            notices.password_changed(user, "changed from your account page")
            db.session.commit()
            flash("Password changed. You have been signed out everywhere else.", "success")
            return redirect(url_for("account.profile"))
    return form_page(render_template("account/password.html", form=form), throttled)


@bp.get("/sessions")
def sessions():
    """Where this account is signed in, this device first; any other can be signed out."""
    user = current_user._get_current_object()
    rows = user_sessions.live_sessions(db.session, user, now=utcnow())
    devices = sorted(
        ((row, user_sessions.is_current(row, user.session_token), device_name(row.user_agent)) for row in rows),
        key=lambda device: not device[1],
    )
    return render_template("account/sessions.html", devices=devices, form=SignOutForm())


@bp.post("/sessions/<int:session_id>/end")
def end_session(session_id: int):
    user = current_user._get_current_object()
    if not SignOutForm().validate_on_submit():
        flash("Your form expired. Please try again.", "error")
    elif user_sessions.end_other_sessions(
        db.session, user, keep=user.session_token, now=utcnow(), session_id=session_id
    ):
        db.session.commit()
        flash("That device is signed out.", "success")
    else:
        abort(404)
    return redirect(url_for("account.sessions"))


@bp.post("/sessions/end-others")
def end_other_sessions():
    user = current_user._get_current_object()
    if not SignOutForm().validate_on_submit():
        flash("Your form expired. Please try again.", "error")
        return redirect(url_for("account.sessions"))
    ended = user_sessions.end_other_sessions(db.session, user, keep=user.session_token, now=utcnow())
    db.session.commit()
    flash(
        f"Signed out {ended} other device{'s' if ended != 1 else ''}." if ended else "No other device was signed in.",
        "success",
    )
    return redirect(url_for("account.sessions"))
