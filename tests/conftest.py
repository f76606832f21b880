"""Shared fixtures: a fresh migrated database on SQLite (a real file) and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

import attune.rights.models
import attune.rights.outputs
import attune.royalties.models  # noqa: F401  (every table on Base.metadata, for truncation)
from attune.store.db import Base, make_engine
from attune.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "ATTUNE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test worker's own, migrated once, dropped at the end."""
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("ATTUNE_REQUIRE_PG") or os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required but does not answer at {PG_ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL not available: {problem}")
    name = f"attune_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'attune.db'}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """URL of the worker's PostgreSQL database, emptied before the test."""
    eng = make_engine(pg_database)
    _truncate(eng)
    eng.dispose()
    yield pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the parametrised database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
