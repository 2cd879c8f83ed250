"""Response headers every page carries."""

from __future__ import annotations

from flask import abort, current_app, request
from flask.wrappers import Response
from flask_login import current_user

from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def refuse_unstorable_arguments() -> None:
    """A query string holding NUL or a lone surrogate is refused (400) before a view puts it in a query."""
    for key, value in request.args.items(multi=True):
        if unstorable(key) or unstorable(value):
            abort(400, description=f"Query arguments {UNSTORABLE_MESSAGE}.")


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config.get("HSTS"):
        headers.setdefault("Strict-Transport-Security", current_app.config["HSTS"])
    # Pages about a signed-in person's money or account must not linger in shared caches.
    if current_user and current_user.is_authenticated:
        headers["Cache-Control"] = "no-store"
    return response
