"""Role checks applied to whole blueprints, so a new route cannot forget them."""

from __future__ import annotations

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
