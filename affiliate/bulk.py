"""Many rows into one table inside the session's transaction, by the database's bulk path.

On PostgreSQL, psycopg sends an executemany as one INSERT per row (pipelined): for the thousands of
payouts and ledger legs of a payout batch that cost more in Python than in the database. There the rows
go by COPY instead, on the session's own connection, so they commit or roll back with everything else;
ids a caller needs before the rows exist are taken from the table's sequence in one statement. SQLite's
executemany is already a loop inside the driver, so it keeps the table's INSERT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys, Python values as the columns hold them) into ``table``."""
    if not rows:
        return
    if not postgresql(session):
        session.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    connection = session.connection()
    # Each value as an INSERT would bind it (an unknown column is a KeyError here, never text in the statement):
    # the columns' own types first, so a naive time is refused for a UTC column here too.
    processors = [table.c[name].type.bind_processor(connection.dialect) for name in names]
    columns = ", ".join(f'"{name}"' for name in names)
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        row[name] if bind is None else bind(row[name])
                        for name, bind in zip(names, processors, strict=True)
                    ]
                )
    except psycopg.Error as error:
        # As SQLAlchemy's own statements fail (an IntegrityError for a broken constraint), so callers and the
        # session's rollback treat a refused COPY like a refused INSERT.
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error
    finally:
        cursor.close()


def new_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh ids from the sequence of ``table``'s id column (PostgreSQL only), in ascending order."""
    return list(
        session.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"),
            {"table": table.name, "count": count},
        )
    )
