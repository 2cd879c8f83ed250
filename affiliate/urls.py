"""URL rules judged the way a browser parses URLs (WHATWG, via ada-url)."""

from __future__ import annotations

from functools import lru_cache

import ada_url

MAX_URL_LENGTH = 2048
# The only hosts a plain-http destination may name, and only with ALLOW_HTTP_LOOPBACK_DESTINATIONS
# (`make run`'s demo shop): this machine, as a browser parses the URL (ada-url brackets IPv6).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})

# Control characters and whitespace that browsers strip or that split headers.
_FORBIDDEN = {chr(c) for c in range(0x00, 0x21)} | {"\x7f", "\\"}


class InvalidUrl(ValueError):
    """A URL or host name that Clicktrail will not store or redirect to."""


def scheme_allowed(protocol: str, hostname: str, *, allow_http_loopback: bool = False) -> bool:
    """https always; plain http only to a loopback host, and only when the setting allows it."""
    return protocol == "https:" or (allow_http_loopback and protocol == "http:" and hostname in LOOPBACK_HOSTS)


def parse_destination(text: str, *, allow_http_loopback: bool = False) -> str:
    """Return the normalised form of a merchant destination URL, or raise InvalidUrl.

    A destination is an absolute https URL with a domain host, no credentials and no
    characters a browser would silently drop (which is how filters are usually fooled).
    With ``allow_http_loopback`` (a local demo) it may also be http to 127.0.0.1, [::1] or localhost.
    """
    text = (text or "").strip()
    if not text:
        raise InvalidUrl("Enter a URL.")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch in _FORBIDDEN for ch in text):
        raise InvalidUrl("URL contains spaces, control characters or backslashes.")
    try:
        url = ada_url.URL(text)
    except ValueError:
        raise InvalidUrl("Not a valid URL.") from None
    if not scheme_allowed(url.protocol, url.hostname, allow_http_loopback=allow_http_loopback):
        if allow_http_loopback:
            raise InvalidUrl("URL must start with https:// (http:// only for 127.0.0.1, [::1] or localhost).")
        raise InvalidUrl("URL must start with https://.")
    if url.username or url.password:
        raise InvalidUrl("URL must not contain a user name or password.")
    # Loopback http names its host exactly (scheme_allowed); everything else needs a full domain name.
    if url.protocol == "https:":
        if url.host_type != ada_url.HostType.DEFAULT:
            raise InvalidUrl("URL must use a domain name, not an IP address.")
        if not _is_domain(url.hostname.rstrip(".")):
            raise InvalidUrl("URL must use a full domain name.")
        # "shop.example.com." is another origin to a browser: store the name without the dot.
        url.hostname = url.hostname.rstrip(".")
    if len(url.href) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters once encoded.")
    return url.href


def normalise_host(text: str) -> str:
    """Return a host name in its ASCII (punycode) form, or raise InvalidUrl.

    ``host:port`` names a port other than the destination's that deep links on that host may use (``host:443``: the
    usual one, when the destination uses another).
    """
    text = (text or "").strip().lower()
    name, colon, port = text.rpartition(":")
    if colon and port.isascii() and port.isdigit():
        if not 1 <= int(port) <= 65535 or len(port) > 5:
            raise InvalidUrl(f"{text!r}: a port is 1 to 65535.")
        return f"{normalise_host(name)}:{int(port)}"
    if "*" in text:
        raise InvalidUrl(f"{text!r}: wildcards are not supported; list each host.")
    text = text.rstrip(".")
    if not text or any(ch in _FORBIDDEN or ch in "/?#@:" for ch in text):
        raise InvalidUrl(f"{text!r} is not a host name.")
    try:
        url = ada_url.URL(f"https://{text}/")
    except ValueError:
        raise InvalidUrl(f"{text!r} is not a host name.") from None
    host = url.hostname.rstrip(".")  # IDNA maps full-width and ideographic stops to "."
    if url.host_type != ada_url.HostType.DEFAULT or not _is_domain(host):
        raise InvalidUrl(f"{text!r} is not a domain name.")
    return host


def _is_domain(host: str) -> bool:
    """At least two labels, none of them empty."""
    labels = host.split(".")
    return len(labels) >= 2 and all(labels)


def parse_host_list(text: str) -> list[str]:
    """Parse hosts separated by commas, spaces or newlines; raise InvalidUrl on the first bad one."""
    hosts: list[str] = []
    for raw in (text or "").replace(",", " ").split():
        host = normalise_host(raw)
        if host not in hosts:
            hosts.append(host)
    return hosts


