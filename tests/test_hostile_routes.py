"""Every route of the portal, as every role, with hostile ids, pages, strings and dates: never a server error.

Ids beyond 64 bits, negative or odd digits in the path, the query and form fields; pages large enough to overflow
OFFSET; NUL bytes (which PostgreSQL refuses in text), stray surrogate bytes, and dates at the ends of the calendar.
"""

from __future__ import annotations

import io
import re
from urllib.parse import quote

import pytest
from flask_wtf import FlaskForm
from wtforms.fields.core import UnboundField

from affiliate.services.fraud import DEFAULT_RULES
from tests.factories import (
    Auth,
    Visitor,
    csrf_token,
    make_admin,
    make_affiliate,
    make_finance,
    make_link,
    make_program,
    make_user,
)

HUGE = "99999999999999999999"
ROLES = ("anonymous", "affiliate", "member", "finance", "admin")
# Stand-ins for path variables that are not ids.
FIXED = {"dimension": "day", "export_format": "paypal", "filename": "css/app.css"}
# 2**31 and 2**63 - 1: past a 32-bit key (PostgreSQL refuses it for an INTEGER column) and the largest 64-bit one.
PATH_IDS = (HUGE, str(2**63), str(2**63 - 1), str(2**31), "-1")
QUERY_KEYS = ("page", "per_page", "program", "affiliate", "year", "ref", "q", "subject", "status", "type", "rule",
              "start", "end", "product", "ct_click", "next", "attributed", "conversion_id", "user_id")  # fmt: skip
QUERY_VALUES = (
    HUGE,
    str(2**63),
    str(2**63 - 1),
    str(2**31),
    "-1",
    "²",
    "a%00b",
    "%ED%A0%80",
    "0001-01-01",
    "9999-12-31",
)
FORM_VALUES = (
    HUGE,
    str(2**63),
    str(2**63 - 1),
    str(2**31),
    "-1",
    "²",
    "a\x00b",
    "\ud800",
    "0001-01-01T00:00",
    "9999-12-31",
)


def _form_field_names() -> set[str]:
    """Every field name of every form the portal defines, and the raw fields other views read (bulk decisions,
    groups, enrollments, payout acknowledgements, each fraud rule's action, weight and thresholds)."""

    names = {
        "ids",
        "decision",
        "note",
        "action",
        "group",
        "affiliate",
        "reason",
        "name",
        "acknowledge_changes",
        "changed",
    }
    for rule, setting in DEFAULT_RULES.items():
        names.update(f"{rule}.{field}" for field in ("action", "weight", *setting.settings))
    pending = list(FlaskForm.__subclasses__())
    while pending:
        form = pending.pop()
        pending.extend(form.__subclasses__())
        for klass in form.__mro__:
            names.update(name for name, value in vars(klass).items() if isinstance(value, UnboundField))
    return names


@pytest.fixture
def clients(app):
    admin = make_admin(app)
    users = {
        "affiliate": make_affiliate(app),
        "member": make_user(app, role="member"),
        "finance": make_finance(app),
        "admin": admin,
    }
    make_link(app, users["affiliate"], make_program(app, admin))
    result = {}
    for role in ROLES:
        client = app.test_client()
        if role != "anonymous":
            assert Auth(client).login(users[role].email).status_code == 302
        result[role] = client
    return result


def _paths(rule) -> list[str]:
    """The rule's path with each hostile id in every id variable at once."""
    if not any(name not in FIXED for name in rule.arguments):
        return [_fill(rule.rule, {})]
    return [_fill(rule.rule, {name: value for name in rule.arguments if name not in FIXED}) for value in PATH_IDS]


def _fill(pattern: str, ids: dict[str, str]) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([a-z_]+)>", lambda m: ids.get(m.group(1)) or FIXED[m.group(1)], pattern)


def _queries() -> list[str]:
    return ["&".join(f"{key}={value}" for key in QUERY_KEYS) for value in QUERY_VALUES]


def _form_body(fields: set[str], value: str, token: str) -> str:
    """Every field set to ``value``, encoded as a browser would (a lone surrogate as its raw UTF-8 bytes)."""
    pairs = [(name, value) for name in sorted(fields)] + [("ids", value), ("ids", "1"), ("csrf_token", token)]
    return "&".join(f"{quote(name)}={quote(text, errors='surrogatepass')}" for name, text in pairs)


def _odd_shapes(fields: set[str], token: str) -> dict[str, object]:
    """Bodies a browser would not send: every field a file part; every field left out; field names that look like
    a list's rows but are not (a Unicode digit, thousands of digits)."""
    rows = {f"{name}-{index}-{part}": "1" for name in ("tiers", "rows") for index in ("²", "٣", "9" * 5000)
            for part in ("threshold", "percent")}  # fmt: skip
    return {
        "file parts": lambda: {
            "data": {name: (io.BytesIO(b"text"), "note.txt") for name in sorted(fields)} | {"csrf_token": token},
            "content_type": "multipart/form-data",
        },
        "no fields": lambda: {"data": {"csrf_token": token}},
        "row names": lambda: {"data": rows | {"csrf_token": token}},
    }


def _server_error(send, url: str, **kwargs) -> str | None:
    """What went wrong, if the request ended in a server error (the testing app raises it instead of a 500)."""
    try:
        response = send(url, **kwargs)
    except Exception as error:
        return f"{type(error).__name__}: {str(error)[:120]}"
    return f"status {response.status_code}" if response.status_code >= 500 else None


