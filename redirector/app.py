"""The redirector's WSGI app: look up the link, gather the click's facts, store it, answer 302."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from http import HTTPStatus
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import ada_url
from sqlalchemy.engine import Engine
from werkzeug.http import parse_cookie

from affiliate.ids import new_id
from affiliate.services.fraud import paid_click_params
from affiliate.urls import destination_allowed, on_allowlist, scheme_allowed
from redirector import enrich
from redirector.clicklog import ClickLog
from redirector.clickrecord import LoggedClick
from redirector.engines import make_engine
from redirector.links import LinkCache, LinkTarget, LookupFailed
from redirector.recorder import ClickRecorder

log = logging.getLogger(__name__)

CODE = re.compile(r"[A-Za-z0-9]{4,32}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,32}")  # a click or visitor id as affiliate.ids.new_id issues it
VISITOR_COOKIE = "ct_vid"
SUB_MAX = 255
SUB_KEYS = ("sub1", "sub2", "sub3", "sub4", "sub5")
QUERY_FIELDS = 64  # query parameters of a click that are read; the rest are ignored
PAID_CLICK_MAX = 64  # the clicks.paid_click column's length
FETCH_KEYS = ("HTTP_SEC_FETCH_SITE", "HTTP_SEC_FETCH_MODE", "HTTP_SEC_FETCH_DEST", "HTTP_SEC_FETCH_USER")
JUDGED_URL_PARTS = ("protocol", "hostname", "port", "username", "password")

SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
]
NOT_FOUND_BODY = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    b"<h1>Link not found</h1><p>This link does not exist or is no longer active.</p></html>"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Redirector:
    """A WSGI callable answering ``GET /r/<code>``."""

    def __init__(self, config: dict, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        self.trusted_proxies = int(config["TRUSTED_PROXY_COUNT"])
        self.click_param = config["CLICK_PARAM"]
        self.encoded_click_param = quote_plus(self.click_param)
        self.secure_cookies = bool(config.get("SESSION_COOKIE_SECURE"))
        self.allow_http_loopback = bool(config.get("ALLOW_HTTP_LOOPBACK_DESTINATIONS"))
        self.visitor_max_age = int(config["VISITOR_COOKIE_DAYS"]) * 86400
        self.link_preload = int(config.get("LINK_CACHE_PRELOAD", 0))
        hsts = config.get("HSTS")
        self.extra_headers = [("Strict-Transport-Security", hsts)] if hsts else []
        ip_key = hashlib.sha256(b"clicktrail-ip-hash:" + config["SECRET_KEY"].encode()).digest()
        self.ip_hash = lru_cache(maxsize=65536)(partial(enrich.ip_hash, ip_key))
        process = config.get("CLICK_INGESTER", "thread") == "process"
        self.links = LinkCache(
            self._reader_engine,
            float(config["LINK_CACHE_SECONDS"]),
            self.click_param,
            allow_http_loopback=self.allow_http_loopback,
        )
        self.recorder = ClickRecorder(
            self._writer_engine,
            ClickLog(config["CLICK_LOG_DIR"], int(config["CLICK_LOG_SEGMENT_MB"]) * 1024 * 1024, handoff=process),
            unique_window=timedelta(seconds=int(config["UNIQUE_CLICK_WINDOW_SECONDS"])),
            geoip_database=config.get("GEOIP_DATABASE"),
            batch_max=int(config["CLICK_BATCH_MAX"]),
            wait_seconds=float(config["CLICK_WAIT_SECONDS"]),
            ingester_process={
                "database_uri": config["SQLALCHEMY_DATABASE_URI"],
                "log_dir": config["CLICK_LOG_DIR"],
                "unique_window_seconds": int(config["UNIQUE_CLICK_WINDOW_SECONDS"]),
                "geoip_database": config.get("GEOIP_DATABASE"),
            }
            if process
            else None,
        )

    # Engines are made on first use, inside the worker process, never before a fork.
    def _reader_engine(self) -> Engine:
        return make_engine(self.config["SQLALCHEMY_DATABASE_URI"], immediate=False)

    def _writer_engine(self) -> Engine:
        return make_engine(self.config["SQLALCHEMY_DATABASE_URI"], immediate=True)

    def close(self) -> None:
        """Finish writing queued clicks and release database connections."""
        self.recorder.close()
        self.links.close()

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        """WSGI: answer, waiting in this thread for the click to be stored."""
        answer = self.respond(environ)
        if isinstance(answer, PendingClick):
            answer = answer.settle(self.recorder.record(answer.click))
        start_response(answer.status_line, answer.headers + self.extra_headers)
        return [answer.body]

    def __rsgi_init__(self, loop) -> None:
        """RSGI: ready the worker before its first request: the click log, and the links that redirect."""
        try:
            self.recorder.start()
        except OSError:
            log.exception("could not open the click log; the first click tries again")
        self.recorder.yield_to_ingester(int(self.config.get("REDIRECTOR_NICE", 0)))
        started = time.monotonic()
        try:
            loaded = self.links.preload(self.link_preload)
        except Exception:
            log.warning("could not preload links; each is looked up when first clicked", exc_info=True)
            return
        log.info("preloaded %d links in %.2f s", loaded, time.monotonic() - started)

    async def __rsgi__(self, scope, protocol) -> None:
        """RSGI (granian's native interface): the same answers, with clicks stored in shared batches.

        Waiting costs no thread: every click of the clicks in flight joins one append and
        one fdatasync, the event loop carrying on meanwhile (see ClickRecorder.record_async).
        """
        if scope.proto != "http":
            return
        answer = self.respond(rsgi_environ(scope))
        if isinstance(answer, PendingClick):
            answer = answer.settle(await self.recorder.record_async(answer.click))
        protocol.response_bytes(answer.status, answer.headers + self.extra_headers, answer.body)

    def respond(self, environ: dict) -> FinishedResponse | PendingClick:
        """The answer to one request, or a click to store before the answer can be given."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if CONTROL.search(path):
            return _plain(400, b"Bad request")
        if not path.startswith("/r/"):
            return NOT_FOUND
        if method == "OPTIONS":
            return _plain(204, b"", [("Allow", "GET, HEAD, OPTIONS")])
        if method not in ("GET", "HEAD"):
            return _plain(405, b"Method not allowed", [("Allow", "GET, HEAD, OPTIONS")])
        code = path[3:]
        if not CODE.fullmatch(code):
            return NOT_FOUND
        try:
            target = self.links.get(code)
        except LookupFailed:
            log.error("link %s unknown to the cache and the database is unavailable", code)
            return _plain(503, b"Try again in a moment", [("Retry-After", "5")])
        if target is None:
            return NOT_FOUND
        if not target.redirects:
            if target.fallback_url and destination_allowed(
                target.fallback_url, target.allowed_hosts, allow_http_loopback=self.allow_http_loopback
            ):
                return _redirect(target.fallback_url, [])
            return NOT_FOUND
        return self._click(environ, method, target)

    def _click(self, environ: dict, method: str, target: LinkTarget) -> FinishedResponse | PendingClick:
        now = self.clock()
        click_id = new_id()
        raw_cookies = environ.get("HTTP_COOKIE", "")
        visitor_id = parse_cookie(raw_cookies).get(VISITOR_COOKIE, "") if VISITOR_COOKIE in raw_cookies else ""
        new_visitor = not TOKEN.fullmatch(visitor_id)
        if new_visitor:
            visitor_id = new_id()
        query = _query(environ)
        click = self._logged_click(environ, method, target, query, click_id, visitor_id, now)
        destination = self._destination(target, query)
        if destination is None:
            log.error("link %s resolves off its program's allowlist", target.link_id)
            return NOT_FOUND
        visitor_cookie = self._cookie(VISITOR_COOKIE, visitor_id, self.visitor_max_age) if new_visitor else None
        click_cookie = self._cookie(f"ct_{target.program_id}", click_id, target.cookie_days * 86400)
        return PendingClick(click, destination, self.encoded_click_param, click_cookie, visitor_cookie)

    def _cookie(self, name: str, value: str, max_age: int) -> str:
        """A Set-Cookie value; names and values here are URL-safe tokens that need no quoting."""
        secure = "; Secure" if self.secure_cookies else ""
        return f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}"

    def _logged_click(
        self,
        environ: dict,
        method: str,
        target: LinkTarget,
        query: dict[str, str],
        click_id: str,
        visitor_id: str,
        now: datetime,
    ) -> LoggedClick:
        """Everything recorded about a click here; its device and geo are filled in by the ingester
        (enrich.add_device_and_geo), off the shopper's path."""
        user_agent = (environ.get("HTTP_USER_AGENT") or "")[: enrich.USER_AGENT_MAX]
        ip = enrich.client_ip(environ, self.trusted_proxies)
        prefix = enrich.ip_prefix(ip)
        bot = enrich.request_bot_reason(method, environ)
        subs = [query.get(key) or default or None for key, default in zip(SUB_KEYS, target.subs, strict=True)]
        fetch = "/".join([environ.get(key, "") for key in FETCH_KEYS])
        return {
            "link_id": target.link_id,
            "affiliate_id": target.affiliate_id,
            "program_id": target.program_id,
            "ip": ip,
            "ip_hash": self.ip_hash(ip),
            "ip_prefix": prefix,
            "user_agent": user_agent or None,
            "is_bot": bot is not None,
            "bot_reason": bot,
            "referrer": (environ.get("HTTP_REFERER") or "")[:2048] or None,
            "sub1": subs[0] and subs[0][:SUB_MAX],
            "sub2": subs[1] and subs[1][:SUB_MAX],
            "sub3": subs[2] and subs[2][:SUB_MAX],
            "sub4": subs[3] and subs[3][:SUB_MAX],
            "sub5": subs[4] and subs[4][:SUB_MAX],
            "sec_fetch": fetch[:255] if fetch != "///" else None,
            "paid_click": _paid_click(query),
            "fingerprint": enrich.fingerprint(prefix, user_agent, environ),
            "is_unique": True,
            "fraud_score": 0 if target.rejection is None else 100,
            "fraud_action": None if target.rejection is None else "reject",
            "fraud_reasons": target.rejection,
            "click_id": click_id,
            "visitor_id": visitor_id,
            "clicked_at": now,
        }

    def _destination(self, target: LinkTarget, query: dict[str, str]) -> str | None:
        """The destination plus the visitor's utm_* parameters, judged as a browser parses it (WHATWG):
        https (or http to a loopback host, with ALLOW_HTTP_LOOPBACK_DESTINATIONS), no credentials,
        a host on the allowlist.

        Only encoded query parameters are ever added to a destination checked when the link
        was cached, and then the URL-safe click id, so the host cannot change; it is judged anyway.
        """
        extra = [
            (key, value) for key, value in query.items() if key.startswith("utm_") and key not in target.query_keys
        ]
        if not extra:  # most clicks: the link's own destination, whose judgement is remembered
            allowed = _destination_judged(target.destination, target.allowed_hosts, self.allow_http_loopback)
            return target.destination if allowed else None
        location = _add_query(target.destination, urlencode(extra, quote_via=quote))
        return location if _judge(location, target.allowed_hosts, self.allow_http_loopback) else None


