"""The schema: one migration history that builds exactly the models, with durable settings."""

import fcntl
import os
import sqlite3
import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import request
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from affiliate.database import reading
from affiliate.extensions import db
from affiliate.models import Program, Role, User, UserStatus, utcnow
from tests.factories import make_admin, make_affiliate, make_program


def test_one_migration_head(app):
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        assert len(script.get_heads()) == 1


def test_upgraded_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _not_a_partition})
        differences = compare_metadata(context, db.metadata)
        if conn.dialect.name == "postgresql":
            differences = [d for d in differences if not _postgresql_only(d)]
        assert differences == []


def _not_a_partition(name, kind, parents) -> bool:
    """The month partitions of clicks are the clicks table's storage, not tables of their own."""
    return not (kind == "table" and name.startswith("clicks_p"))


def _postgresql_only(difference) -> bool:
    """The differences PostgreSQL's clicks table is meant to have: the click id unique with clicked_at, and no
    foreign key from conversions or referrals to clicks (affiliate/services/partitions.py), nor from clicks to
    their link, affiliate and program (migration 0023)."""
    if isinstance(difference, list):  # a changed constraint comes as a list of a removal and an addition
        return all(_postgresql_only(d) for d in difference)
    kind, constraint = difference[0], difference[1]
    if kind in ("add_constraint", "remove_constraint"):
        return constraint.name == "uq_clicks_click_id"
    if kind == "add_fk":
        if constraint.parent.name == "clicks":
            return constraint.referred_table.name in ("links", "users", "programs")
        return constraint.parent.name in ("conversions", "referrals") and constraint.referred_table.name == "clicks"
    return False


def test_downgrade_and_upgrade_again(app):
    with app.app_context():
        downgrade(revision="base")
        with db.engine.connect() as conn:
            tables = db.inspect(conn).get_table_names()
        assert set(tables) <= {"alembic_version"}
        upgrade()
        with db.engine.connect() as conn:
            assert "users" in db.inspect(conn).get_table_names()


def test_a_key_issued_before_scopes_existed_keeps_exactly_conversions_and_refunds(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    with app.app_context():
        downgrade(revision="0013")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_keys (program_id, name, prefix, key_hash, signing_secret, created_by_id,"
                    " created_at) VALUES (:program, 'old checkout', 'oldkey23', :hash, 'whsec_old', :admin, :now)"
                ),
                {"program": program.id, "hash": "0" * 64, "admin": admin.id, "now": utcnow()},
            )
        upgrade()
        with db.engine.connect() as conn:
            scopes = conn.execute(text("SELECT scopes FROM api_keys WHERE prefix = 'oldkey23'")).scalar_one()
        assert scopes.split() == ["conversions:write", "refunds:write"]


def test_durability_settings(app):
    with app.app_context(), db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        else:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
            assert conn.execute(text("SHOW fsync")).scalar() == "on"


def test_sqlite_transactions_take_the_write_lock_up_front(app):
    """BEGIN IMMEDIATE: a transaction holds the write lock from its first statement."""
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite locking")
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # a read alone already holds the write lock
            other = sqlite3.connect(db.engine.url.database, timeout=0.05)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
            conn.rollback()


def test_a_waiting_sqlite_writer_goes_before_the_writer_that_just_let_go(app):
    """A loop of short write transactions (a retention round, a click backlog) must not take the write lock back
    ahead of a writer that was already waiting for it."""
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's writers' queue")
        engine = db.engine
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE turns (who TEXT)"))
    gate = f"{engine.url.database}.writers.gate"
    first_held, looper_may_go = threading.Event(), threading.Event()

    def looper() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO turns VALUES ('looper 1')"))
            first_held.set()
            looper_may_go.wait(10)
        with engine.begin() as conn:  # straight back for the lock, as a loop does
            conn.execute(text("INSERT INTO turns VALUES ('looper 2')"))

    def waiter() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO turns VALUES ('waiter')"))

    threads = [threading.Thread(target=looper), threading.Thread(target=waiter)]
    threads[0].start()
    assert first_held.wait(10)
    threads[1].start()
    _wait_until_held(gate)  # the waiter holds the gate while it waits for the lock
    looper_may_go.set()
    for thread in threads:
        thread.join(10)
    with engine.connect() as conn:
        turns = [row[0] for row in conn.execute(text("SELECT who FROM turns ORDER BY rowid"))]
    assert turns == ["looper 1", "waiter", "looper 2"]


