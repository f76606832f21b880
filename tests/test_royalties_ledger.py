"""Ingest, runs, the append-only ledger, closing, corrections and statements, on SQLite and PG."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from attune.royalties import ledger, statements
from attune.royalties.ingest import UsageFileError, ingest, parse_file
from attune.royalties.models import LedgerPosting, LedgerTransaction, UsageReport
from attune.royalties.run import data_dir, run_period
from attune.store.audit import verify_chain
from attune.store.db import transaction
from tests.test_royalties_world import (
    build_world,
    dsr_text,
    mounted_app,
    usage_rows,
    write_csv,
)


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test keeps its Parquet files in its own folder (PostgreSQL has no file beside it)."""
    monkeypatch.setenv("ATTUNE_DATA", str(tmp_path / "royalty-data"))


def _ingest(engine: Engine, path: Path, **kw: object) -> object:
    with transaction(engine) as s:
        return ingest(s, data_dir(engine), path, "test", **kw)  # type: ignore[arg-type]


def _run(engine: Engine, period: str = "2026-10", into: str | None = None) -> object:
    with transaction(engine) as s:
        return run_period(s, data_dir(engine), period, "test", into=into)


def _counts(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as s:
        return (
            int(s.scalar(select(func.count()).select_from(LedgerTransaction)) or 0),
            int(s.scalar(select(func.count()).select_from(LedgerPosting)) or 0),
        )


def _owed(engine: Engine) -> dict[int, Decimal]:
    with transaction(engine) as s:
        return {
            b.party_id: -b.amount
            for b in ledger.balances(s)
            if b.account.startswith("Liabilities:Royalties:") and b.party_id is not None
        }


def test_run_allocates_every_cent_and_rerun_posts_nothing(engine: Engine, tmp_path: Path) -> None:
    world = build_world(engine, guarantee="5")
    res = _ingest(engine, write_csv(tmp_path / "u.csv", usage_rows(world)))
    assert res.added and res.lines == 10  # type: ignore[attr-defined]
    first = _run(engine)
    assert first.post.posted  # type: ignore[attr-defined]
    # AI: 15.500001 EUR of registered outputs x 25% = 3.88, raised to the 5.00 guarantee;
    # agreement b covers FR only: 13.000001 x 10% = 1.30. Catalog 6.18 paid, 0.10 in suspense.
    assert first.summary["totals"] == {  # type: ignore[attr-defined]
        "ai": {"EUR": 630},
        "catalog": {"EUR": 618},
        "suspense": {"EUR": 10},
    }
    assert first.summary["ai_revenue_not_pooled"] == {"EUR": "500000"}  # type: ignore[attr-defined]
    with transaction(engine) as s:
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for b in ledger.balances(s):
            sums[b.currency] += b.amount
        assert sums == {"EUR": Decimal(0)}
        for party_id, owed in _owed(engine).items():
            st = statements.statement(s, data_dir(engine), party_id, "2026-10")
            assert sum(line.amount for line in st.lines) == owed
    before = _counts(engine)
    again = _run(engine)
    assert not again.post.posted and _counts(engine) == before  # type: ignore[attr-defined]
    with transaction(engine) as s:
        assert verify_chain(s)[1] is None


def test_same_file_or_message_id_twice_pays_nothing_twice(engine: Engine, tmp_path: Path) -> None:
    world = build_world(engine)
    dsr = tmp_path / "DSR_1.tsv"
    dsr.write_text(dsr_text([("A1", world.isrcs["rec1"], "", 10, "2.00")], message_id="M-7"))
    assert _ingest(engine, dsr).added  # type: ignore[attr-defined]
    again = _ingest(engine, dsr)
    assert not again.added and again.reason == "same file already ingested"  # type: ignore[attr-defined]
    renamed = tmp_path / "DSR_1b.tsv"  # same MessageId, one byte different (a re-send)
    renamed.write_text(dsr.read_text().replace("2026-10-31T00:00:00Z", "2026-10-31T00:00:01Z"))
    resend = _ingest(engine, renamed)
    assert not resend.added and resend.reason == "same MessageId already ingested"  # type: ignore[attr-defined]
    _run(engine)
    assert _owed(engine)[world.ids["label_a"]] == Decimal("2.00")


def test_reissued_report_supersedes_the_earlier_through_reversals(
    engine: Engine, tmp_path: Path
) -> None:
    world = build_world(engine)
    v1 = tmp_path / "v1.tsv"
    v1.write_text(dsr_text([("A1", world.isrcs["rec1"], "", 10, "2.00")], message_id="M-1"))
    v2 = tmp_path / "v2.tsv"
    v2.write_text(dsr_text([("A1", world.isrcs["rec1"], "", 12, "3.00")], message_id="M-2"))
    _ingest(engine, v1)
    _run(engine)
    assert _owed(engine)[world.ids["label_a"]] == Decimal("2.00")
    res = _ingest(engine, v2)
    assert res.superseded_id is not None  # type: ignore[attr-defined]
    second = _run(engine)
    assert second.post.reversed_run_id is not None  # type: ignore[attr-defined]
    assert _owed(engine)[world.ids["label_a"]] == Decimal("3.00")
    with transaction(engine) as s:
        kinds = dict(
            s.execute(
                select(LedgerTransaction.kind, func.count()).group_by(LedgerTransaction.kind)
            ).all()
        )
        assert kinds == {"allocation": 2, "reversal": 1}
        statuses = [r.status for r in s.scalars(select(UsageReport).order_by(UsageReport.id))]
        assert statuses == ["superseded", "active"]


def test_closed_period_is_immutable_and_corrections_book_into_an_open_one(
    engine: Engine, tmp_path: Path
) -> None:
    world = build_world(engine)
    _ingest(engine, write_csv(tmp_path / "u.csv", usage_rows(world)))
    _run(engine)
    with transaction(engine) as s:
        ledger.close_period(s, "2026-10", "test")
    fix = write_csv(tmp_path / "fix.csv", usage_rows(world, scale=2))
    _ingest(engine, fix, supersedes=1)
    before = _counts(engine)
    with pytest.raises(ledger.LedgerError, match="2026-10 is closed"):
        _run(engine)
    assert _counts(engine) == before
    corrected = _run(engine, into="2026-11")
    assert corrected.post.reversed_run_id is not None  # type: ignore[attr-defined]
    with transaction(engine) as s:
        booked = set(s.scalars(select(LedgerTransaction.booked_period).distinct()))
        assert booked == {"2026-10", "2026-11"}
    # The database itself refuses edits and bookings into a closed period.
    for sql in (
        "UPDATE ledger_postings SET amount = 0",
        "DELETE FROM ledger_transactions",
        "INSERT INTO ledger_transactions (key, run_id, booked_period, usage_period, date, kind, "
        "narration, created_at) VALUES ('x', 1, '2026-10', '2026-10', '2026-10-31', "
        "'allocation', 'x', '2026-10-31')",
    ):
        with pytest.raises(DBAPIError), transaction(engine) as s:
            s.execute(text(sql))


def test_minimum_guarantee_top_up_is_recouped_from_later_earnings(
    engine: Engine, tmp_path: Path
) -> None:
    world = build_world(engine, guarantee="5")
    _ingest(engine, write_csv(tmp_path / "oct.csv", usage_rows(world)))
    _run(engine)
    nov = [r for r in usage_rows(world, period="2026-11", scale=4) if "out" in str(r[4])]
    _ingest(engine, write_csv(tmp_path / "nov.csv", nov))
    result = _run(engine, "2026-11")
    with transaction(engine) as s:
        recoup = ledger.recoupable_before(s, "2026-12")
        run = ledger.current_run(s, "2026-11")
        assert run is not None
    pools = pq.read_table(data_dir(engine) / run.path / "pools.parquet").to_pylist()
    pool_a = next(p for p in pools if p["pool"] == "ai:1:EUR")
    # November earns 4 x 15.500001 x 25% = 15.50 (> 5.00 guarantee): October's 1.12 top-up is
    # recouped in full, so the pool is 14.38 and nothing remains recoupable.
    assert (pool_a["earned"], pool_a["recouped"], pool_a["amount"]) == (1550, 112, 1438)
    assert recoup.get(world.ids["ag_a"], 0) == 0
    assert result.post.posted  # type: ignore[attr-defined]


def test_beancount_export_has_balanced_transactions(engine: Engine, tmp_path: Path) -> None:
    world = build_world(engine)
    _ingest(engine, write_csv(tmp_path / "u.csv", usage_rows(world)))
    _run(engine)
    buf = io.StringIO()
    with transaction(engine) as s:
        count = ledger.export_beancount(s, buf)
    txns = buf.getvalue().split("\n\n")[2:]
    assert count == len(txns) > 0
    for t in txns:
        legs = re.findall(r"^  (\S+:\S+)\s+(-?\d+\.\d+) EUR$", t, flags=re.M)
        assert legs and sum(Decimal(a) for _, a in legs) == 0
    assert re.search(r"^2026-10-31 open Liabilities:Royalties:Party-\d+$", buf.getvalue(), re.M)


def test_malformed_reports_are_refused_with_line_and_field_and_change_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    world = build_world(engine)
    rows = usage_rows(world)
    rows[3][5] = "12.5"
    bad_csv = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(UsageFileError, match=r"bad\.csv:5: units: not a whole number"):
        _ingest(engine, bad_csv)
    text_ = dsr_text([("A1", world.isrcs["rec1"], "", 10, "2.00")]).replace(
        "\tA1\ttrue\t10\t", "\tA9\ttrue\t10\t"
    )
    bad_dsr = tmp_path / "bad.tsv"
    bad_dsr.write_text(text_)
    with pytest.raises(UsageFileError, match=r"bad\.tsv:6: ResourceReference: no AS02 resource A9"):
        _ingest(engine, bad_dsr)
    mismatch = tmp_path / "sum.tsv"
    mismatch.write_text(
        dsr_text([("A1", world.isrcs["rec1"], "", 10, "2.00")]).replace("\t10\t12\t", "\t11\t12\t")
    )
    with pytest.raises(UsageFileError, match=r"sum\.tsv:2: Usages: summary says 11 usages"):
        _ingest(engine, mismatch)
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(UsageReport)) == 0
    assert not (data_dir(engine) / "usage").exists()