def _judge(location: str, allowed_hosts: frozenset[str], allow_http_loopback: bool) -> bool:
    """Whether a browser would take ``location`` to an allowed host: https (or loopback http when
    allowed), no credentials, the host on the allowlist (WHATWG parsing)."""
    parts = ada_url.parse_url(location, attributes=JUDGED_URL_PARTS)
    if parts["username"] or parts["password"]:
        return False
    if not scheme_allowed(parts["protocol"], parts["hostname"], allow_http_loopback=allow_http_loopback):
        return False
    return on_allowlist(parts["protocol"], parts["hostname"], parts["port"], allowed_hosts)


# Only links' own destinations are remembered (at most 2 kB each): visitors' utm values never fill it.
_destination_judged = lru_cache(maxsize=4096)(_judge)


def _paid_click(query: dict[str, str]) -> str | None:
    """The ad click id parameters the query carries, as "gclid,fbclid": as many as fit the column."""
    names = ""
    for name in paid_click_params(set(query)):
        joined = f"{names},{name}" if names else name
        if len(joined) > PAID_CLICK_MAX:
            break
        names = joined
    return names or None


def _add_query(url: str, encoded: str) -> str:
    """Append already-encoded parameters to a URL's query, before any fragment."""
    base, hash_mark, fragment = url.partition("#")
    return f"{base}{'&' if '?' in base else '?'}{encoded}{hash_mark}{fragment}"


