"""A royalty run killed with SIGKILL midway and re-run leaves the ledger of one clean run.

Runs on a real SQLite file and on PostgreSQL: each attempt starts from a copy of the same
pristine state (database + data folder), so every attempt must end with the reference ledger.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from attune.royalties.ingest import ingest
from attune.royalties.models import LedgerPosting, LedgerTransaction, RoyaltyRun
from attune.royalties.run import data_dir, run_period
from attune.store.db import make_engine, transaction
from attune.store.migrate import upgrade
from tests.test_royalties_world import build_world, usage_rows, write_csv

RUN = """
import sys
from attune.royalties.run import data_dir, run_period
from attune.store.db import make_engine, transaction
engine = make_engine(sys.argv[1])
with transaction(engine) as s:
    run_period(s, data_dir(engine), "2026-10", "crash")
"""

Clone = Callable[[str], str]


def _ledger(url: str) -> list[tuple[object, ...]]:
    """Every posting with its transaction's identity, in posting order (timestamps aside)."""
    engine = make_engine(url)
    with transaction(engine) as s:
        rows = s.execute(
            select(LedgerTransaction.id, LedgerTransaction.key, LedgerTransaction.kind,
                   LedgerTransaction.booked_period, LedgerPosting.position,
                   LedgerPosting.account, LedgerPosting.currency, LedgerPosting.amount)
            .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
            .order_by(LedgerTransaction.id, LedgerPosting.position)
        ).all()  # fmt: skip
        runs = s.scalar(select(RoyaltyRun.id).order_by(RoyaltyRun.id.desc()).limit(1))
    engine.dispose()
    return [tuple(r) for r in rows] + [("runs", runs)]


def _rerun(url: str) -> None:
    engine = make_engine(url)
    with transaction(engine) as s:
        run_period(s, data_dir(engine), "2026-10", "crash")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def clone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Clone]]:
    """A migrated database URL, and a function that copies it to a new database by name."""
    if request.param == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        source = Path(make_url(url).database or "")

        def copy_sqlite(name: str) -> str:
            target = tmp_path / f"{name}.db"
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"

        yield url, copy_sqlite
        return
    # A database of the test's own: the worker's shared one may have pooled sessions open,
    # and PostgreSQL copies a template only while nobody is connected to it.
    base = make_url(str(request.getfixturevalue("pg_database")))
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def create(name: str, template: str | None = None) -> str:
        db = f"{base.database}_{name}_{uuid.uuid4().hex[:6]}"
        with admin.connect() as conn:
            conn.execute(
                text(f'CREATE DATABASE "{db}"' + (f' TEMPLATE "{template}"' if template else ""))
            )
        made.append(db)
        return base.set(database=db).render_as_string(hide_password=False)

    source = create("crash")
    engine = make_engine(source)
    upgrade(engine)
    engine.dispose()

    def copy_pg(name: str) -> str:
        return create(name, template=make_url(source).database)

    yield source, copy_pg
    with admin.connect() as conn:
        for db in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


def test_sigkill_midway_then_rerun_gives_the_same_ledger_without_duplicates(
    clone: tuple[str, Clone], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, copy_db = clone
    pristine_data = tmp_path / "pristine-data"
    monkeypatch.setenv("ATTUNE_DATA", str(pristine_data))
    engine = make_engine(url)
    world = build_world(engine, guarantee="5")
    usage = write_csv(tmp_path / "u.csv", usage_rows(world))
    with transaction(engine) as s:
        ingest(s, data_dir(engine), usage, "test")
    engine.dispose()

    def fresh_copy(name: str) -> str:
        shutil.copytree(pristine_data, tmp_path / f"{name}-data")
        monkeypatch.setenv("ATTUNE_DATA", str(tmp_path / f"{name}-data"))
        return copy_db(name)

    reference = fresh_copy("reference")
    _rerun(reference)
    expected = _ledger(reference)
    assert len(expected) > 10
    midway = 0
    for attempt in range(3):
        copy_url = fresh_copy(f"attempt{attempt}")
        proc = subprocess.Popen([sys.executable, "-c", RUN, copy_url], env=os.environ.copy())
        runs = tmp_path / f"attempt{attempt}-data" / "runs"
        deadline = time.monotonic() + 60
        # Kill as soon as the allocation is on disk: the ledger write is then under way.
        while proc.poll() is None and time.monotonic() < deadline:
            if runs.exists() and any(runs.rglob("coverage.parquet")):
                time.sleep(0.01 * attempt)
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = _ledger(copy_url)
        if killed == [("runs", None)]:
            midway += 1
        else:
            assert killed == expected  # the kill came after the commit
        _rerun(copy_url)
        _rerun(copy_url)  # and a second re-run posts nothing more
        assert _ledger(copy_url) == expected
    assert midway >= 1, "no attempt was killed before its commit"
