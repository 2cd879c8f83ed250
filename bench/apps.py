"""WSGI apps the redirector is measured against: a bare fixed 302, and the naive Flask + ORM design.

Served by granian as ``bench.apps:bare_app`` and ``bench.apps:naive``. The naive app is built on
first access, so the bare baseline never imports Flask or SQLAlchemy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

BARE_HEADERS = [
    ("Location", "https://shop.example.com/signup?ct_click=bench"),
    ("Cache-Control", "no-store"),
    ("Content-Length", "0"),
]

_built: dict[str, Any] = {}


def bare_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Answer every request with the same 302: the ceiling for a WSGI app under this server."""
    start_response("302 Found", BARE_HEADERS)
    return [b""]


def create_naive_app() -> Any:
    """A Flask view that looks the link up, parses the user agent and commits one ORM row per click."""
    import secrets
    from urllib.parse import urlencode

    import user_agents
    from flask import Flask, abort, redirect, request
    from sqlalchemy import select
    from ua_parser import user_agent_parser
    from werkzeug.middleware.proxy_fix import ProxyFix

    from affiliate.extensions import db
    from affiliate.models import Click, Link, utcnow

    # The library keeps the last 200 user agents; a real long tail of shoppers misses it, so here every
    # click pays for a parse.
    user_agent_parser.MAX_CACHE_SIZE = 0

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db.init_app(app)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(os.environ.get("TRUSTED_PROXY_COUNT", "1")))

    @app.get("/r/<code>")
    def click(code: str) -> Any:
        link = db.session.scalar(select(Link).where(Link.code == code))
        if link is None or not link.active:
            abort(404)
        destination = link.program.destination_url
        user_agent = request.headers.get("User-Agent", "")
        parsed = user_agents.parse(user_agent)
        click_id = secrets.token_urlsafe(16)
        db.session.add(
            Click(
                click_id=click_id,
                link_id=link.id,
                affiliate_id=link.affiliate_id,
                program_id=link.program_id,
                clicked_at=utcnow(),
                ip=request.remote_addr,
                user_agent=user_agent[:1024] or None,
                device_type="mobile" if parsed.is_mobile else "tablet" if parsed.is_tablet else "desktop",
                device_brand=(parsed.device.brand or None),
                device_model=(parsed.device.model or None),
                os=parsed.os.family[:64],
                browser=parsed.browser.family[:64],
                is_bot=parsed.is_bot,
                referrer=request.referrer,
            )
        )
        db.session.commit()
        response = redirect(f"{destination}?{urlencode({'ct_click': click_id})}", 302)
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


def __getattr__(name: str) -> Any:
    if name == "naive":
        if name not in _built:
            _built[name] = create_naive_app()
        return _built[name]
    raise AttributeError(name)