def statement_total(dsr: str) -> Decimal:
    """The amounts of a DSR statement's summaries, added up."""
    return sum((Decimal(r.split("\t")[9]) for r in dsr.splitlines() if r.startswith("SY02")),
               Decimal(0))  # fmt: skip


def test_cli_runs_the_whole_flow(engine: Engine, db_url: str, tmp_path: Path) -> None:
    world = build_world(engine)
    app = mounted_app()
    runner = CliRunner()

    def cli(*args: str) -> str:
        res = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.stdout

    usage = write_csv(tmp_path / "u.csv", usage_rows(world))
    assert json.loads(cli("royalties", "ingest", str(usage), "--json"))["added"] is True
    run = json.loads(cli("royalties", "run", "--period", "2026-10", "--json"))
    assert run["posted"] is True
    balance = json.loads(cli("ledger", "balance", "--party", "Northbound Records", "--json"))
    assert [b["account"] for b in balance] == [
        f"Liabilities:Royalties:Party-{world.ids['label_a']}"
    ]
    csv_text = cli("royalties", "statement", "--party", "Mara Vell", "--period", "2026-10")
    assert csv_text.startswith("period,kind,source") and ",rounding," in csv_text
    page = tmp_path / "s.html"
    cli("royalties", "statement", "--party", "Northbound Records", "--period", "2026-10",
        "--format", "html", "--output", str(page))  # fmt: skip
    html = page.read_text()
    assert "<svg" in html and "out-1" in html
    assert not re.search(r'(src|href)="https?:|<script|<link', html)  # no network assets
    dsr = cli("royalties", "statement", "--party", "Northbound Records", "--period", "2026-10",
              "--format", "dsr")  # fmt: skip
    assert dsr.startswith("HEAD\tdsrf/") and dsr.rstrip().split("\n")[-1].startswith("FOOT")
    exported = tmp_path / "statement.tsv"
    exported.write_text(dsr)
    back = parse_file(exported)  # the export is a report our own reader accepts
    assert back.format == "dsr" and back.lines == dsr.count("\nSU02\t")
    assert sum(back.revenue.values()) == round(statement_total(dsr) * 1_000_000)
    assert "open Liabilities" in cli("ledger", "export", "--format", "beancount")
    cli("royalties", "close", "--period", "2026-10")
    res = runner.invoke(app, ["--db", db_url, "royalties", "close", "--period", "2026-10"])
    assert res.exit_code != 0
