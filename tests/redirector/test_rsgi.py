"""The RSGI front door: the same answers as WSGI, with clicks stored in shared batches."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from affiliate.extensions import db
from affiliate.models import Link
from redirector import create_redirector, enrich
from redirector.app import rsgi_environ
from redirector.datasync import AioSync, ThreadSync, open_data_sync
from redirector.engines import make_engine
from redirector.recorder import GROUP_MIN, GROUP_WAIT_SECONDS
from tests.factories import make_link
from tests.redirector.helpers import CHROME, all_clicks, live, setup_link


class Headers:
    """Stands in for granian's RSGIHeaders (items() as received, names in lower case)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


class Scope:
    proto = "http"

    def __init__(
        self,
        path: str,
        *,
        method: str = "GET",
        query: str = "",
        client: str = "203.0.113.9:50000",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
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
        headers=[
            ("user-agent", CHROME),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("cookie", "a=1"),
            ("cookie", "ct_vid=zz"),
            ("x-unrelated", "ignored"),
        ],
    )
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


def use_threads(redirector) -> None:
    """Sync the click log in the appender thread, as where Linux AIO is missing."""
    redirector.recorder.open_data_sync = lambda loop: ThreadSync(loop, redirector.recorder.appender)


@pytest.mark.parametrize("sync", ["aio", "thread"])
def test_rsgi_concurrent_clicks_share_appends(app, sync):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    if sync == "thread":
        use_threads(redirector)
    elif not aio_available():
        pytest.skip("Linux AIO is not available on this machine")
    writes, kinds = [], set()
    write = redirector.recorder.log.write

    def counted(records):
        writes.append(len(records))
        kinds.update(type(queue.datasync).__name__ for queue in redirector.recorder._loop_queues.values())
        return write(records)

    redirector.recorder.log.write = counted

    async def many() -> list[Protocol]:
        protocols = [Protocol() for _ in range(50)]
        await asyncio.gather(*(redirector.__rsgi__(Scope(f"/r/{s.link.code}"), p) for p in protocols))
        return protocols

    protocols = asyncio.run(many())
    assert [p.answers[0][0] for p in protocols] == [302] * 50
    assert sum(writes) == 50
    assert len(writes) < 50, "concurrent clicks were appended together"
    assert kinds == {"AioSync" if sync == "aio" else "ThreadSync"}
    handed_out = {parse_qs(urlsplit(dict(p.answers[0][1])["Location"]).query)["ct_click"][0] for p in protocols}
    assert {click.click_id for click in all_clicks(app)} == handed_out


