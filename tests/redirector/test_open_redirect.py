"""Open redirect: crafted deep links, codes and fallbacks through link creation and the redirector.

Every Location is judged as a browser parses it (WHATWG, ada-url): https, and a host on the allowlist.
Figures (SQLite and PostgreSQL alike; printed with ``pytest -s``):
- 1,706 crafted deep links and 100 plain paths offered to create_link; 129 crafted accepted, all
  redirected with a 302: off-allowlist 0, non-https 0, 5xx 0, service crashes 0. (Found and fixed
  while writing it: trailing-dot hosts such as ``shop.example.com.``, a different origin to a browser,
  and deep links longer than 2,048 characters once resolved, which crashed create_link on PostgreSQL.)
- 248 crafted paths on /r/ with GET, HEAD, POST and OPTIONS (992 requests): 5xx 0, CR/LF 400,
  unknown codes 404, off-allowlist 0.
- 416 crafted fallback URLs stored on a program: off-allowlist 0, 5xx 0.
- A deep link whose host leaves the program's allowlist falls back to the program's destination.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import ada_url
import pytest
from sqlalchemy import update
from werkzeug.test import Client

from affiliate.extensions import db
from affiliate.models import Link, Program, User, utcnow
from affiliate.services import links
from redirector import create_redirector
from tests.factories import make_admin, make_affiliate, make_link, make_program

GOOD = "shop.example.com"
EVIL = "evil.test"
ALLOWED = frozenset({GOOD, "www.example.com"})
DESTINATION = f"https://{GOOD}/signup"
PEER = {"REMOTE_ADDR": "203.0.113.7"}
METHODS = ("GET", "HEAD", "POST", "OPTIONS")
LONG = 10 * 1024
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Hosts an attacker would like to reach, and look-alikes of the allowed host.
EVIL_HOSTS = (
    EVIL,
    "EVIL.TEST",
    "evil.test.",
    "\uff45\uff56\uff49\uff4c.\uff54\uff45\uff53\uff54",  # fullwidth evil.test
    "evil\u3002test",  # ideographic full stop
    "evil%2etest",
    f"{GOOD}.{EVIL}",
    f"{GOOD}-{EVIL}",
    "\u0455\u04bb\u043e\u0440.example.com",  # Cyrillic look-alike of shop
    "xn--n1aj6dua.example.com",
    "shop.examp1e.com",
    "shopexample.com",
    "example.com",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "127.1",
    "127.0.0.1",
    "[::1]",
    "[::ffff:7f00:1]",
    "localhost",
)
# Ways to smuggle a host past a filter; {e} is the attacker's host, {g} the allowed one.
TEMPLATES = (
    "//{e}",
    "//{e}/",
    "/\\{e}",
    "/\\/{e}",
    "/%09/{e}",
    "/\t/{e}",
    "/%5c{e}",
    "/%2f%2f{e}",
    "/%2F/{e}",
    "\\\\{e}",
    "\\/{e}",
    "///{e}",
    "////{e}",
    "{e}",
    "{e}/path",
    "https:{e}",
    "https:/{e}",
    "https:\\\\{e}",
    "https:///{e}",
    "https://{e}",
    "https://{e}/",
    "HTTPS://{e}/",
    "hTtPs://{e}/",
    "http://{e}/",
    "https://{g}@{e}/",
    "https://{g}:443@{e}/",
    "https://{g}%40{e}/",
    "https://{g}.{e}/",
    "https://{e}#@{g}",
    "https://{e}?@{g}",
    "https://{e}\\@{g}",
    "https://{e}%23@{g}",
    "https://{e}/{g}",
    "https://{e}%2f{g}/",
    "https://{e}%00.{g}/",
    "https://{e}:443/",
    "https://{e}:8443/",
)
# Decorations a filter may strip, trim or ignore where a browser or a header does not.
PREFIXES = ("", " ", "\t", "\n", "\r\n", "\x00", "\u3000", "\ufeff", "%20", "%09")
SUFFIXES = (
    "",
    "/x?y=1",
    "%00",
    "%0d%0aSet-Cookie:%20a=b",
    "\r\nLocation: https://evil.test/",
    f"#@{GOOD}",
)
SCHEMES = (
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "java\tscript:alert(1)",
    "java%09script:alert(1)",
    " javascript:alert(1)",
    "\x01javascript:alert(1)",
    f"javascript://{GOOD}/%0aalert(1)",
    f"javascript://{GOOD}/?%0d%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "DATA:text/html,x",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    f"ftp://{GOOD}/",
    f"ws://{GOOD}/",
    f"wss://{GOOD}/",
    f"blob:https://{GOOD}/1",
    f"http://{GOOD}/",
    f"http://{GOOD}:443/",
    f"HTTP://{GOOD}/",
    f"http:{GOOD}",
    f"http:/{GOOD}/",
    f"//{GOOD}/",
    f"{GOOD}/products/1",
    f"https://{GOOD}:80@{EVIL}/",
    f"https://user:pass@{GOOD}/",
    f"https://{EVIL}@{GOOD}/",
)
# Absolute deep links on allowed hosts, with tricks that must not move the host.
ON_HOST = (
    f"https://{GOOD}/",
    "https://www.example.com/deal",
    "HTTPS://SHOP.EXAMPLE.COM/Item",
    "https://\uff53\uff48\uff4f\uff50.example.com/fullwidth",
    f"https://{GOOD}./trailing-dot",
    f"https://{GOOD}:8443/port",
    f"https://{GOOD}/..%2f..%2f//{EVIL}",
    f"https://{GOOD}//{EVIL}",
    f"https://{GOOD}/?next=https://{EVIL}/",
    f"https://{GOOD}/#//{EVIL}",
    f"https://{GOOD}/a/../../{EVIL}",
    f"https://{GOOD}/%E2%80%AE",
    f"https://{GOOD}/" + "a" * LONG,
    f"https://{GOOD}/?q=" + "x" * LONG,
)
INJECTIONS = (
    "/x%0d%0aLocation:%20https://evil.test/",
    "/x\r\nLocation: https://evil.test/",
    "/x\nSet-Cookie: a=b",
    "/x\rSet-Cookie: a=b",
    "/x%0aSet-Cookie:%20a=b",
    "/x%E5%98%8A%E5%98%8DSet-Cookie:%20a=b",  # U+560A U+560D, truncated to CR LF by some servers
    "/x\u560a\u560dSet-Cookie: a=b",
    "/x%00",
    "/x\x00y",
    "/" + "a" * LONG,
    "/?" + "a=b&" * (LONG // 4),
    "//" + EVIL + "/" + "a" * LONG,
    # Within the form's 2,048 characters, longer once resolved against the destination or percent-encoded.
    "/" + "a" * 2040,
    "/" + "\u00e9" * 1000,
    f"https://{GOOD}/" + "\u00e9" * 1000,
)


def crafted_deep_links() -> list[str]:
    """At least a thousand hostile deep links, without duplicates."""
    corpus = [template.format(e=host, g=GOOD) for template, host in itertools.product(TEMPLATES, EVIL_HOSTS)]
    corpus += [
        prefix + template.format(e=EVIL, g=GOOD) + suffix
        for prefix, template, suffix in itertools.product(PREFIXES, TEMPLATES[::3], SUFFIXES)
    ]
    corpus += [prefix + scheme for prefix, scheme in itertools.product(PREFIXES[:5], SCHEMES)]
    corpus += [*ON_HOST, *INJECTIONS]
    return list(dict.fromkeys(corpus))


def safe_deep_links() -> list[str]:
    """Plain deep-link paths any merchant would use."""
    return [f"/products/{n}?x=y" for n in range(60)] + [f"/c/shoes/{n}?size=42&colour=red#top" for n in range(40)]


def short(text: str | None) -> str | None:
    """A value small enough to read in a failure report."""
    if text is None or len(text) <= 100:
        return text
    return f"{text[:60]!r}... ({len(text)} characters)"


def judge(location: str | None, loopback: str | None = None) -> set[str]:
    """What is wrong with a Location, parsed as a browser would (WHATWG URL).

    With ``loopback``, plain http to that host (a loopback program's own destination host) is also a
    rightful landing, and credentials in the URL count as off the allowlist.
    """
    if location is None:
        return {"off-allowlist"}
    try:
        url = ada_url.URL(location)
    except ValueError:
        return {"off-allowlist"}
    problems = set()
    if loopback is None:
        if url.protocol != "https:":
            problems.add("non-https")
        if url.hostname not in ALLOWED:
            problems.add("off-allowlist")
        return problems
    if url.protocol != "https:" and not (url.protocol == "http:" and url.hostname == loopback):
        problems.add("non-https off loopback")
    if url.hostname not in ALLOWED | {loopback} or url.username or url.password:
        problems.add("off-allowlist")
    return problems


@pytest.fixture
def redirector(app):
    """Build redirector test clients on the portal's database; stop their click writers afterwards."""
    built = []

    def build(**overrides) -> Client:
        red = create_redirector({**app.config, **overrides})
        built.append(red)
        return Client(red)

    yield build
    for red in built:
        red.recorder.close()


@pytest.fixture
def program(app) -> Program:
    return make_program(app, make_admin(app), allowed_hosts=(GOOD, "www.example.com"))


def create_links(
    app, affiliate: User, program: Program, deep_links: list[str], allow_http_loopback: bool = False
) -> tuple[dict, dict]:
    """Offer each deep link to the service; return {deep link: code} accepted and {deep link: error} crashes."""
    accepted: dict[str, str] = {}
    crashed: dict[str, str] = {}
    with app.app_context():
        owner = db.session.get(User, affiliate.id)
        now = utcnow()
        for text in deep_links:
            request = links.LinkRequest(program_id=program.id, campaign=None, subs=(None,) * 5, deep_link=text)
            try:
                accepted[text] = links.create_link(
                    db.session, owner, request, now=now, allow_http_loopback=allow_http_loopback
                ).code
            except links.LinkError:
                continue
            except Exception as error:  # a crash is a finding, reported below
                crashed[text] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        db.session.commit()
    return accepted, crashed


def test_crafted_deep_links_never_redirect_off_the_allowlist(app, redirector, program):
    crafted, safe = crafted_deep_links(), safe_deep_links()
    assert len(crafted) >= 1000
    accepted, crashed = create_links(app, make_affiliate(app), program, crafted + safe)
    client = redirector()

    statuses: Counter[int] = Counter()
    off_allowlist, non_https, server_errors, not_redirected, safe_wrong = [], [], [], [], []
    for text, code in accepted.items():
        response = client.get(f"/r/{code}", environ_base=PEER)
        statuses[response.status_code] += 1
        location = response.headers.get("Location")
        if response.status_code >= 500:
            server_errors.append((short(text), response.status))
        elif response.status_code != 302:
            not_redirected.append((short(text), response.status))
        if 300 <= response.status_code < 400:
            problems = judge(location)
            if "off-allowlist" in problems:
                off_allowlist.append((short(text), short(location)))
            if "non-https" in problems:
                non_https.append((short(text), short(location)))
        if text in safe:
            expected = ada_url.URL(text, DESTINATION)
            landed = ada_url.URL(location) if location else None
            if not (
                landed is not None
                and landed.hostname == GOOD
                and landed.pathname == expected.pathname
                and landed.search.startswith(expected.search + "&ct_click=")
            ):
                safe_wrong.append((text, response.status, short(location)))

    print(
        f"C13 deep links: crafted={len(crafted)} safe={len(safe)} accepted={len(accepted)} "
        f"crafted_accepted={len(set(accepted) - set(safe))} statuses={dict(statuses)} "
        f"off_allowlist={len(off_allowlist)} non_https={len(non_https)} 5xx={len(server_errors)} "
        f"service_crashes={len(crashed)}"
    )
    findings = {
        "off-allowlist": off_allowlist,
        "non-https": non_https,
        "5xx": server_errors,
        "accepted but not redirected": not_redirected,
        "service crashes": [(short(text), error) for text, error in crashed.items()],
        "safe paths refused": [text for text in safe if text not in accepted],
        "safe paths misdirected": safe_wrong,
    }
    assert findings == {name: [] for name in findings}


def crafted_codes(code: str) -> list[tuple[str, dict]]:
    """Paths on /r/ (with any raw PATH_INFO override) around one real code."""
    unknown = "zzzz2345"
    pieces = [
        code,
        "",
        "/",
        unknown,
        code.lower() if code.lower() != code else code.upper(),
        code[:-1],
        code + "x",
        code + "/",
        code + "%2F",
        code + "/..",
        code + ";x=1",
        code + "%3Fa=b",
        code + "%23frag",
        code + "%00",
        code + "%0d%0aSet-Cookie:%20a=b",
        code + "%0aLocation:%20https://evil.test/",
        code + "%E5%98%8A%E5%98%8D",
        code + "%20",
        "%20" + code,
        code + "%C2%A0",
        "%00",
        "%0d%0a",
        "..%2f",
        "..%2f..%2fadmin",
        "%2e%2e/%2e%2e/admin",
        "/" + EVIL,
        "//" + EVIL,
        "%2F%2F" + EVIL,
        "%5C%5C" + EVIL,
        "%09/" + EVIL,
        "https://" + EVIL,
        "https:%2F%2F" + EVIL,
        "javascript:alert(1)",
        "\u0455\u04bb\u043e\u0440",
        "%D1%95%D2%BB%D0%BE%D1%80",
        "\uff43\uff4f\uff44\uff45",
        "%EF%BD%83%EF%BD%8F%EF%BD%84%EF%BD%85",
        "A" * LONG,
        code * (LONG // len(code)),
        "%41" * 4000,
        "%",
        "%zz",
        "%ff%fe",
    ]
    queries = [
        "",
        "?sub1=x",
        "?sub1=x&sub1=y&sub1=z",
        "?utm_source=a&utm_source=" + EVIL,
        "?ct_click=forged&ct_click=https://evil.test/",
        "?utm_campaign=https://evil.test/&next=//evil.test",
        "?utm_x=%0d%0aSet-Cookie:%20a=b",
        "?utm_%0d%0a=1",
        "?%00=%00",
        "?" + "&".join(f"p{n}=v" for n in range(2000)),
        "?sub1=" + "x" * LONG,
        "?utm_source=" + "y" * LONG,
        "#@" + EVIL,
        "?@" + EVIL,
    ]
    paths = [(f"/r/{piece}{query}", {}) for piece, query in itertools.product(pieces, queries[:4])]
    paths += [(f"/r/{piece}{query}", {}) for piece, query in itertools.product(pieces[:6], queries[4:])]
    raw = [
        f"/r/{code}\r\nSet-Cookie: a=b",
        f"/r/{code}\nLocation: https://evil.test/",
        f"/r/{code}\r",
        f"/r/{code}\x00",
        f"/r/\x00{code}",
        f"/r/{code}\t",
        f"/r/{code}\x7f",
        "/r/\r\n",
        f"/r/{code} ",
        f"/r/{code}/..",
        "/r/" + "\u0455\u04bb\u043e\u0440".encode().decode("latin-1"),
        "/r/" + "\\" + EVIL,
        "/r" + "//" + EVIL,
        "/r",
        "//r/" + code,
        "/R/" + code,
    ]
    paths += [("/r/placeholder", {"PATH_INFO": path}) for path in raw]
    return paths


def test_crafted_codes_get_clear_answers_and_no_open_redirect(app, redirector, program):
    link = make_link(app, make_affiliate(app), program, deep_link="/products/1?x=y")
    client = redirector()
    paths = crafted_codes(link.code)
    assert len(paths) >= 200

    statuses: Counter[int] = Counter()
    failures = []
    for (path, overrides), method in itertools.product(paths, METHODS):
        response = client.open(path, method=method, environ_base=PEER, environ_overrides=overrides)
        status = response.status_code
        statuses[status] += 1
        path_info = response.request.environ["PATH_INFO"]
        code = path_info[3:] if path_info.startswith("/r/") else None
        if status >= 500:
            failures.append(("5xx", method, short(path_info), response.status))
        if "\r" in path_info or "\n" in path_info:
            if status != 400:
                failures.append(("CR/LF not 400", method, short(path_info), response.status))
        elif CONTROL.search(path_info):
            if status not in (400, 404):
                failures.append(("control character not refused", method, short(path_info), response.status))
        elif method in ("GET", "HEAD") and code != link.code and status != 404:
            failures.append(("unknown code not 404", method, short(path_info), response.status))
        if 300 <= status < 400 and judge(response.headers.get("Location")):
            failures.append(("off-allowlist", method, short(path_info), short(response.headers.get("Location"))))
    print(f"C13 codes: paths={len(paths)} requests={sum(statuses.values())} statuses={dict(statuses)}")
    assert failures == []
    assert statuses[302] > 0, "the real code never redirected, so the corpus tested nothing"


def test_fallback_url_stays_on_the_allowlist(app, redirector):
    admin = make_admin(app)
    program = make_program(
        app, admin, allowed_hosts=(GOOD, "www.example.com"), fallback_url="https://www.example.com/sorry"
    )
    link = make_link(app, make_affiliate(app), program)
    with app.app_context():
        db.session.execute(update(Link).where(Link.id == link.id).values(active=False))
        db.session.commit()
    client = redirector(LINK_CACHE_SECONDS=0)
    response = client.get(f"/r/{link.code}", environ_base=PEER)
    assert response.status_code == 302
    assert response.headers["Location"] == "https://www.example.com/sorry"

    # A fallback stored before validation (or edited in the database) is judged again on every use.
    # The column holds 2,048 characters and PostgreSQL text cannot hold NUL, so those cannot be stored at all.
    sample = dict.fromkeys([*ON_HOST, *crafted_deep_links()[::4]])
    fallbacks = [text for text in sample if len(text) <= 2048 and "\x00" not in text]
    failures = []
    for text in fallbacks:
        with app.app_context():
            db.session.execute(update(Program).where(Program.id == program.id).values(fallback_url=text))
            db.session.commit()
        response = client.get(f"/r/{link.code}", environ_base=PEER)
        if response.status_code >= 500 or (
            300 <= response.status_code < 400 and judge(response.headers.get("Location"))
        ):
            failures.append((short(text), response.status, short(response.headers.get("Location"))))
    print(f"C13 fallbacks: {len(fallbacks)} crafted fallback URLs, failures={len(failures)}")
    assert failures == []


def test_deep_link_follows_the_current_allowlist(app, redirector, program):
    affiliate = make_affiliate(app)
    on_www = make_link(app, affiliate, program, deep_link="https://www.example.com/deal")
    on_shop = make_link(app, affiliate, program, deep_link="/products/7")
    cached = redirector()
    assert ada_url.URL(cached.get(f"/r/{on_www.code}", environ_base=PEER).headers["Location"]).hostname == (
        "www.example.com"
    )

    with app.app_context():
        db.session.execute(update(Program).where(Program.id == program.id).values(allowed_hosts=GOOD))
        db.session.commit()
    fresh = redirector(LINK_CACHE_SECONDS=0)
    response = fresh.get(f"/r/{on_www.code}", environ_base=PEER)
    assert response.status_code == 302
    assert ada_url.URL(response.headers["Location"]).href.startswith(DESTINATION + "?ct_click=")

    # The merchant moves to a new domain and drops the old one: old deep links must not follow the old host.
    with app.app_context():
        db.session.execute(
            update(Program)
            .where(Program.id == program.id)
            .values(destination_url="https://new.example.org/join", allowed_hosts="")
        )
        db.session.commit()
    for code in (on_www.code, on_shop.code):
        response = fresh.get(f"/r/{code}", environ_base=PEER)
        assert response.status_code == 302
        location = ada_url.URL(response.headers["Location"])
        assert (location.protocol, location.hostname, location.pathname) == ("https:", "new.example.org", "/join")


# With ALLOW_HTTP_LOOPBACK_DESTINATIONS (`make run`'s demo shop) a program may send shoppers to plain http on
# 127.0.0.1. The same corpus must then reach nothing more: no other http host, nothing off the allowlist.
SHOP = "http://127.0.0.1:8000/demo-shop/"
LOOPBACK = "127.0.0.1"
LOOPBACK_EXTRA = (
    "http://127.0.0.1:8000/demo-shop/checkout?product=knife",
    "http://127.0.0.1:9999/elsewhere",
    "http://127.1/",
    "http://2130706433/x",
    "http://localhost:8000/",
    "http://LOCALHOST/",
    "http://[::1]:8000/",
    "http://localhost./",
    "http://127.0.0.2/",
    "http://0.0.0.0:8000/",
    "http://127.0.0.1.nip.io/",
    "http://127.0.0.1@evil.test/",
    "http://evil.test@127.0.0.1/",
    "http://127.0.0.1:8000\\@evil.test/",
    "http://127.0.0.1:8000/..%2f..%2f//evil.test",
    "http://127.0.0.1:8000//evil.test/",
    "http:127.0.0.1/",
    "http:/127.0.0.1/",
    "http:\\\\127.0.0.1/",
    "https://127.0.0.1/",
    "ws://127.0.0.1:8000/",
    "/demo-shop/checkout?product=kettle",
    "//127.0.0.1:8000/demo-shop/",
)


def test_with_loopback_http_allowed_crafted_deep_links_still_stay_on_the_allowlist(app, redirector):
    program = make_program(app, make_admin(app), destination_url=SHOP, allowed_hosts=(GOOD, "www.example.com"))
    crafted = [*crafted_deep_links(), *LOOPBACK_EXTRA]
    accepted, crashed = create_links(app, make_affiliate(app), program, crafted, allow_http_loopback=True)
    client = redirector(ALLOW_HTTP_LOOPBACK_DESTINATIONS=True)
    failures, landed_on_loopback = [], 0
    for text, code in accepted.items():
        response = client.get(f"/r/{code}", environ_base=PEER)
        location = response.headers.get("Location")
        if response.status_code != 302 or judge(location, LOOPBACK):
            failures.append((short(text), response.status, short(location)))
        else:
            landed_on_loopback += ada_url.URL(location).protocol == "http:"
    print(
        f"C13 loopback: crafted={len(crafted)} accepted={len(accepted)} http_landings={landed_on_loopback} "
        f"failures={len(failures)} crashes={len(crashed)}"
    )
    assert (failures, crashed) == ([], {})
    assert landed_on_loopback >= 3, "the shop's own pages were reached over http"
    for refused in ("http://localhost:8000/", "http://[::1]:8000/", "http://127.0.0.2/", "http://127.0.0.1@evil.test/"):
        assert refused not in accepted, refused
    shop = client.get(f"/r/{accepted['/demo-shop/checkout?product=kettle']}", environ_base=PEER).headers["Location"]
    assert shop.startswith("http://127.0.0.1:8000/demo-shop/checkout?product=kettle&ct_click=")


def test_loopback_destinations_redirect_only_with_the_setting(app, redirector):
    """A loopback http destination stored while the setting was on is refused as before once it is off."""
    program = make_program(app, make_admin(app), destination_url=SHOP, allowed_hosts=(), fallback_url=SHOP)
    link = make_link(app, make_affiliate(app), program)
    paused = make_link(app, make_affiliate(app), program)
    with app.app_context():
        db.session.execute(update(Link).where(Link.id == paused.id).values(active=False))
        db.session.commit()
    on, off = redirector(ALLOW_HTTP_LOOPBACK_DESTINATIONS=True), redirector()
    assert on.get(f"/r/{link.code}", environ_base=PEER).headers["Location"].startswith(SHOP + "?ct_click=")
    assert on.get(f"/r/{paused.code}", environ_base=PEER).headers["Location"] == SHOP
    for code in (link.code, paused.code):
        response = off.get(f"/r/{code}", environ_base=PEER)
        assert response.status_code == 404 and "Location" not in response.headers
