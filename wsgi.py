"""WSGI entry points.

- ``wsgi:app``: the portal and the redirector in one process (development, small sites);
  requests under ``/r/`` go to the redirector.
- ``wsgi:portal``: the partner portal alone.
- ``wsgi:redirector``: the click redirector alone, without the portal's machinery, to run
  and scale on its own.

Each is built on first access, so a server that imports only one never builds the others.
"""

from __future__ import annotations

import gc

from config import config_from_env

_built: dict = {}

# The garbage collector's generation thresholds in a server process. A request allocates hundreds of
# objects (a click a few dozen, a conversion's ORM work far more), so with Python's default (700) the
# collector runs every few requests and, now and then, walks every cached link, device and ORM
# structure: a pause that every request queued behind it waits out. Collecting young objects far less
# often shortens those pauses (the slowest requests' latency) for next to no more memory.
GC_THRESHOLDS = (50_000, 20, 100)


def _portal():
    from affiliate import create_app

    return create_app()


def _redirector():
    from redirector import create_redirector

    return create_redirector(config_from_env().as_dict())


def _combined():
    from redirector import create_redirector

    portal = _get("portal")
    redirector = create_redirector(portal.config)

    def application(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/r/"):
            return redirector(environ, start_response)
        return portal(environ, start_response)

    application.portal = portal
    application.redirector = redirector
    return application


_FACTORIES = {"portal": _portal, "redirector": _redirector, "app": _combined}


def _get(name: str):
    if name not in _built:
        gc.set_threshold(*GC_THRESHOLDS)
        _built[name] = _FACTORIES[name]()
    return _built[name]


def __getattr__(name: str):
    if name in _FACTORIES:
        return _get(name)
    raise AttributeError(name)


def create_app():
    """The portal, for `flask --app wsgi` (its commands: db, create-user, seed-demo, ...)."""
    return _get("portal")