class StuckSync:
    """A disk whose flush does not come back (or fails): the syncs it is given never finish, or fail."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.descriptors: list[int] = []

    def submit(self, fd, done) -> None:
        self.descriptors.append(fd)
        if self.error is not None:
            done(self.error)

    def close(self) -> None:
        """Nothing to release: the test closes the descriptors it was given."""


class RefusingSync(StuckSync):
    """A kernel that refuses AIO fdatasync for this file (as one without it for a file system would)."""

    asked = 0

    def submit(self, fd, done) -> None:
        self.asked += 1
        raise OSError(errno.EINVAL, "Invalid argument")


def aio_available() -> bool:
    loop = asyncio.new_event_loop()
    try:
        datasync = open_data_sync(loop, None)
        datasync.close()
        return isinstance(datasync, AioSync)
    finally:
        loop.close()


def test_rsgi_hung_click_log_still_redirects_without_a_click_id(app):
    s = setup_link(app)
    redirector = live(create_redirector({**app.config, "CLICK_WAIT_SECONDS": 0.2}))
    stuck = StuckSync()
    redirector.recorder.open_data_sync = lambda loop: stuck
    status, headers, _ = call(redirector, Scope(f"/r/{s.link.code}"))
    again, second, _ = call(redirector, Scope(f"/r/{s.link.code}"))
    for code, answer in ((status, headers), (again, second)):
        assert code == 302
        assert "ct_click" not in answer["Location"][0]
        assert not any(cookie.startswith(f"ct_{s.program.id}=") for cookie in answer.get("Set-Cookie", []))
    assert len(stuck.descriptors) == 2
    for fd in stuck.descriptors:  # the disk comes back
        os.fdatasync(fd)
        os.close(fd)
    assert len(all_clicks(app)) == 2, "clicks written before the disk hung are still stored"


def test_rsgi_failed_sync_redirects_without_a_click_id(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    redirector.recorder.open_data_sync = lambda loop: StuckSync(OSError(errno.EIO, "I/O error"))
    status, headers, _ = call(redirector, Scope(f"/r/{s.link.code}"))
    assert status == 302
    assert "ct_click" not in headers["Location"][0]
    assert not any(cookie.startswith(f"ct_{s.program.id}=") for cookie in headers.get("Set-Cookie", []))
    # Written before its sync failed, the click is still stored (as when a crash follows a write), but the
    # shopper was never handed its id.
    assert len(all_clicks(app)) == 1


def test_rsgi_falls_back_to_a_thread_when_the_kernel_refuses_aio(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    refusing = RefusingSync()
    redirector.recorder.open_data_sync = lambda loop: refusing
    first = call(redirector, Scope(f"/r/{s.link.code}"))
    assert refusing.asked, "the refusing sync was asked"
    (queue,) = redirector.recorder._loop_queues.values()
    assert isinstance(queue.datasync, ThreadSync)
    assert first[0] == 302
    click_id = parse_qs(urlsplit(first[1]["Location"][0]).query)["ct_click"][0]
    assert [click.click_id for click in all_clicks(app)] == [click_id]


def test_aio_sync_reports_success_and_failure_on_the_loop(tmp_path):
    loop = asyncio.new_event_loop()
    datasync = open_data_sync(loop, None)
    if not isinstance(datasync, AioSync):
        pytest.skip("Linux AIO is not available on this machine")
    fd = os.open(tmp_path / "segment", os.O_RDWR | os.O_CREAT, 0o600)
    results = []
    try:

        async def sync(descriptor: int) -> None:
            finished = loop.create_future()
            datasync.submit(descriptor, finished.set_result)
            results.append(await asyncio.wait_for(finished, 10))

        os.pwrite(fd, b"click\n", 0)
        loop.run_until_complete(sync(fd))
        assert results == [None]
        with pytest.raises(OSError) as refused:
            datasync.submit(10_000, results.append)  # not an open file
        assert refused.value.errno == errno.EBADF
    finally:
        datasync.close()
        loop.close()
        os.close(fd)


def test_rsgi_bad_requests_get_the_same_clear_answers(app):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    assert call(redirector, Scope("/r/\r\nx"))[0] == 400
    assert call(redirector, Scope("/r/nope1234"))[0] == 404
    assert call(redirector, Scope(f"/r/{s.link.code}", method="POST"))[0] == 405
    assert call(redirector, Scope(f"/r/{s.link.code}", method="OPTIONS"))[0] == 204
    assert all_clicks(app) == []


def test_a_started_worker_answers_its_links_without_asking_the_database(app):
    s = setup_link(app)
    paused = make_link(app, s.affiliate, s.program)
    with app.app_context():
        db.session.get(Link, paused.id).active = False
        db.session.commit()
    redirector = live(create_redirector(app.config))
    redirector.__rsgi_init__(asyncio.new_event_loop())
    asked = []
    load = redirector.links._load
    redirector.links._load = lambda code: asked.append(code) or load(code)
    status, headers, _ = call(redirector, Scope(f"/r/{s.link.code}"))
    assert status == 302 and "ct_click=" in headers["Location"][0]
    assert asked == [], "the link was preloaded when the worker started"
    assert call(redirector, Scope(f"/r/{paused.code}"))[0] == 404
    assert asked == [paused.code], "links that do not redirect are looked up when clicked"
    assert len(all_clicks(app)) == 1


def test_a_worker_starts_when_links_cannot_be_preloaded(app, tmp_path):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    redirector.links._engine_factory = lambda: make_engine(f"sqlite:///{tmp_path}/no-such-dir/x.db", immediate=False)
    redirector.__rsgi_init__(asyncio.new_event_loop())  # logs a warning, does not raise
    assert redirector.links._entries == {}
    redirector.links._engine_factory = redirector._reader_engine
    redirector.links._engine = None
    assert call(redirector, Scope(f"/r/{s.link.code}"))[0] == 302
    assert len(all_clicks(app)) == 1


def test_user_agents_and_geo_are_resolved_off_the_shoppers_path(app, monkeypatch):
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    threads = []
    for name in ("parse_user_agent", "add_device_and_geo"):
        original = getattr(enrich, name)
        monkeypatch.setattr(enrich, name, lambda *args, f=original: threads.append(threading.get_ident()) or f(*args))
    status, _, _ = call(
        redirector, Scope(f"/r/{s.link.code}", client="81.2.69.160:4000", headers=[("user-agent", CHROME)])
    )
    assert status == 302
    assert threading.get_ident() not in threads, "the shopper waited for the user agent and geo lookups"
    (click,) = all_clicks(app)  # the ingester completes the click
    assert (click.browser, click.os, click.device_type, click.is_bot) == ("Chrome", "Windows", "desktop", False)
    assert click.country == "GB"


class ManualSync(StuckSync):
    """A disk whose syncs finish when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def submit(self, fd, done) -> None:
        self.pending.append((fd, done))

    def finish(self) -> None:
        ((fd, done),) = self.pending
        self.pending.clear()
        os.fdatasync(fd)
        done(None)


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it: timers fire when the test says they are due,
    however slowly a busy machine runs the test between two steps."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


