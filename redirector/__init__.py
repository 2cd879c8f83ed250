"""The click redirector: a tiny WSGI app on the domain core (built by the redirector issue)."""
