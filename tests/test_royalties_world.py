"""A small royalty world built through the real registry, usage-file writers, and their checks."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import typer
from sqlalchemy import Engine

from attune.rights.outputs import AttributionIn, OutputIn, add_output
from attune.royalties.ingest import parse_file
from attune.royalties.run import set_terms
from attune.store.db import transaction
from tests import factory as f

CSV_HEADER = ["period", "territory", "service", "use_type", "item_id", "units", "net_revenue",
              "currency", "listener_id"]  # fmt: skip


def mounted_app() -> typer.Typer:
    """The main CLI app with the royalty sub-apps mounted (once), as the lead mounts them."""
    from attune.cli import app
    from attune.cli_royalties import ledger_app, output_app, royalties_app

    names = {g.name for g in app.registered_groups}
    for sub, name in ((output_app, "output"), (royalties_app, "royalties"), (ledger_app, "ledger")):
        if name not in names:
            app.add_typer(sub, name=name)
    return app


@dataclass(frozen=True)
class World:
    """Ids of the world's parties, works, recordings, agreements and outputs, and its ISRCs."""

    ids: dict[str, int]
    isrcs: dict[str, str]


def build_world(engine: Engine, *, guarantee: str = "0", policy: str = "pro_rata") -> World:
    """Two labels, three writers, a publisher, four recordings, one AI platform and two outputs.

    Label A (agreement 'a', 25% of AI revenue) owns rec1 (work w1) and rec2 (no work); label B
    (agreement 'b', 10%) co-owns rec3 with A. rec4 is registered but unlicensed.
    """
    with transaction(engine) as s:
        label_a = f.party(s, "Northbound Records", "label", kind="organisation")
        label_b = f.party(s, "Southgate Music", "label", kind="organisation")
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        pub = f.party(s, "Harbour Publishing", "publisher", kind="organisation")
        w_1 = f.party(s, "Mara Vell", "songwriter")
        w_2 = f.party(s, "Juno Kade", "songwriter")
        w_3 = f.party(s, "Ari Stone", "songwriter")
        artist = f.party(s, "Lio Park", "artist")
        work1 = f.work(s, "Harbour Lights", w_1, w_2, publisher=pub)
        work2 = f.work(s, "Glass Tides", w_3)
        rec1 = f.recording(s, "Harbour Lights", work1, [label_a], [artist])
        rec2 = f.recording(s, "Night Ferry", None, [label_a], [artist])
        rec3 = f.recording(s, "Glass Tides", work2, [label_a, label_b], [artist])
        rec4 = f.recording(s, "Loose Ends", None, [label_b], [artist])
        ag_a = f.agreement(
            s,
            label_a,
            platform,
            ai_revenue_share=Decimal("0.25"),
            minimum_guarantee=Decimal(guarantee),
            currency="EUR",
        )
        ag_b = f.agreement(
            s,
            label_b,
            platform,
            territories=("FR",),
            ai_revenue_share=Decimal("0.1"),
            currency="EUR",
            start=date(2026, 1, 1),
        )
        set_terms(s, ag_a.id, "test", catalog_policy=policy)
        add_output(
            s,
            OutputIn(
                id="out-1",
                model="tonal-2",
                platform_id=platform.id,
                prompt="harbour ballad",
                attributions=(
                    AttributionIn(recording_id=rec1.id, share=Decimal("0.6")),
                    AttributionIn(recording_id=rec3.id, share=Decimal("0.3")),
                    AttributionIn(work_id=work2.id, share=Decimal("0.1")),
                ),
            ),
            "test",
        )
        add_output(
            s,
            OutputIn(
                id="out-2",
                model="tonal-2",
                platform_id=platform.id,
                attributions=(AttributionIn(recording_id=rec2.id, share=Decimal(1)),),
            ),
            "test",
        )
        ids = {
            "label_a": label_a.id,
            "label_b": label_b.id,
            "platform": platform.id,
            "pub": pub.id,
            "w1": w_1.id,
            "w2": w_2.id,
            "w3": w_3.id,
            "artist": artist.id,
            "work1": work1.id,
            "work2": work2.id,
            "rec1": rec1.id,
            "rec2": rec2.id,
            "rec3": rec3.id,
            "rec4": rec4.id,
            "ag_a": ag_a.id,
            "ag_b": ag_b.id,
        }
        isrcs = {"rec1": rec1.isrc, "rec2": rec2.isrc, "rec3": rec3.isrc, "rec4": rec4.isrc}
    return World(ids, isrcs)  # fmt: skip


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    """A usage CSV with the standard header."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        w.writerows(rows)
    return path


def usage_rows(world: World, period: str = "2026-10", scale: int = 1) -> list[list[object]]:
    """Catalog streams on every recording (and an unknown ISRC) plus AI-output revenue.

    ``scale`` multiplies the units and revenue of every registered item.
    """
    i = world.isrcs
    lines = [
        ("FR", "stream", i["rec1"], 100, "3.00", "u1"),
        ("FR", "stream", i["rec2"], 50, "1.25", "u1"),
        ("DE", "stream", i["rec3"], 30, "0.90", "u2"),
        ("FR", "stream", i["rec3"], 20, "0.70", "u2"),
        ("FR", "stream", i["rec4"], 10, "0.33", ""),
        ("FR", "generate", "out-1", 40, "12.00", ""),
        ("DE", "generate", "out-1", 10, "2.50", ""),
        ("FR", "generate", "out-2", 7, "1.000001", ""),
    ]
    rows: list[list[object]] = [
        [period, t, "Tonal", use, item, units * scale, str(Decimal(rev) * scale), "EUR", who]
        for t, use, item, units, rev, who in lines
    ]
    rows.insert(5, [period, "FR", "Tonal", "stream", "GBZZZ2600001", 5, "0.10", "EUR", ""])
    rows.append([period, "FR", "Tonal", "generate", "out-unknown", 3, "0.50", "EUR", ""])
    return rows


def dsr_text(
    lines: list[tuple[str, str, str, int, str]],
    *,
    message_id: str = "MSG-1",
    period: str = "2026-10",
    territory: str = "FR",
    currency: str = "EUR",
) -> str:
    """A DSR flat file: one SY02 summary, one block per (ref, isrc, output, units, revenue) line.

    Summary usages and revenue are the sums of the lines, as a correct sender writes them.
    """
    month = period[5:7]
    last = {"02": 28, "04": 30, "06": 30, "09": 30, "11": 30}.get(month, 31)
    head = [
        "HEAD",
        "dsrf/3/0/0",
        "BasicAudioProfile",
        "1.3",
        message_id,
        f"{period}-{last}T00:00:00Z",
        "1",
        "1",
        f"{period}-01",
        f"{period}-{last:02d}",
        "PADPIDA2026TONAL",
        "Tonal",
        "Tonal Premium",
        "PADPIDA2026ATTUN",
        "Attune",
    ]
    units = sum(u for _, _, _, u, _ in lines)
    revenue = sum((Decimal(r) for *_, r in lines), Decimal(0))
    out = [
        head,
        [
            "SY02",
            "S1",
            "SubscriptionModel",
            "Stream",
            territory,
            "Tonal Premium",
            str(units),
            "12",
            currency,
            str(revenue),
        ],
    ]
    for n, (ref, isrc, output, u, r) in enumerate(lines, start=1):
        block = f"B{n}"
        out.append(["RE01", block, f"R{n}", "", f"Release {n}", "Artist A|Artist B"])
        out.append(["AS02", block, ref, f"DSP{n}", isrc, f"Track {n}", "Artist A", "PT3M", output])
        out.append(
            [
                "MW01",
                block,
                ref,
                "T0345246801|T0000000018",
                f"Work {n}",
                "ISNI::000000012146438X|Mara Vell",
            ]
        )
        out.append(["SU02", block, "S1", f"T{message_id}-{n}", ref, "true", str(u), r, f"L{n}"])
    out.append(["SU02", "B1", "S1", f"T{message_id}-free", "A1", "false", "9", "0", ""])
    out.append(["FOOT", str(len(out) + 1), "1", str(len(lines))])
    return "".join("\t".join(r) + "\n" for r in out)  # fmt: skip


def test_world_files_parse(tmp_path: Path) -> None:
    """The writers above produce files the parser accepts (guards the other tests' inputs)."""
    world = World({}, {"rec1": "GBATT2600001", "rec2": "GBATT2600002", "rec3": "GBATT2600003",
                       "rec4": "GBATT2600004"})  # fmt: skip
    parsed = parse_file(write_csv(tmp_path / "u.csv", usage_rows(world)))
    assert parsed.rows.num_rows == 10 and parsed.period == "2026-10"
    dsr = tmp_path / "r.tsv"
    dsr.write_text(dsr_text([("A1", "GBATT2600001", "", 5, "1.50"),
                             ("A1", "", "out-1", 2, "0.25")]))  # fmt: skip
    report = parse_file(dsr)
    assert report.format == "dsr" and report.skipped == 1
    assert report.rows.column("item").to_pylist() == ["GBATT2600001", "out-1"]