async def turns(count: int = 3) -> None:
    """Let the loop run a few rounds (a timer that came due runs after what was ready before it)."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_rsgi_a_small_batch_waits_briefly_for_company(app):
    """Group commit: after a sync, fewer than GROUP_MIN waiting clicks wait up to GROUP_WAIT_SECONDS for more."""
    s = setup_link(app)
    redirector = live(create_redirector(app.config))
    manual = ManualSync()
    redirector.recorder.open_data_sync = lambda loop: manual
    writes = []
    write = redirector.recorder.log.write
    redirector.recorder.log.write = lambda records: writes.append(len(records)) or write(records)
    loop = ManualClockLoop()

    async def clicks(count: int) -> list:
        return [
            asyncio.ensure_future(redirector.__rsgi__(Scope(f"/r/{s.link.code}"), Protocol())) for _ in range(count)
        ]

    async def story() -> None:
        first = await clicks(1)
        await turns()
        assert writes == [1], "a click arriving to an idle log is written at once"
        later = await clicks(3)
        await turns()
        manual.finish()
        await turns()
        assert writes == [1], "three clicks wait for company"
        loop.now += GROUP_WAIT_SECONDS * 0.9
        await turns()
        assert writes == [1], "still within the wait"
        loop.now += GROUP_WAIT_SECONDS * 0.2
        await turns()
        assert writes == [1, 3], "but not for long"
        crowd = await clicks(GROUP_MIN - 1)
        await turns()
        manual.finish()
        await turns()
        assert writes == [1, 3], "fewer than GROUP_MIN: gathering"
        crowd += await clicks(1)
        await turns()
        assert writes == [1, 3, GROUP_MIN], "a full batch goes at once"
        manual.finish()
        await asyncio.gather(*first, *later, *crowd)

    try:
        loop.run_until_complete(story())
    finally:
        loop.close()
    assert len(all_clicks(app)) == 1 + 3 + GROUP_MIN
