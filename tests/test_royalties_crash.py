"""A royalty run killed with SIGKILL midway and re-run leaves the ledger of one clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

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


def test_sigkill_midway_then_rerun_gives_the_same_ledger_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    url = f"sqlite:///{pristine / 'attune.db'}"
    engine = make_engine(url)
    upgrade(engine)
    world = build_world(engine, guarantee="5")
    usage = write_csv(tmp_path / "u.csv", usage_rows(world))
    monkeypatch.setenv("ATTUNE_DATA", str(pristine / "data"))
    with transaction(engine) as s:
        ingest(s, data_dir(engine), usage, "test")
    engine.dispose()
    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference)
    monkeypatch.setenv("ATTUNE_DATA", str(reference / "data"))
    _rerun(f"sqlite:///{reference / 'attune.db'}")
    expected = _ledger(f"sqlite:///{reference / 'attune.db'}")
    assert len(expected) > 10
    midway = 0
    for attempt in range(3):
        copy = tmp_path / f"attempt{attempt}"
        shutil.copytree(pristine, copy)
        monkeypatch.setenv("ATTUNE_DATA", str(copy / "data"))
        copy_url = f"sqlite:///{copy / 'attune.db'}"
        proc = subprocess.Popen([sys.executable, "-c", RUN, copy_url], env=os.environ.copy())
        runs = copy / "data" / "runs"
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