def _routes(app):
    # Signing out last, so that every other route is tried while signed in.
    rules = [rule for rule in app.url_map.iter_rules() if not rule.endpoint.startswith("api.")]
    return sorted(rules, key=lambda rule: (rule.endpoint == "auth.logout", rule.rule))


@pytest.mark.parametrize("role", ROLES)
def test_no_route_answers_a_server_error_to_hostile_values(app, clients, role):
    client = clients[role]
    token = csrf_token(client.get("/login" if role == "anonymous" else "/account/").get_data(as_text=True))
    fields = _form_field_names()
    failures = []
    for rule in _routes(app):
        for path in _paths(rule):
            if "GET" in rule.methods:
                for query in _queries():
                    failure = _server_error(client.get, f"{path}?{query}")
                    if failure:
                        failures.append(("GET", path, query, failure))
            if "POST" in rule.methods:
                for value in FORM_VALUES:
                    body = _form_body(fields, value, token)
                    failure = _server_error(
                        client.post,
                        f"{path}?{_queries()[0]}",
                        data=body,
                        content_type="application/x-www-form-urlencoded",
                    )
                    if failure:
                        failures.append(("POST", path, repr(value), failure))
                for shape, send in _odd_shapes(fields, token).items():
                    failure = _server_error(client.post, path, **send())
                    if failure:
                        failures.append(("POST", path, shape, failure))
    # One example per route and kind of failure, so that a regression reads in a few lines.
    examples = {
        (method, path.split("?")[0], failure.split(":")[0]): (method, path, value, failure)
        for method, path, value, failure in failures
    }
    assert not examples, "\n".join(map(repr, examples.values()))


def test_forms_refuse_nul_with_a_form_error_and_change_nothing(app):
    affiliate = make_affiliate(app, name="Original Name")
    client = app.test_client()
    auth = Auth(client)
    assert auth.login(affiliate.email).status_code == 302
    response = auth.post("/account/", {"name": "Evil\x00Name", "promotion": "fine"})
    assert response.status_code == 200
    assert "Name must not contain NUL bytes" in response.get_data(as_text=True)
    assert "Original Name" in client.get("/account/").get_data(as_text=True)
    # Signing in with one is a form error too, and counts no attempt against anybody.
    anonymous = app.test_client()
    response = Auth(anonymous).post("/login", {"email": "a\x00@example.com", "password": "x\x00"})
    assert response.status_code == 200
    assert "must not contain NUL bytes" in response.get_data(as_text=True)


def test_query_strings_with_nul_are_400_and_huge_ids_404(app, clients):
    admin = clients["admin"]
    assert admin.get("/admin/affiliates/?q=a%00b").status_code == 400
    assert admin.get(f"/admin/affiliates/{HUGE}").status_code == 404
    assert admin.get(f"/admin/conversions/?program={HUGE}&page={HUGE}").status_code == 200
    assert clients["anonymous"].get(f"/signup?program={HUGE}").status_code == 200


# Host headers no URL can carry (empty labels, an over-long label, a broken IPv6 literal, a space) or that are not
# ours: Werkzeug refuses the first kind with BadHost, and the error page for it must not need links to be built.
HOSTILE_HOSTS = ("", "..", "a..b", "x" * 300, "[::1", "a b", "ünïcode.example", "host:99999", "%00", "evil.example")


def test_no_route_answers_a_server_error_to_a_hostile_host_header(app, redirector):
    admin = make_admin(app)
    link = make_link(app, make_affiliate(app), make_program(app, admin))
    client = app.test_client()
    errors = []
    for rule in _routes(app):
        for method in sorted(rule.methods & {"GET", "POST"}):
            for host in HOSTILE_HOSTS:
                problem = _server_error(client.open, _paths(rule)[0], method=method, headers={"Host": host})
                if problem:
                    errors.append(f"{method} {rule.rule} Host {host!r}: {problem}")
    api = app.test_client()
    for host in HOSTILE_HOSTS:
        for problem in (
            _server_error(api.post, "/api/v1/conversions", data=b"{}", headers={"Host": host}),
            _server_error(api.get, "/api/v1/plans", headers={"Host": host}),
        ):
            if problem:
                errors.append(f"API Host {host!r}: {problem}")
        click = Visitor(redirector, "198.51.100.9").get(f"/r/{link.code}", headers={"Host": host})
        if click.status_code != 302:
            errors.append(f"redirector Host {host!r}: status {click.status_code}")
    assert not errors, "\n".join(errors[:30])
    bad = client.get("/login", headers={"Host": ".."})
    assert bad.status_code == 400 and b"could not be understood" in bad.data


def test_links_people_copy_are_under_the_public_address_whatever_the_host_header_says(app):
    """A portal behind a proxy that passes its own Host, or a forged one, must not hand out links to that host."""
    admin = make_admin(app)
    affiliate, member = make_affiliate(app), make_user(app, role="member")
    program = make_program(app, admin)
    public = app.config["PUBLIC_BASE_URL"].rstrip("/")
    pages = {
        affiliate: ["/partner/recruits"],
        member: ["/member/"],
        admin: [f"/admin/programs/{program.id}/stripe", f"/admin/programs/{program.id}/keys/", "/examples/landing"],
    }
    for user, paths in pages.items():
        client = app.test_client()
        assert Auth(client).login(user.email).status_code == 302
        name = app.config["SESSION_COOKIE_NAME"]
        client.set_cookie(name, client.get_cookie(name).value, domain="evil.example")  # as a browser at that host
        for path in paths:
            page = client.get(path, headers={"Host": "evil.example"})
            assert page.status_code == 200, path
            text = page.get_data(as_text=True)
            assert "evil.example" not in text and f"{public}/" in text, path