def host_of(url: str) -> str:
    return ada_url.URL(url).hostname


@lru_cache(maxsize=4096)  # a page sends the same Referer with every visitor it sends on
def url_host(text: str | None) -> str | None:
    """The host of a URL as a browser parses it, lower case, without a trailing dot; None when there is none."""
    if not text:
        return None
    try:
        host = ada_url.URL(text).hostname
    except ValueError:
        return None
    return host.lower().rstrip(".")[:255] or None


def safe_next(target: str | None, base_url: str) -> str | None:
    """Return a same-origin path to redirect to after login, or None if the target is unsafe.

    The target is resolved against our own origin as a browser would; only if it stays on
    that origin is its path (never starting with ``//``) handed back.
    """
    if not target or len(target) > 2048 or any(ch in _FORBIDDEN for ch in target):
        return None
    try:
        base = ada_url.URL(base_url)
        resolved = ada_url.URL(target, base.href)
    except ValueError:
        return None
    if resolved.origin != base.origin:
        return None
    path = resolved.pathname
    if not path.startswith("/") or path.startswith("//"):
        return None
    return path + resolved.search


def destination_allowed(url: str, hosts: frozenset[str] | set[str], *, allow_http_loopback: bool = False) -> bool:
    """Judge a final Location as a browser would: https (or loopback http, if allowed), a host on the allowlist."""
    try:
        parsed = ada_url.URL(url)
    except ValueError:
        return False
    return (
        scheme_allowed(parsed.protocol, parsed.hostname, allow_http_loopback=allow_http_loopback)
        and not parsed.username
        and not parsed.password
        and on_allowlist(parsed.protocol, parsed.hostname, parsed.port, hosts)
    )


def on_allowlist(protocol: str, hostname: str, port: str, hosts: frozenset[str] | set[str]) -> bool:
    """Whether the host is on a program's allowlist, as the URL parser gives its parts (``port`` empty for the
    scheme's own): listed alone (its port is then the deep links' rule, ``deep_link_problem``), or listed as
    ``host:port`` with this very port. The portal's checks and the redirector both ask this."""
    return hostname in hosts or f"{hostname}:{port or DEFAULT_PORTS.get(protocol, '')}" in hosts


def resolve_deep_link(
    text: str, destination: str, hosts: frozenset[str] | set[str], *, allow_http_loopback: bool = False
) -> str:
    """Turn a deep-link path ("/shoes?c=red") or URL into an absolute URL on an allowed host."""
    text = (text or "").strip()
    if text.startswith("/") and not text.startswith("//"):
        if any(ch in _FORBIDDEN for ch in text):
            raise InvalidUrl("The path contains spaces, control characters or backslashes.")
        url = ada_url.URL(text, destination).href
        if len(url) > MAX_URL_LENGTH:
            raise InvalidUrl(f"The link is longer than {MAX_URL_LENGTH} characters once encoded.")
    else:
        url = parse_destination(text, allow_http_loopback=allow_http_loopback)
    problem = deep_link_problem(url, destination, hosts, allow_http_loopback=allow_http_loopback)
    if problem:
        raise InvalidUrl(problem)
    return url


DEFAULT_PORTS = {"https:": "443", "http:": "80"}


def deep_link_problem(
    url: str, destination: str, hosts: frozenset[str] | set[str], *, allow_http_loopback: bool = False
) -> str | None:
    """Why an absolute deep link may not be used with ``destination``, or None when it may."""
    if not destination_allowed(url, hosts, allow_http_loopback=allow_http_loopback):
        return "Deep links must stay on the program's allowed hosts."
    parsed, home = ada_url.URL(url), ada_url.URL(destination)
    # Another scheme or port on an allowed host is another service, often one never meant for shoppers.
    if parsed.protocol != home.protocol:
        return f"Deep links must use the destination's scheme ({home.protocol[:-1]})."
    port = parsed.port or DEFAULT_PORTS.get(parsed.protocol, "")
    if parsed.port != home.port and f"{parsed.hostname}:{port}" not in hosts:
        return "Deep links must use the destination's port, or one the program lists as host:port."
    # A path starting with // is read as another host by many servers' own redirects (protocol-relative).
    if parsed.pathname.startswith("//"):
        return "Deep link paths must not start with //."
    return None
