"""No password is hashed or checked while a transaction is open.

Argon2 is slow on purpose; on SQLite a write transaction holds the database's one write lock, so a
hash inside one stops every click and conversion for its duration. The hasher here is the real one,
with a probe run just before each hash or check: a second connection to the same database must be
able to start a write at that moment (SQLite: the writers' queue and BEGIN IMMEDIATE without waiting;
PostgreSQL: no session of this database sits idle inside a transaction, and the user's row can be
written without waiting for a lock).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from tests.factories import PASSWORD, Auth, make_affiliate, make_finance

NEW_PASSWORD = "an entirely new passphrase"


class ProbingHasher(PasswordHasher):
    """The app's own Argon2 hasher, noting before each hash or check whether another connection could write."""

    def __init__(self, probe: Callable[[], str | None], template: PasswordHasher) -> None:
        super().__init__(
            time_cost=template.time_cost, memory_cost=template.memory_cost, parallelism=template.parallelism
        )
        self.probe = probe
        self.findings: list[tuple[str, str | None]] = []

    def hash(self, password, *, salt=None) -> str:
        self.findings.append(("hash", self.probe()))
        return super().hash(password, salt=salt)

    def verify(self, hash, password):
        self.findings.append(("verify", self.probe()))
        return super().verify(hash, password)


def sqlite_probe(path: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        fd = os.open(f"{path}.writers", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return "another connection holds the writers' queue"
        finally:
            os.close(fd)
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            return f"BEGIN IMMEDIATE from a second connection: {error}"
        finally:
            connection.close()
        return None

    return probe


def postgres_probe(database_uri: str):
    engine = create_engine(database_uri, poolclass=NullPool)

    def probe() -> str | None:
        with engine.connect() as connection:
            open_transactions = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
            if open_transactions:
                return f"{open_transactions} session(s) idle inside a transaction"
            connection.execute(text("SET LOCAL lock_timeout = '200ms'"))
            try:
                connection.execute(text("UPDATE users SET name = name"))
            except OperationalError as error:  # lock_timeout: a transaction holds the row
                return f"writing users from a second connection: {type(error).__name__}"
            finally:
                connection.rollback()
        return None

    return probe, engine


@pytest.fixture
def probed(app, database_uri):
    """Returns a function that swaps the app's hasher for the probing one (after set-up has hashed what it needs)."""
    url = make_url(database_uri)
    engine = None
    if url.get_backend_name() == "sqlite":
        probe = sqlite_probe(url.database)
    else:
        probe, engine = postgres_probe(database_uri)

    def install() -> ProbingHasher:
        hasher = ProbingHasher(probe, app.extensions["clicktrail.hasher"])
        app.extensions["clicktrail.hasher"] = hasher
        return hasher

    yield install
    if engine is not None:
        engine.dispose()


def sign_in_right(app, install):
    alice = make_affiliate(app)
    hasher = install()
    assert Auth(app.test_client()).login(alice.email).status_code == 302
    return hasher


def sign_in_wrong(app, install):
    alice = make_affiliate(app)
    hasher = install()
    assert Auth(app.test_client()).login(alice.email, "not the password at all").status_code == 200
    return hasher


def reauthenticate(app, install):
    client = app.test_client()
    finance = make_finance(app)
    Auth(client).login(finance.email)
    hasher = install()
    assert Auth(client).reauth(finance.email, "/account/").status_code == 302
    return hasher


def change_password(app, install):
    client = app.test_client()
    Auth(client).login(make_affiliate(app).email)
    hasher = install()
    data = {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert Auth(client).post("/account/password", data).status_code == 302
    return hasher


def apply(app, install):
    hasher = install()
    data = {"name": "Pat", "email": "pat@example.com", "password": PASSWORD, "confirm": PASSWORD, "promotion": "Blog"}
    assert Auth(app.test_client()).post("/apply", data).status_code == 302
    return hasher


def sign_up(app, install):
    hasher = install()
    data = {"name": "Fran", "email": "fran@example.com", "password": PASSWORD}
    assert Auth(app.test_client()).post("/signup", data).status_code == 302
    return hasher


def create_user_command(app, install):
    hasher = install()
    result = app.test_cli_runner().invoke(
        args=["create-user", "--email", "ops@example.com", "--role", "admin"], env={"CLICKTRAIL_PASSWORD": PASSWORD}
    )
    assert result.exit_code == 0, result.output
    return hasher


@pytest.mark.parametrize(
    "action", [sign_in_right, sign_in_wrong, reauthenticate, change_password, apply, sign_up, create_user_command]
)
def test_no_password_is_hashed_or_checked_while_a_transaction_is_open(app, probed, action):
    hasher = action(app, probed)
    assert hasher.findings, "the action hashed or checked a password"
    assert [finding for finding in hasher.findings if finding[1] is not None] == []
