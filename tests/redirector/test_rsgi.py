"""The RSGI front door: the same answers as WSGI, with clicks stored in shared batches."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import parse_qs, urlsplit

from redirector import create_redirector
from redirector.app import rsgi_environ
from tests.redirector.helpers import CHROME, all_clicks, live, setup_link


class Headers:
    """Stands in for granian's RSGIHeaders (get_all over lowercase names)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


class Scope:
    proto = "http"

    def __init__(self, path: str, *, method: str = "GET", query: str = "", client: str = "203.0.113.9:50000",
                 headers: list[tuple[str, str]] | None = None) -> None:  # fmt: skip
        self.method = method
        self.path = path
        self.query_string = query
        self.client = client
        self.headers = Headers(headers or [])


class Protocol:
    def __init__(self) -> None:
        self.answers: list[tuple[int, list, bytes]] = []

    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        self.answers.append((status, headers, body))


def call(redirector, scope: Scope) -> tuple[int, dict[str, list[str]], bytes]:
    protocol = Protocol()
    asyncio.run(redirector.__rsgi__(scope, protocol))
    ((status, headers, body),) = protocol.answers
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return status, grouped, body


def test_environ_from_an_rsgi_scope():
    scope = Scope(
        "/r/abcd",
        query="sub1=x",
        client="[2001:db8::7]:443",
        headers=[("user-agent", CHROME), ("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "198.51.100.2"),
                 ("cookie", "a=1"), ("cookie", "ct_vid=zz"), ("x-unrelated", "ignored")],
    )  # fmt: skip
    environ = rsgi_environ(scope)
    assert environ["REMOTE_ADDR"] == "2001:db8::7"
    assert environ["QUERY_STRING"] == "sub1=x"
    assert environ["HTTP_USER_AGENT"] == CHROME
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 198.51.100.2"
    assert environ["HTTP_COOKIE"] == "a=1; ct_vid=zz"
    assert "HTTP_X_UNRELATED" not in environ


def test_rsgi_click_is_stored_before_its_redirect(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    status, headers, _ = call(
        redirector, Scope(f"/r/{s.link.code}", query="sub2=mail", headers=[("user-agent", CHROME)])
    )
    assert status == 302
    location = headers["Location"][0]
    click_id = parse_qs(urlsplit(location).query)["ct_click"][0]
    assert headers["Cache-Control"] == ["no-store"]
    assert any(cookie.startswith(f"ct_{s.program.id}={click_id};") for cookie in headers["Set-Cookie"])
    (click,) = all_clicks(app)
    assert click.click_id == click_id
    assert click.sub2 == "mail"
    assert click.ip == "203.0.113.9"
    assert click.browser == "Chrome"


def test_rsgi_concurrent_clicks_share_appends(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    appends = []
    append = redirector.recorder.log.append
    redirector.recorder.log.append = lambda records: appends.append(len(list(records))) or append([])

    async def many() -> list[Protocol]:
        protocols = [Protocol() for _ in range(50)]
        await asyncio.gather(*(redirector.__rsgi__(Scope(f"/r/{s.link.code}"), p) for p in protocols))
        return protocols

    protocols = asyncio.run(many())
    assert [p.answers[0][0] for p in protocols] == [302] * 50
    assert sum(appends) == 50
    assert len(appends) < 50, "concurrent clicks were appended together"


def test_rsgi_hung_click_log_still_redirects_without_a_click_id(app):
    s = setup_link(app)
    redirector = live(create_redirector({**app.config, "CLICK_WAIT_SECONDS": 0.2}))
    release = threading.Event()
    append = redirector.recorder.log.append

    def hung(records):
        release.wait(10)
        return append(records)

    redirector.recorder.log.append = hung
    try:
        status, headers, _ = call(redirector, Scope(f"/r/{s.link.code}"))
        again, second, _ = call(redirector, Scope(f"/r/{s.link.code}"))
    finally:
        release.set()
    for code, answer in ((status, headers), (again, second)):
        assert code == 302
        assert "ct_click" not in answer["Location"][0]
        assert not any(cookie.startswith(f"ct_{s.program.id}=") for cookie in answer.get("Set-Cookie", []))
    redirector.recorder._appender.submit(lambda: None).result(timeout=10)  # the late appends are done
    assert len(all_clicks(app)) == 2, "clicks written once the disk came back are still stored"


def test_rsgi_bad_requests_get_the_same_clear_answers(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    assert call(redirector, Scope("/r/\r\nx"))[0] == 400
    assert call(redirector, Scope("/r/nope1234"))[0] == 404
    assert call(redirector, Scope(f"/r/{s.link.code}", method="POST"))[0] == 405
    assert call(redirector, Scope(f"/r/{s.link.code}", method="OPTIONS"))[0] == 204
    assert all_clicks(app) == []
