"""Apply, sign in, sign out."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import confirm_login, current_user, logout_user

from affiliate.auth.forms import ApplyForm, LoginForm, ReauthForm, SignupForm
from affiliate.auth.passwords import authenticate, count_signup, form_page, hash_new_password
from affiliate.auth.sessions import (
    PASSWORD_AT,
    VISITOR_COOKIE,
    mark_password_entered,
    request_fingerprint,
    sign_in,
    token_or_none,
)
from affiliate.extensions import db, login_manager
from affiliate.models import Role, User, utcnow
from affiliate.params import query_id
from affiliate.services import accounts, recruiters, throttles
from affiliate.services.conversions import await_click
from affiliate.services.signups import Signup, find_referrer, sign_up, signup_program
from affiliate.urls import safe_next

bp = Blueprint("auth", __name__)


def home_for(user: User) -> str:
    """The page each role starts on after signing in."""
    if user.role == Role.ADMIN:
        return url_for("admin.index")
    if user.role == Role.FINANCE:
        return url_for("affiliates.index")
    if user.role == Role.AFFILIATE:
        return url_for("partner.home")
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
            db.session.commit()
            flash("Welcome! Your account is ready. Share your own link to invite friends.", "success")
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
            db.session.commit()
            flash("Thanks for applying. We will review your application shortly.", "success")
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
            sign_in(user, remember=form.remember.data)
            db.session.commit()
            target = safe_next(request.args.get("next"), request.host_url)
            return redirect(target or home_for(user))
    return form_page(render_template("auth/login.html", form=form), throttled)


@bp.route("/reauth", methods=["GET", "POST"])
def reauth():
    """Ask the signed-in person for their password again before a sensitive action, then go back."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    form = ReauthForm()
    status = 200
    throttled = None
    if form.validate_on_submit():
        try:
            # The sign-in check itself, so failed attempts count towards the same throttles.
            authenticate(current_user.email, form.password.data)
        except throttles.Throttled as error:
            throttled = error
            form.form_errors.append(str(error))
        except accounts.InvalidCredentials:
            form.password.errors.append("That is not your password.")
            status = 422
        else:
            db.session.commit()
            confirm_login()
            mark_password_entered()
            target = safe_next(request.args.get("next"), request.host_url)
            return redirect(target or home_for(current_user))
    return form_page(render_template("auth/reauth.html", form=form), throttled, status)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        accounts.end_session(db.session, current_user.session_token, now=utcnow())
        db.session.commit()
    session.pop(PASSWORD_AT, None)
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
