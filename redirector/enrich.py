"""Facts about a click taken from its request: client IP, device, bot signals, geo, fingerprint.

Every function here is safe on hostile input: a failure leaves a field empty, it never
raises into the request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

import user_agents
from crawleruseragents import is_crawler

from affiliate.addresses import normalise_ip
from redirector.clickrecord import ClickRecord

log = logging.getLogger(__name__)

USER_AGENT_MAX = 1024  # stored
USER_AGENT_PARSE_MAX = 512  # parsed: real browser strings are far shorter; longer ones are not browsers

# Link unfurlers and preview fetchers: they fetch a link when it is shared, not when it is clicked.
PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebot|twitterbot|slackbot|slack-imgproxy|linkedinbot|discordbot|whatsapp|"
    r"telegrambot|skypeuripreview|bingpreview|google-inspectiontool|embedly|redditbot|pinterest/0\.|pinterestbot|"
    r"vkshare|iframely|snap url preview|bitlybot|tumblr|mastodon|bluesky|cardyb|outbrain|quora link preview|viber|"
    r"kakaotalk-scrap|line-poker|applebot|microsoft office",
    re.IGNORECASE,
)  # not the apps' in-app browsers ("[Pinterest/iOS]", "Snapchat/12.55"), where people really click
# HTTP libraries and crawlers that user-agents does not call bots.
TOOL_AGENTS = re.compile(
    r"python-requests|python-urllib|aiohttp|httpx|curl/|wget/|go-http-client|okhttp|axios|node-fetch|undici|"
    r"scrapy|httpclient|libwww|java/|ruby/|php/|postmanruntime|insomnia|guzzlehttp|dart/|^node$|^mozilla/5\.0$|"
    r"\bbot\b|crawler|spider",
    re.IGNORECASE,
)
HEADLESS = re.compile(r"headless|phantomjs|puppeteer|playwright|selenium", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Device:
    device_type: str | None
    brand: str | None
    model: str | None
    os: str | None
    browser: str | None
    bot_reason: str | None


EMPTY_DEVICE = Device(None, None, None, None, None, None)


def _clean(value: str | None, limit: int = 64) -> str | None:
    if not value or value == "Other":
        return None
    return value[:limit]


@lru_cache(maxsize=16384)
def parse_user_agent(user_agent: str) -> Device:
    """Parse a user agent once per distinct string (parsing costs about a millisecond)."""
    if not user_agent:
        return Device(None, None, None, None, None, "empty_user_agent")
    try:
        parsed = user_agents.parse(user_agent[:USER_AGENT_PARSE_MAX])
        if PREVIEW_AGENTS.search(user_agent):
            reason = "link_preview"
        elif HEADLESS.search(user_agent):
            reason = "headless_browser"
        elif parsed.is_bot:
            reason = "known_bot"
        elif TOOL_AGENTS.search(user_agent):
            reason = "automation_tool"
        elif is_crawler(user_agent[:USER_AGENT_PARSE_MAX]):
            reason = "known_crawler"  # the crawler-user-agents list, for what user-agents' test misses
        else:
            reason = None
        if reason:
            device_type = "bot"
        elif parsed.is_tablet:
            device_type = "tablet"
        elif parsed.is_mobile:
            device_type = "mobile"
        elif parsed.is_pc:
            device_type = "desktop"
        else:
            device_type = "other"
        return Device(
            device_type,
            _clean(parsed.device.brand),
            _clean(parsed.device.model),
            _clean(parsed.os.family),
            _clean(parsed.browser.family),
            reason,
        )
    except Exception:  # a parser failure must never cost a click
        log.warning("user agent parsing failed", exc_info=True)
        return EMPTY_DEVICE


def request_bot_reason(method: str, environ: dict) -> str | None:
    """Why the request itself is not a person's click (a HEAD, a prefetch), or None."""
    if method == "HEAD":
        return "head_request"
    purpose = (environ.get("HTTP_SEC_PURPOSE") or environ.get("HTTP_PURPOSE") or "").lower()
    if "prefetch" in purpose or "prerender" in purpose:
        return "prefetch"
    return None


