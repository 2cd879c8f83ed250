"""Client IP addresses in one spelling, whichever socket family they arrived on."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IP_TEXT_MAX = 45  # the longest spelling of an IPv6 address with an embedded IPv4 tail


@lru_cache(maxsize=65536)
def normalise_ip(text: str) -> str | None:
    """The address in canonical form, an IPv4-mapped IPv6 address (::ffff:1.2.3.4) as plain IPv4 and without an
    IPv6 zone (fe80::1%eth0); None if not one.

    A dual-stack listener reports every IPv4 peer as mapped IPv6. Left mapped, every IPv4 visitor would share the
    network ::/48, so prefixes, fingerprints, fraud rules and geo would all treat them as one visitor.
    """
    text = text.strip()
    if ":" in text:
        # A zone ("%eth0") names an interface of the machine that saw the address, not part of the visitor's.
        text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text[:IP_TEXT_MAX])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


class UnmapClientAddress:
    """WSGI middleware: REMOTE_ADDR in canonical form before the portal (sessions, throttles, fraud) reads it."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        remote = environ.get("REMOTE_ADDR")
        if remote:
            environ["REMOTE_ADDR"] = normalise_ip(remote) or remote
        return self.app(environ, start_response)
