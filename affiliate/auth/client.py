"""The requesting client as the portal sees it."""

from __future__ import annotations

from flask import request

from affiliate.addresses import IP_TEXT_MAX


def client_ip() -> str:
    """The client's address; X-Forwarded-For counts only through ProxyFix's trusted hops."""
    return (request.remote_addr or "unknown")[:IP_TEXT_MAX]