def _query(environ: dict) -> dict[str, str]:
    text = environ.get("QUERY_STRING")
    if not text:
        return {}
    # The first QUERY_FIELDS parameters count and the rest are ignored, so a URL padded with junk cannot hide
    # the utm_* and sub-IDs at its start (parse_qsl's own limit refuses the whole query instead).
    pairs = parse_qsl("&".join(text.split("&", QUERY_FIELDS)[:QUERY_FIELDS]))
    return {key[:64]: value[:1024] for key, value in pairs if not CONTROL.search(key + value)}


class FinishedResponse:
    """A response ready to send (status, headers and body), as against a PendingClick still to be stored."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class PendingClick:
    """A click to store, and the redirect to give once the recorder says whether it was stored."""

    __slots__ = ("click", "click_cookie", "click_param", "destination", "visitor_cookie")

    def __init__(
        self, click: LoggedClick, destination: str, click_param: str, click_cookie: str, visitor_cookie: str | None
    ) -> None:
        """``click_param``: the query parameter's name, already URL-encoded."""
        self.click = click
        self.destination = destination
        self.click_param = click_param
        self.click_cookie = click_cookie
        self.visitor_cookie = visitor_cookie

    def settle(self, stored: bool) -> FinishedResponse:
        """The redirect; only a stored click is handed to the shopper (query parameter and cookie)."""
        headers = []
        location = self.destination
        if stored:
            headers.append(("Set-Cookie", self.click_cookie))
            # A click id is URL-safe (letters, digits, - and _): it needs no encoding.
            location = _add_query(location, f"{self.click_param}={self.click['click_id']}")
        else:
            # The shopper still lands, but nothing claims a click that was never stored.
            log.error("click on link %s could not be written to the click log", self.click["link_id"])
        if self.visitor_cookie:
            headers.append(("Set-Cookie", self.visitor_cookie))
        return _redirect(location, headers)


