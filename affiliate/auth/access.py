"""Role checks: on whole blueprints, so a new route cannot forget them, and narrower ones on single views."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import abort, render_template
from flask_login import current_user

from affiliate.extensions import login_manager
from affiliate.models import Role


def require_roles(*roles: Role, active_affiliate: bool = False) -> Callable[[], object]:
    """Return a before_request hook admitting only signed-in users with one of ``roles``.

    With ``active_affiliate`` an affiliate must also be approved and not suspended; others
    see their account status instead of the page.
    """
    allowed = {role.value for role in roles}

    def check():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if current_user.role not in allowed:
            abort(403)
        if active_affiliate and current_user.role == Role.AFFILIATE and not current_user.can_use_partner_pages:
            return render_template("account/status.html", user=current_user), 403
        return None

    return check


def only_roles(*roles: Role) -> Callable:
    """Narrow one view of a blueprint to ``roles`` (403 for the blueprint's other roles); the blueprint's own check
    runs first, so the person is signed in."""
    allowed = {role.value for role in roles}

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args, **kwargs):
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        return checked

    return decorate
