"""Fixtures: a fresh migrated database per test, on SQLite or the PostgreSQL server given.

Set CLICKTRAIL_TEST_DATABASE_URL to a PostgreSQL URL (any database on the server; the
suite creates and drops its own) to run everything on PostgreSQL instead of SQLite.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from affiliate import create_app
from affiliate.extensions import db
from config import TestingConfig, normalise_database_url
from redirector import Redirector, create_redirector
from tests.factories import Auth, Visitor
from tests.redirector.helpers import live

SERVER_URL = normalise_database_url(os.environ.get("CLICKTRAIL_TEST_DATABASE_URL"))
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_counter = itertools.count()


def pytest_report_header(config) -> str:
    backend = make_url(SERVER_URL).render_as_string(hide_password=True) if SERVER_URL else "SQLite (temp files)"
    return f"clicktrail database: {backend}"


# Every throwaway instance folder of this test process lives under one folder, removed when the process ends:
# each holds a click log whose segments are written full of zeros, megabytes a test.
INSTANCES = Path(tempfile.mkdtemp(prefix=f"clicktrail-test-{WORKER}-"))
atexit.register(shutil.rmtree, INSTANCES, ignore_errors=True)


def build_app(database_uri: str, **overrides) -> Flask:
    """A portal app on ``database_uri`` with a throwaway instance folder (removed by ``dispose``)."""
    overrides.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="instance-", dir=INSTANCES))
    return create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_uri, **overrides})


def dispose(app: Flask) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()
    if Path(app.instance_path).parent == INSTANCES:
        shutil.rmtree(app.instance_path, ignore_errors=True)


class PostgresServer:
    """Creates databases on the test server from a migrated template."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")

    def database_url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
        return self.database_url(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    if not SERVER_URL:
        yield None
        return
    server = PostgresServer(SERVER_URL)
    yield server
    server.admin.dispose()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory, postgres) -> Iterator[str]:
    """Migrate an empty database once per worker; each test starts from a copy of it."""
    if postgres is None:
        path = tmp_path_factory.mktemp("template") / "clicktrail.db"
        uri = f"sqlite:///{path}"
    else:
        name = f"ct_template_{WORKER}_{os.getpid()}"
        uri = postgres.create(name)
    app = build_app(uri)
    with app.app_context():
        flask_migrate.upgrade()
    dispose(app)
    yield uri
    if postgres is not None:
        postgres.drop(name)


@pytest.fixture
def database_uri(template_database, postgres, tmp_path) -> Iterator[str]:
    if postgres is None:
        target = tmp_path / "clicktrail.db"
        shutil.copyfile(make_url(template_database).database, target)
        yield f"sqlite:///{target}"
        return
    name = f"ct_test_{WORKER}_{os.getpid()}_{next(_counter)}"
    yield postgres.create(name, template=make_url(template_database).database)
    postgres.drop(name)


@pytest.fixture
def app(database_uri) -> Iterator[Flask]:
    app = build_app(database_uri)
    yield app
    dispose(app)


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client) -> Auth:
    return Auth(client)


@pytest.fixture
def redirector(app) -> Iterator[Redirector]:
    """The click redirector on the same database and settings as ``app``."""
    red = live(create_redirector(app.config))
    yield red
    red.close()


@pytest.fixture
def shopper(redirector) -> Visitor:
    """A browser on the redirector, from a public address."""
    return Visitor(redirector)
