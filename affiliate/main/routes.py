"""The landing page and the health check."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template
from flask_login import current_user
from sqlalchemy import text

from affiliate.auth.routes import home_for
from affiliate.extensions import db

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    return render_template("main/index.html")


@bp.route("/healthz")
def health():
    """Answer 200 when the app can reach its database (for load balancers and `make run`)."""
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}


@bp.route("/examples/landing")
def snippet_example():
    """A merchant landing page with the tracking snippet: shows the click id it keeps, and what to send."""
    return render_template("main/snippet_example.html")