def _wait_until_held(path: str, seconds: float = 10.0) -> None:
    """Poll (bounded by tries, not time) until another descriptor holds ``path``'s flock."""
    for _ in range(int(seconds / 0.01)):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return
        finally:
            os.close(fd)
        time.sleep(0.01)
    raise AssertionError(f"nobody took {path}")


def test_concurrent_read_modify_write_loses_nothing(app):
    """8 threads x 50 locked increments: no "database is locked", no lost update."""
    program_id = make_program(app, make_admin(app), minimum_payout_cents=0).id
    errors: list[Exception] = []

    def work() -> None:
        for _ in range(50):
            try:
                with app.app_context():
                    program = db.session.get(Program, program_id, with_for_update=True)
                    program.minimum_payout_cents += 1
                    db.session.commit()
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        total = db.session.get(Program, program_id).minimum_payout_cents
    assert errors == [], errors[:3]
    assert total == 400


def test_unique_referral_code_and_email_are_enforced_by_the_database(app):
    alice = make_affiliate(app)
    with app.app_context():
        for clash in (
            {"referral_code": alice.referral_code, "email": "new@example.com"},
            {"referral_code": "ZZZZZZZZZZ", "email": alice.email},
        ):
            db.session.add(
                User(
                    name="x",
                    password_hash="x",
                    role=Role.AFFILIATE,
                    status=UserStatus.ACTIVE,
                    created_at=utcnow(),
                    **clash,
                )
            )
            try:
                db.session.commit()
                raise AssertionError(f"duplicate accepted: {clash}")
            except IntegrityError:
                db.session.rollback()


def test_foreign_keys_are_enforced(app):
    with app.app_context():
        db.session.add(
            User(
                name="x",
                email="fk@example.com",
                password_hash="x",
                role="affiliate",
                status="active",
                referral_code="FKFKFKFKFK",
                referred_by_id=987654,
                created_at=utcnow(),
            )
        )
        try:
            db.session.commit()
            raise AssertionError("dangling referred_by accepted")
        except IntegrityError:
            db.session.rollback()


def test_pages_being_read_do_not_hold_the_write_lock(app, client, auth):
    """A GET's transaction begins DEFERRED on SQLite: clicks can be written while a page renders."""
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite locking")
        path = db.engine.url.database
    seen: list[bool] = []

    @app.after_request
    def try_to_write(response):
        if request.path != "/account/":
            return response
        db.session.execute(text("SELECT 1"))  # the request's transaction is open now
        other = sqlite3.connect(path, timeout=0.05)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            seen.append(True)
        except sqlite3.OperationalError:
            seen.append(False)
        finally:
            other.close()
        return response

    auth.login(make_affiliate(app).email)
    client.get("/account/")
    assert seen == [True]


def test_a_read_before_a_write_keeps_the_connections_prepared_statements(app):
    """PostgreSQL: the conversion API's reads, run in ``reading``, must not be planned afresh on every request."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL's prepared statements")
        for _ in range(6):  # psycopg prepares a statement on its fifth run
            with reading(db.session):
                db.session.execute(text("SELECT count(*) FROM users WHERE id > :id"), {"id": 0})
        prepared = db.session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
        assert any("FROM users WHERE id > $1" in statement for statement in prepared)


def test_a_block_run_as_reading_that_changes_something_is_refused_and_changes_nothing(app):
    with app.app_context():
        admin = make_admin(app)
        with pytest.raises(RuntimeError, match="must only read"), reading(db.session):
            db.session.get(User, admin.id).email = "changed@example.com"
        assert db.session.get(User, admin.id).email == admin.email
