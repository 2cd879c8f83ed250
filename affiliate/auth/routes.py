"""Apply, sign up, sign in, sign out, and the signed links in mail: password reset, email confirmation, unsubscribe.

Why one module: these are the pages of the site's root blueprint, ``auth`` (docs/layout.md); the rules they
follow are in services (accounts, user_sessions, signups, throttles) and ``auth/passwords.py``.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import confirm_login, current_user, logout_user
from sqlalchemy import select

from affiliate import notifications
from affiliate.auth import notices, signed_links
from affiliate.auth import second_factor as factor
from affiliate.auth.forms import (
    ApplyForm,
    ConfirmForm,
    ForgotPasswordForm,
    LoginForm,
    ReauthForm,
    ResetPasswordForm,
    SecondFactorForm,
    SignupForm,
    UnsubscribeForm,
)
from affiliate.auth.passwords import (
    authenticate,
    count_signup,
    end_transaction,
    form_page,
    hash_new_password,
    now,
    throttle_key,
)
from affiliate.auth.sessions import (
    VISITOR_COOKIE,
    client_ip,
    mark_password_entered,
    mark_second_factor_given,
    request_fingerprint,
    sign_in,
    start_clean,
    token_or_none,
)
from affiliate.extensions import csrf, db, login_manager
from affiliate.models import Role, User, utcnow
from affiliate.params import query_id
from affiliate.services import accounts, recruiters, second_factor, security_keys, throttles, user_sessions
from affiliate.services.conversions import await_click
from affiliate.services.signups import Signup, find_referrer, sign_up, signup_program
from affiliate.urls import safe_next

bp = Blueprint("auth", __name__)


def home_for(user: User) -> str:
    """The page each role starts on after signing in."""
    if user.role == Role.ADMIN:
        return url_for("admin.index")
    if user.role == Role.FINANCE:
        return url_for("finance.index")
    if user.role == Role.AFFILIATE:
        return url_for("partner.home" if user.can_use_partner_pages else "account.application")
    if user.role == Role.MEMBER:
        return url_for("member.home")
    return url_for("account.profile")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    """The hosted signup: ``?ref=CODE`` from a referral link, or a click id after a tracked link."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = SignupForm()
    ref = request.args.get("ref", "")[:32] or None
    program_id = query_id("program")
    click_id = _click_id(program_id)
    throttled = None
    if form.validate_on_submit():
        await_click(db.session, click_id, clock=utcnow, sleep=time.sleep)
        details = Signup(
            name=form.name.data,
            email=form.email.data,
            password=form.password.data,
            ref=ref,
            program_id=program_id,
            click_id=click_id,
            visitor_id=token_or_none(request.cookies.get(VISITOR_COOKIE)),
            fingerprint=request_fingerprint(),
        )
        min_length = current_app.config["PASSWORD_MIN_LENGTH"]
        try:
            accounts.check_password(details.password, min_length=min_length, email=details.email)
            count_signup()
            password_hash = hash_new_password(details.password)
            result = sign_up(
                db.session, details, password_hash=password_hash, min_password_length=min_length, now=utcnow()
            )
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        except accounts.WeakPassword as error:
            form.password.errors.append(str(error))
        except accounts.EmailTaken as error:
            form.email.errors.append(str(error))
        else:
            sign_in(result.member, remember=False)
            notices.send_verification(result.member)
            db.session.commit()
            flash(
                "Welcome! Your account is ready. Share your own link to invite friends. We mailed you a link "
                "to confirm your email address.",
                "success",
            )
            return redirect(url_for("member.home"))
    # Shown to reassure the visitor who invited them; an unknown or malformed code shows nothing.
    referrer = find_referrer(db.session, ref)
    return form_page(render_template("auth/signup.html", form=form, referrer=referrer), throttled)


def _click_id(program_id: int | None) -> str | None:
    """The click id from the landing URL, else from the program's click cookie (the redirector sets ct_<program>)."""
    param = current_app.config["CLICK_PARAM"]
    click_id = token_or_none(request.args.get(param))
    if click_id:
        return click_id
    program = signup_program(db.session, program_id, None)
    return token_or_none(request.cookies.get(f"ct_{program.id}")) if program else None


