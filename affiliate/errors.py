"""Error pages: a clear message, never a stack trace."""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, Response, render_template, request
from flask.globals import request_ctx
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from werkzeug.exceptions import Conflict, HTTPException

log = logging.getLogger(__name__)
RACING_WRITE = (
    "This was changed by another request at the same moment (or sent twice). Reload the page to see where it stands, "
    "and try again if it is still needed."
)

MESSAGES = {
    400: "The request could not be understood. If you submitted a form, reload the page and try again.",
    403: "You do not have access to this page.",
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
    413: "What you sent is too large.",
    429: "Too many requests. Wait a moment and try again.",
}


def register(app: Flask) -> None:
    # Unhandled exceptions reach this as a 500 (logged with their traceback by Flask).
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(IntegrityError, _racing_write)


def _racing_write(error: IntegrityError):
    """A write that met a unique key another request took a moment before (a form sent twice at once, two people on
    one record): the database kept nothing of this one, so the answer is a 409 that says so, not a 500."""
    log.warning("a write met a row another request stored first: %s", error.orig)
    _rollback()
    return _http_error(Conflict(RACING_WRITE))


def _rollback() -> None:
    """The request's session may hold a failed transaction; the error page must be able to read (who is signed in)."""
    from affiliate.extensions import db

    with contextlib.suppress(SQLAlchemyError):
        db.session.rollback()


def _http_error(error: HTTPException):
    code = error.code or 500
    if code >= 500:
        _rollback()
    if request.path.startswith("/api/"):
        name = (error.name or "error").lower().replace(" ", "_").replace("'", "")
        return {"error": {"code": name, "message": error.description, "status": code}}, code
    message = MESSAGES.get(code, error.description)
    if request_ctx.url_adapter is None:
        # The Host header is no name a URL can carry (Werkzeug answers it with BadHost), so no page that links to
        # others can be drawn for this request: the message alone.
        return Response(f"{code} {error.name}: {message}\n", status=code, mimetype="text/plain")
    return render_template("errors/error.html", code=code, title=error.name, message=message), code