# The request headers the redirector reads; an RSGI request is turned into a WSGI-style environ of just these.
READ_HEADERS = (
    "user-agent", "cookie", "referer", "accept-language", "x-forwarded-for", "purpose", "sec-purpose",
    "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "sec-ch-ua", "sec-ch-ua-platform",
    "sec-ch-ua-mobile",
)  # fmt: skip
ENVIRON_KEYS = {name: "HTTP_" + name.upper().replace("-", "_") for name in READ_HEADERS}
# How a header sent more than once is joined into one value, as WSGI servers do (", " for any other).
HEADER_SEPARATORS = {"HTTP_COOKIE": "; "}


def rsgi_environ(scope) -> dict:
    """The WSGI environ keys the redirector reads, from an RSGI scope (repeated headers joined as WSGI does)."""
    host, _, _ = scope.client.rpartition(":")
    environ = {
        "REQUEST_METHOD": scope.method,
        "PATH_INFO": scope.path,
        "QUERY_STRING": scope.query_string,
        "REMOTE_ADDR": host.strip("[]"),
    }
    for name, value in scope.headers.items():  # one call into the server, names in lower case
        key = ENVIRON_KEYS.get(name)
        if key is not None:
            environ[key] = value if key not in environ else environ[key] + HEADER_SEPARATORS.get(key, ", ") + value
    return environ


def _redirect(location: str, headers: list[tuple[str, str]]) -> FinishedResponse:
    return FinishedResponse(302, [("Location", location), ("Content-Length", "0"), *SECURITY_HEADERS, *headers])


def _plain(status: int, body: bytes, headers: list | None = None) -> FinishedResponse:
    return FinishedResponse(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *SECURITY_HEADERS,
            *(headers or []),
        ],
        body,
    )


NOT_FOUND = FinishedResponse(
    404,
    [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(NOT_FOUND_BODY))), *SECURITY_HEADERS],
    NOT_FOUND_BODY,
)
