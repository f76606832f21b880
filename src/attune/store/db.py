"""Database engine, sessions and schema creation: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

DEFAULT_DB_PATH = Path(".attune") / "attune.db"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Attune table (one metadata, one migration history)."""

    metadata = MetaData(naming_convention=NAMING)


def database_url(url: str | None = None) -> str:
    """Resolve the database URL: explicit argument, then ATTUNE_DB, then the embedded SQLite file.

    A bare filesystem path is accepted and turned into an SQLite URL.
    """
    chosen = url or os.environ.get("ATTUNE_DB") or str(DEFAULT_DB_PATH)
    if "://" not in chosen:
        path = Path(chosen).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if chosen.startswith("postgresql://"):
        chosen = "postgresql+psycopg://" + chosen.removeprefix("postgresql://")
    elif chosen.startswith("postgres://"):
        chosen = "postgresql+psycopg://" + chosen.removeprefix("postgres://")
    return chosen


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    """Take transaction control from pysqlite and set Attune's pragmas.

    pysqlite's default mode does not BEGIN before a SAVEPOINT, so releasing a savepoint would
    commit and a later rollback would undo nothing; Attune emits BEGIN itself instead.
    """
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("PRAGMA cache_size=-262144")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str | None = None) -> Engine:
    """Create an engine for ``url`` (see :func:`database_url`) with Attune's connection settings."""
    resolved = database_url(url)
    engine = create_engine(resolved, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back everything on any error."""
    with session_factory(engine)() as session, session.begin():
        yield session


def is_initialised(engine: Engine) -> bool:
    """True when the schema exists (the audit table is the last one every migration keeps)."""
    return inspect(engine).has_table("audit_log")