@bp.route("/apply", methods=["GET", "POST"])
def apply():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = ApplyForm()
    # The recruiter's referral code, from their recruiting link; an unknown or malformed code is ignored.
    recruiter = recruiters.find_recruiter(db.session, request.args.get("ref", "")[:32])
    throttled = None
    if form.validate_on_submit():
        application = accounts.AffiliateApplication(
            name=form.name.data,
            email=form.email.data,
            password=form.password.data,
            website=form.website.data or None,
            promotion=form.promotion.data,
        )
        try:
            accounts.check_password(
                application.password, min_length=current_app.config["PASSWORD_MIN_LENGTH"], email=application.email
            )
            count_signup()
            password_hash = hash_new_password(application.password)
            user = accounts.apply_as_affiliate(
                db.session, application, password_hash=password_hash, now=utcnow(), recruiter=recruiter
            )
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        except accounts.WeakPassword as error:
            form.password.errors.append(str(error))
        except accounts.EmailTaken as error:
            form.email.errors.append(str(error))
        else:
            sign_in(user, remember=False)
            notices.send_verification(user)
            db.session.commit()
            flash(
                "Thanks for applying. We mailed you a link to confirm your email address; we review "
                "applications with a confirmed address.",
                "success",
            )
            return redirect(url_for("account.profile"))
    return form_page(render_template("auth/apply.html", form=form, recruiter=recruiter), throttled)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    throttled = None
    if form.validate_on_submit():
        try:
            user = authenticate(form.email.data, form.password.data)
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        except accounts.InvalidCredentials as error:
            form.form_errors.append(str(error))
        else:
            target = safe_next(request.args.get("next"), request.host_url)
            if second_factor.has_second_factor(db.session, user):
                db.session.commit()
                factor.start_pending(user, form.remember.data)
                return redirect(url_for("auth.second_factor_step", next=target))
            sign_in(user, remember=form.remember.data)
            db.session.commit()
            return redirect(target or home_for(user))
    return form_page(render_template("auth/login.html", form=form), throttled)


