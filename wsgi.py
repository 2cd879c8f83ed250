"""WSGI entry points: `wsgi:app` serves the portal (and, once it exists, the redirector)."""

from affiliate import create_app

portal = create_app()
app = portal
