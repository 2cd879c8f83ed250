"""The click redirector: a small WSGI app on the domain core, run on its own or beside the portal."""

from __future__ import annotations

from collections.abc import Mapping

from redirector.app import Redirector


def create_redirector(config: Mapping) -> Redirector:
    """Build the redirector from resolved settings (a portal's config, or Config.as_dict())."""
    return Redirector(dict(config))


__all__ = ["Redirector", "create_redirector"]
