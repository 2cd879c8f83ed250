"""Fixtures of the browser tests on `make run`'s demo: the demo served as `make run` serves it, and Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.browser.test_loop import CHROMIUM, sync_api
from tests.conftest import build_app, dispose
from tests.servers import Server, free_port


@contextmanager
def demo_server(database_uri: str, tmp_path, host: str = "127.0.0.1", **environment: str) -> Iterator[Server]:
    """A database seeded as `make run` seeds it, served as `make run` serves it (plus ``environment``).

    ``host`` names the server in PUBLIC_BASE_URL, for seeding and serving alike (it listens on 127.0.0.1
    either way): "localhost" for security keys, which refuse an IP address as the site's name.
    """
    port = free_port()
    base = f"http://{host}:{port}"
    seeder = build_app(
        database_uri, INSTANCE_PATH=str(tmp_path), PUBLIC_BASE_URL=base, ALLOW_HTTP_LOOPBACK_DESTINATIONS=True
    )
    seeded = seeder.test_cli_runner().invoke(args=["seed-demo", "--if-empty"])
    assert seeded.exit_code == 0, seeded.output
    dispose(seeder)
    server = Server(
        database_uri,
        tmp_path,
        workers=1,
        interface="wsgi",
        target="wsgi:app",
        port=port,
        ALLOW_HTTP_LOOPBACK_DESTINATIONS="1",
        PUBLIC_BASE_URL=base,
        **environment,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()