def bot_reason(method: str, device: Device, environ: dict) -> str | None:
    """Why this click is not a person's, or None."""
    return request_bot_reason(method, environ) or device.bot_reason


def add_device_and_geo(click: ClickRecord, geo: GeoLookup) -> None:
    """Fill in a logged click's missing device, bot and geo fields from its user agent and IP.

    The ingester's half of enrichment: the request path records the user agent, the IP and
    the request's own bot signals (``bot_reason``), and never waits for a parser or a database
    file. Both lookups are cached; fields a click was logged with are kept.
    """
    if click["device_type"] is None:
        try:
            device = parse_user_agent(click["user_agent"] or "")
        except Exception:
            device = EMPTY_DEVICE
        reason = click["bot_reason"] or device.bot_reason
        click.update(
            device_type="bot" if reason else device.device_type,
            device_brand=device.brand,
            device_model=device.model,
            os=device.os,
            browser=device.browser,
            is_bot=reason is not None,
            bot_reason=reason,
        )
    if click["country"] is None:
        place = geo.lookup(click["ip"])
        click.update(country=place.country, region=place.region, city=place.city)


def client_ip(environ: dict, trusted_proxies: int) -> str | None:
    """The client's address: the socket peer, or the hop our own proxies vouch for."""
    candidate = environ.get("REMOTE_ADDR") or ""
    if trusted_proxies > 0:
        hops = [hop.strip() for hop in (environ.get("HTTP_X_FORWARDED_FOR") or "").split(",") if hop.strip()]
        if len(hops) >= trusted_proxies:
            candidate = hops[-trusted_proxies]
    return normalise_ip(candidate)


@lru_cache(maxsize=65536)
def ip_prefix(ip: str | None) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address: coarse enough to share, fine enough to match."""
    if not ip:
        return None
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def ip_hash(key: bytes, ip: str | None) -> str | None:
    if not ip:
        return None
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def fingerprint(prefix: str | None, user_agent: str, environ: dict) -> str:
    """A device fingerprint: a hash of what a browser sends the same way on every visit.

    Version 1 hashes, joined by newlines: the IP's /24 or /48 network, the user agent,
    Accept-Language, and the client hints Sec-CH-UA, Sec-CH-UA-Platform and Sec-CH-UA-Mobile.
    Stable across cookie clearing; changes with network, browser or language.
    """
    parts = (
        "v1",
        prefix or "",
        user_agent,
        (environ.get("HTTP_ACCEPT_LANGUAGE") or "")[:256],
        (environ.get("HTTP_SEC_CH_UA") or "")[:256],
        (environ.get("HTTP_SEC_CH_UA_PLATFORM") or "")[:64],
        (environ.get("HTTP_SEC_CH_UA_MOBILE") or "")[:8],
    )
    return hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Place:
    country: str | None
    region: str | None
    city: str | None


NOWHERE = Place(None, None, None)


class GeoLookup:
    """Country, region and city for an IP from a MaxMind City database.

    The reader is opened on first use in each process (never at import, never before a
    fork). A missing or corrupt file disables lookups with one warning; a failed lookup
    gives an empty place.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._reader = None
        self._disabled = False
        self._lock = threading.Lock()
        self.lookup = lru_cache(maxsize=65536)(self._lookup)

    def _open(self):
        with self._lock:
            if self._reader is None and not self._disabled:
                try:
                    import geoip2.database

                    self._reader = geoip2.database.Reader(self.path or default_geoip_path())
                except Exception:
                    log.warning("GeoIP database %s unusable; clicks get no geo", self.path, exc_info=True)
                    self._disabled = True
        return self._reader

    def _lookup(self, ip: str | None) -> Place:
        if not ip or self._disabled:
            return NOWHERE
        reader = self._reader or self._open()
        if reader is None:
            return NOWHERE
        try:
            city = reader.city(ip)
        except Exception:  # unknown or private address, corrupt data: no geo, still a click
            return NOWHERE
        return Place(
            (city.country.iso_code or None),
            (city.subdivisions.most_specific.name or None),
            (city.city.name or None),
        )


def default_geoip_path() -> str:
    from _maxminddb_geolite2 import geolite2_database

    return geolite2_database()
