"""Two-factor settings of the signed-in person: authenticator app, security keys and recovery codes.

Staff accounts must have a second factor: until they set one up, every page but these (and signing
out) sends them here. Changing a factor needs a fresh sign-in (password, and the second factor if
the account has one), as payout details do, so a borrowed session cannot swap them.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Length, Optional

from affiliate.auth import notices
from affiliate.auth import second_factor as factor
from affiliate.auth.passwords import now
from affiliate.auth.sessions import login_is_fresh, mark_second_factor_given
from affiliate.extensions import db
from affiliate.forms import Form
from affiliate.models import utcnow
from affiliate.services import second_factor, security_keys

bp = Blueprint("account_two_factor", __name__, url_prefix="/account/two-factor")
bp.before_request(login_required(lambda: None))
PENDING_SECRET = "totp_pending_secret"  # noqa: S105 - a session key, shown on the setup page anyway
# What a staff member without a second factor may still open: these pages, signing out, and confirming the password.
OPEN_WITHOUT_FACTOR = frozenset({"auth.logout", "auth.reauth", "static"})


class CodeForm(Form):
    code = StringField("6-digit code from the app", validators=[DataRequired(), Length(max=16)])


class KeyForm(Form):
    name = StringField(
        "Name of this key",
        validators=[Optional(), Length(max=64)],
        description="So you can tell your keys apart, as “YubiKey on my keyring”.",
    )
    credential = HiddenField(validators=[DataRequired(message="Touch your key first."), Length(max=16_384)])


class ActionForm(Form):
    """A bare form: what it does is in its address."""


class NewCodesForm(Form):
    confirm = BooleanField(
        "I understand my current recovery codes stop working",
        validators=[DataRequired(message="Tick the box to make new codes.")],
    )


def init_app(app: Flask) -> None:
    @app.before_request
    def require_enrolment():
        """Staff without a second factor set one up before anything else."""
        try:
            if not current_user.is_authenticated or not second_factor.required(current_user):
                return None
            endpoint = request.endpoint or ""
            if endpoint.startswith("account_two_factor.") or endpoint in OPEN_WITHOUT_FACTOR:
                return None
            if second_factor.has_second_factor(db.session, current_user):
                return None
        finally:
            # Loading the signed-in user opened a transaction (on SQLite a POST's takes the write lock): end it,
            # so a page that calls out holds nothing meanwhile (the demo shop's checkout calls this server's API).
            db.session.commit()
        flash("Your account moves money, so it needs two-factor sign-in. Set it up to continue.", "info")
        return redirect(url_for("account_two_factor.settings"))


def _fresh_or_reauth():
    """None when the sign-in is fresh enough to change a factor; else the redirect to confirm it."""
    if login_is_fresh(utcnow()):
        return None
    if request.method == "POST":
        flash("Nothing was changed: confirm it is you, then make the change again.", "info")
    return redirect(url_for("auth.reauth", next=url_for("account_two_factor.settings")), 303)


@bp.get("/")
def settings():
    user = current_user._get_current_object()
    return render_template(
        "account/two_factor/settings.html",
        user=user,
        required=second_factor.required(user),
        has_factor=second_factor.has_second_factor(db.session, user),
        keys=security_keys.keys_of(db.session, user),
        codes_left=second_factor.recovery_codes_left(db.session, user),
        key_form=KeyForm(),
        keys_usable=factor.relying_party().usable,
        form=ActionForm(),
        codes_form=NewCodesForm(),
    )


@bp.route("/app", methods=["GET", "POST"])
def app_setup():
    """Show a new secret as a QR code; the first right code from the app turns it on."""
    if redirect_to := _fresh_or_reauth():
        return redirect_to
    user = current_user._get_current_object()
    secret = session.get(PENDING_SECRET)
    if not isinstance(secret, str) or len(secret) != 32:
        secret = session[PENDING_SECRET] = second_factor.new_secret()
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        codes = second_factor.enable_totp(db.session, user, secret, form.code.data, now=now())
        if codes is not None:
            notices.second_factor_changed(user, "An authenticator app was set up for two-factor sign-in")
            db.session.commit()
            session.pop(PENDING_SECRET, None)
            mark_second_factor_given()
            flash("Two-factor sign-in with your authenticator app is on.", "success")
            if codes:
                return render_template("account/two_factor/recovery_codes.html", codes=codes)
            return redirect(url_for("account_two_factor.settings"))
        form.code.errors.append("That code does not match. Check the time on your phone and try the newest code.")
        status = 422
    uri = second_factor.provisioning_uri(secret, user.email, current_app.config["WEBAUTHN_RP_NAME"])
    page = render_template(
        "account/two_factor/totp_setup.html",
        form=form,
        secret=secret,
        qr=second_factor.qr_data_uri(uri),
        replacing=bool(user.totp_secret),
    )
    return page, status


@bp.post("/app/remove")
def app_remove():
    if redirect_to := _fresh_or_reauth():
        return redirect_to
    user = current_user._get_current_object()
    if not ActionForm().validate_on_submit() or not user.totp_secret:
        abort(400)
    try:
        second_factor.disable_totp(db.session, user, now=utcnow())
    except second_factor.SecondFactorError as error:
        flash(str(error), "error")
        return redirect(url_for("account_two_factor.settings"))
    notices.second_factor_changed(user, "The authenticator app was removed from two-factor sign-in")
    db.session.commit()
    flash("The authenticator app no longer signs you in.", "success")
    return redirect(url_for("account_two_factor.settings"))


@bp.post("/recovery-codes")
def recovery_codes():
    if redirect_to := _fresh_or_reauth():
        return redirect_to
    user = current_user._get_current_object()
    form = NewCodesForm()
    if not second_factor.has_second_factor(db.session, user):
        abort(400)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("account_two_factor.settings"))
    codes = second_factor.new_recovery_codes(db.session, user, now=utcnow())
    notices.second_factor_changed(user, "New recovery codes were made; the earlier ones no longer work")
    db.session.commit()
    return render_template("account/two_factor/recovery_codes.html", codes=codes)


@bp.post("/keys/options")
def key_options():
    """The challenge for registering a new key (fetched by the page's script)."""
    if not login_is_fresh(utcnow()):
        abort(403)
    options, challenge = security_keys.registration_options(db.session, current_user, factor.relying_party())
    factor.keep_challenge(challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/keys")
def key_add():
    if redirect_to := _fresh_or_reauth():
        return redirect_to
    user = current_user._get_current_object()
    form = KeyForm()
    if form.validate_on_submit():
        challenge = factor.take_challenge()
        first = not second_factor.has_second_factor(db.session, user)
        try:
            if challenge is None:
                raise security_keys.KeyRefused("The challenge expired. Touch your key again.")
            key = security_keys.register(
                db.session,
                user,
                form.credential.data,
                form.name.data or "",
                challenge=challenge,
                rp=factor.relying_party(),
                now=utcnow(),
            )
        except security_keys.KeyRefused as error:
            db.session.rollback()
            flash(str(error), "error")
            return redirect(url_for("account_two_factor.settings"))
        codes = second_factor.new_recovery_codes(db.session, user, now=utcnow()) if first else []
        notices.second_factor_changed(user, f"A security key ({key.name}) was added to two-factor sign-in")
        db.session.commit()
        mark_second_factor_given()
        flash(f"Security key “{key.name}” added.", "success")
        if codes:
            return render_template("account/two_factor/recovery_codes.html", codes=codes)
        return redirect(url_for("account_two_factor.settings"))
    for errors in form.errors.values():
        for error in errors:
            flash(error, "error")
    return redirect(url_for("account_two_factor.settings"))


@bp.post("/keys/<int:key_id>/remove")
def key_remove(key_id: int):
    if redirect_to := _fresh_or_reauth():
        return redirect_to
    user = current_user._get_current_object()
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        removed = security_keys.remove(db.session, user, key_id, required=second_factor.required(user), now=utcnow())
    except security_keys.KeyRefused as error:
        flash(str(error), "error")
        return redirect(url_for("account_two_factor.settings"))
    if not removed:
        abort(404)
    notices.second_factor_changed(user, "A security key was removed from two-factor sign-in")
    db.session.commit()
    flash("Security key removed.", "success")
    return redirect(url_for("account_two_factor.settings"))