@bp.route("/login/second-factor", methods=["GET", "POST"])
def second_factor_step():
    """The second step of signing in: a code from the authenticator app, a recovery code or a security key."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    pending = factor.pending_user()
    if pending is None:
        factor.end_pending()
        flash("Sign in again: that sign-in took too long.", "info")
        return redirect(url_for("auth.login"))
    user, remember = pending
    form = SecondFactorForm()
    throttled = None
    status = 200
    if form.validate_on_submit():
        try:
            method = factor.check(user, code=form.code.data, assertion=form.assertion.data)
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        else:
            if method and factor.pending_user(lock=True) is None:
                db.session.commit()
                factor.end_pending()
                flash("Sign in again: the password was changed meanwhile.", "info")
                return redirect(url_for("auth.login"))
            if method:
                factor.end_pending()
                sign_in(user, remember=remember, second_factor=True)
                db.session.commit()
                if method == "recovery code":
                    left = second_factor.recovery_codes_left(db.session, user)
                    flash(
                        f"You signed in with a recovery code; {left} left. Make new ones on the two-factor "
                        "page if you are running low.",
                        "info",
                    )
                target = safe_next(request.args.get("next"), request.host_url)
                return redirect(target or home_for(user))
            db.session.commit()
            form.code.errors.append("That code is not right, or was used already. Try the next one.")
            status = 422
    keys = bool(security_keys.keys_of(db.session, user))
    body = render_template("auth/second_factor.html", form=form, user=user, has_app=bool(user.totp_secret), keys=keys)
    return form_page(body, throttled, status)


@bp.post("/login/key-options")
def key_options():
    """The challenge for a security key, for the person half-way through signing in or re-authenticating."""
    if current_user.is_authenticated:
        user = current_user._get_current_object()
    else:
        pending = factor.pending_user()
        if pending is None:
            abort(404)
        user = pending[0]
    found = security_keys.authentication_options(db.session, user, factor.relying_party())
    if found is None:
        abort(404)
    options, challenge = found
    factor.keep_challenge(challenge)
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/reauth", methods=["GET", "POST"])
def reauth():
    """Ask the signed-in person for their password again before a sensitive action, then go back."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    user = current_user._get_current_object()
    form = ReauthForm()
    status = 200
    throttled = None
    needs_factor = second_factor.has_second_factor(db.session, user)
    if form.validate_on_submit():
        try:
            # The sign-in check itself, so failed attempts count towards the same throttles.
            authenticate(user.email, form.password.data)
            db.session.commit()
            method = None
            if needs_factor and (form.code.data or form.assertion.data):
                method = factor.check(user, code=form.code.data, assertion=form.assertion.data)
                db.session.commit()
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        except accounts.InvalidCredentials:
            form.password.errors.append("That is not your password.")
            status = 422
        else:
            if needs_factor and not method:
                form.code.errors.append(
                    "Give a code from your authenticator app, a recovery code or your security key."
                )
                status = 422
            else:
                confirm_login()
                mark_password_entered()
                if method:
                    mark_second_factor_given()
                target = safe_next(request.args.get("next"), request.host_url)
                return redirect(target or home_for(user))
    keys = needs_factor and bool(security_keys.keys_of(db.session, user))
    body = render_template(
        "auth/reauth.html", form=form, needs_factor=needs_factor, has_app=bool(user.totp_secret), keys=keys
    )
    return form_page(body, throttled, status)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        user_sessions.end_session(db.session, current_user.session_token, now=utcnow())
        db.session.commit()
    start_clean()
    logout_user()  # after: it leaves word in the session to clear the remember-me cookie
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def reset_limits(email: str) -> list[tuple[throttles.Limit, str]]:
    config = current_app.config
    delays = {
        "first_delay": timedelta(seconds=config["RESET_FIRST_DELAY_SECONDS"]),
        "longest_delay": timedelta(minutes=config["RESET_LONGEST_DELAY_MINUTES"]),
        "forget_after": timedelta(hours=24),
    }
    return [
        (throttles.Limit("reset_address", config["RESET_FREE_PER_IP"], **delays), throttle_key(client_ip())),
        (
            throttles.Limit("reset_email", config["RESET_FREE_PER_EMAIL"], **delays),
            throttle_key(accounts.normalise_email(email)),
        ),
    ]


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    """Mail a reset link. The answer is the same whether or not an account has the address."""
    form = ForgotPasswordForm()
    throttled = None
    if form.validate_on_submit():
        end_transaction()
        try:
            # Every request counts: a reset link is not a guess to forgive, and the limit per email stops
            # anyone filling a person's inbox.
            throttles.count_attempt(db.session, reset_limits(form.email.data), now=now())
        except throttles.Throttled as error:
            db.session.rollback()
            throttled = error
            form.form_errors.append(str(error))
        else:
            user = db.session.scalar(select(User).where(User.email == accounts.normalise_email(form.email.data)))
            if user is not None:
                notices.send_reset_link(user)
            db.session.commit()
            return render_template("auth/reset_sent.html", email=form.email.data)
    return form_page(render_template("auth/forgot_password.html", form=form), throttled)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    user = signed_links.user_for_reset(db.session, token)
    if user is None:
        return render_template("auth/link_expired.html", what="password reset"), 404
    form = ResetPasswordForm()
    if form.validate_on_submit():
        min_length = current_app.config["PASSWORD_MIN_LENGTH"]
        try:
            accounts.check_password(form.password.data, min_length=min_length, email=user.email)
        except accounts.WeakPassword as error:
            form.password.errors.append(str(error))
        else:
            old_hash = user.password_hash
            new_hash = hash_new_password(form.password.data)
            user = db.session.get(User, user.id)
            try:
                accounts.reset_password(db.session, user, old_hash=old_hash, new_hash=new_hash, now=now())
            except accounts.InvalidCredentials:
                db.session.rollback()
                return render_template("auth/link_expired.html", what="password reset"), 404
            notices.password_changed(user, "reset with a link mailed to you")
            db.session.commit()
            if current_user.is_authenticated:
                logout_user()
            flash("Your password is changed and every device was signed out. Sign in with the new password.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form, user=user), 400 if form.is_submitted() else 200


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
def verify_email(token: str):
    """Confirm an address. Opening the link asks for a click, so a mail scanner that follows links confirms nothing."""
    user = signed_links.user_for_verification(db.session, token)
    if user is None:
        return render_template("auth/link_expired.html", what="confirmation"), 404
    form = ConfirmForm()
    if form.validate_on_submit():
        accounts.confirm_email(db.session, user, now=now())
        db.session.commit()
        return render_template("auth/email_verified.html", user=user)
    if user.email_verified:
        return render_template("auth/email_verified.html", user=user)
    return render_template("auth/verify_email.html", form=form, user=user)


@bp.post("/verify-email/resend")
def resend_verification():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    user = current_user._get_current_object()
    if not ConfirmForm().validate_on_submit():
        flash("Your form expired. Please try again.", "error")
    elif user.email_verified:
        flash("Your email address is confirmed already.", "info")
    else:
        end_transaction()
        try:
            throttles.count_attempt(db.session, reset_limits(user.email)[1:], now=now())
        except throttles.Throttled as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            notices.send_verification(user)
            db.session.commit()
            flash(f"We mailed a new confirmation link to {user.email}.", "success")
    return redirect(url_for("account.profile"))


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str):
    """GET asks first (mail scanners follow links); POST turns the kind off, as RFC 8058's one-click does."""
    found = notifications.read_unsubscribe_token(token[:512])
    if found is None:
        abort(404)
    user_id, kind = found
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    label = notifications.KINDS[kind].label
    if request.method == "POST":
        notifications.opt_out(db.session, user.id, kind, now=utcnow())
        db.session.commit()
        return render_template(
            "auth/unsubscribed.html", label=label, email=user.email, done=True, form=UnsubscribeForm()
        )
    return render_template("auth/unsubscribed.html", label=label, email=user.email, done=False, form=UnsubscribeForm())
