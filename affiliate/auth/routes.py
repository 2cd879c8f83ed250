"""Apply, sign in, sign out."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from affiliate.auth.forms import ApplyForm, LoginForm
from affiliate.auth.sessions import client_ip, hasher, sign_in, throttle_policy
from affiliate.extensions import db
from affiliate.models import Role, User, utcnow
from affiliate.services import accounts
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
    return url_for("account.profile")


@bp.route("/apply", methods=["GET", "POST"])
def apply():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = ApplyForm()
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
            user = accounts.apply_as_affiliate(db.session, application, hasher=hasher(), now=utcnow())
        except accounts.WeakPassword as error:
            form.password.errors.append(str(error))
        except accounts.EmailTaken as error:
            form.email.errors.append(str(error))
        else:
            sign_in(user, remember=False)
            db.session.commit()
            flash("Thanks for applying. We will review your application shortly.", "success")
            return redirect(url_for("account.profile"))
    return render_template("auth/apply.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(
                db.session,
                email=form.email.data,
                password=form.password.data,
                ip=client_ip(),
                hasher=hasher(),
                policy=throttle_policy(),
                now=utcnow(),
            )
        except accounts.LoginThrottled as error:
            form.form_errors.append(str(error))
            status = 429
        except accounts.InvalidCredentials as error:
            db.session.commit()  # keep the failed attempt for throttling
            form.form_errors.append(str(error))
        else:
            sign_in(user, remember=form.remember.data)
            db.session.commit()
            target = safe_next(request.args.get("next"), request.host_url)
            return redirect(target or home_for(user))
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        accounts.end_session(db.session, current_user.session_token, now=utcnow())
        db.session.commit()
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
