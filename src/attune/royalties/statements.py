"""Statements per party and period: every usage line -> rate -> split -> amount, as CSV, HTML, DSR.

A statement is built from the standing run of the period: each of the party's leaves (a share
of one pool's pair) is traced back to the usage lines behind it. Line amounts are exact
decimals; one rounding row per leaf brings them to the amount posted in the ledger.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.rights.models import Party, Recording, Work
from attune.rights.outputs import Output
from attune.royalties.allocate import PAIR_WEIGHT, WHOLE, connect, period_bounds
from attune.royalties.ingest import WORLDWIDE
from attune.royalties.ledger import current_run
from attune.royalties.models import UsageReport
from attune.royalties.money import exponent

PLACES = Decimal("1e-10")
# Policies whose pool weights are micro-units (attributed units, revenue): rates shown per unit.
MICRO_WEIGHTED = ("attribution", "user_centric", "per_recording")
COLUMNS = (
    "period",
    "kind",
    "source",
    "pool",
    "currency",
    "report",
    "line",
    "territory",
    "item",
    "output_id",
    "isrc",
    "iswc",
    "role",
    "units",
    "revenue",
    "rate",
    "attribution",
    "split",
    "amount",
)


class Line(NamedTuple):
    """One statement row: a usage line's share (kind 'usage') or a leaf's rounding adjustment.

    rate: the pool's amount per unit of usage weight (per attributed unit for AI, per unit for
    catalog, per revenue unit for direct pay). attribution: the output's share given to the
    item (AI only). split: the party's fraction of the item. amount: exact, in the currency.
    """

    period: str
    kind: str
    source: str
    pool: str
    currency: str
    report: str
    line: int | None
    territory: str
    item: str
    output_id: str
    isrc: str
    iswc: str
    role: str
    units: int
    revenue: Decimal
    rate: Decimal
    attribution: Decimal
    split: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Statement:
    """A party's statement for a usage period: its lines and the totals posted to the ledger."""

    party_id: int
    party_name: str
    period: str
    run_id: int
    lines: tuple[Line, ...]
    totals: dict[tuple[str, str], Decimal]
    outputs: tuple[dict[str, object], ...]


class StatementError(LookupError):
    """No statement can be made: no standing run for the period, or no such party."""


def statement(session: Session, base: Path, party_id: int, period: str) -> Statement:
    """Trace the party's leaves in the standing run of ``period`` back to usage lines."""
    party = session.get(Party, party_id)
    if party is None:
        raise StatementError(f"no party with id {party_id}")
    run = current_run(session, period)
    if run is None:
        raise StatementError(f"no royalty run stands for {period}; run `royalties run` first")
    reports = json.loads(run.summary).get("reports", [])
    shas = {
        r.id: r.path
        for r in session.scalars(select(UsageReport).where(UsageReport.id.in_(reports)))
    }
    runs = base / run.path
    con = connect()
    con.execute(f"CREATE VIEW leaves AS SELECT * FROM read_parquet('{runs / 'leaves.parquet'}')")
    con.execute(f"CREATE VIEW pools AS SELECT * FROM read_parquet('{runs / 'pools.parquet'}')")
    con.execute(f"CREATE VIEW cov AS SELECT * FROM read_parquet('{runs / 'coverage.parquet'}')")
    files = [str(base / p) for p in shas.values()]
    empty = (
        "SELECT NULL::VARCHAR report, 0::BIGINT line, NULL::VARCHAR territory, "
        "NULL::VARCHAR item, 0::BIGINT units, 0::BIGINT revenue, NULL::VARCHAR currency "
        "WHERE false"
    )
    con.execute(
        "CREATE VIEW u AS "
        + (f"SELECT * FROM read_parquet([{', '.join(repr(f) for f in files)}])" if files else empty)
    )
    isrcs = dict(session.execute(select(Recording.id, Recording.isrc)).all())
    iswcs = dict(session.execute(select(Work.id, Work.iswc)).all())
    mine = con.execute(
        f"""
        SELECT l.pool, l.source, l.currency, l.pair, l.output_id, l.recording_id, l.work_id,
            l.isrc, l.pair_weight::VARCHAR, l.pair_amount, l.role, l.leaf_weight::VARCHAR,
            l.amount, p.amount AS pool_amount, w.total::VARCHAR, p.policy
        FROM leaves l JOIN pools p ON p.pool = l.pool
        LEFT JOIN (SELECT pool, sum(pair_weight) AS total
                   FROM (SELECT DISTINCT pool, pair, pair_weight FROM leaves) GROUP BY pool) w
            ON w.pool = l.pool
        WHERE l.party_id = {int(party_id)}
        ORDER BY l.pool, l.output_id NULLS FIRST, l.recording_id NULLS FIRST,
            l.work_id NULLS FIRST, l.isrc NULLS FIRST, l.role
        """
    ).fetchall()
    usage_of = _usage_lines(con, mine, isrcs)
    lines: list[Line] = []
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    per_output: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext() as ctx:
        ctx.prec = 50
        for n, (
            pool,
            source,
            cur,
            _pair,
            output_id,
            rec_id,
            work_id,
            isrc,
            pw,
            _pa,
            role,
            lw,
            amount,
            pool_amount,
            total,
            policy,
        ) in enumerate(mine):
            unit = Decimal(1).scaleb(-exponent(cur))
            posted = Decimal(amount) * unit
            totals[(source, cur)] += posted
            isrc_text = isrc or isrcs.get(rec_id, "") if rec_id or isrc else ""
            work_of = iswcs.get(work_id) if work_id else None
            iswc_text = work_of or (str(work_id) if work_id else "")
            if output_id:
                per_output[output_id] += posted
            split = Decimal(int(lw)) / PAIR_WEIGHT
            if pw is None or total is None:
                lines.append(
                    Line(
                        period,
                        "unattributed",
                        source,
                        pool,
                        cur,
                        "",
                        None,
                        "",
                        "",
                        "",
                        "",
                        "",
                        role,
                        0,
                        Decimal(0),
                        Decimal(0),
                        Decimal(0),
                        split,
                        posted,
                    )
                )
                continue
            rate = Decimal(pool_amount) * unit / Decimal(int(total))
            shown = WHOLE if policy in MICRO_WEIGHTED else 1
            exact_leaf = rate * Decimal(int(pw)) * split
            item = output_id or isrc_text
            usage = usage_of.get(n, [])
            basis = [int(r[4]) if source == "direct" else int(r[3]) for r in usage]
            whole = sum(basis)
            attribution = Decimal(0)
            if output_id:
                units_total = sum(int(r[3]) for r in usage)
                attribution = (
                    (Decimal(int(pw)) / units_total / WHOLE) if units_total else Decimal(0)
                )
            running = Decimal(0)
            for (report, line_no, terr, units, revenue), b in zip(usage, basis, strict=True):
                share = (exact_leaf * b / whole).quantize(PLACES) if whole else Decimal(0)
                running += share
                lines.append(
                    Line(
                        period,
                        "usage",
                        source,
                        pool,
                        cur,
                        str(report),
                        int(line_no),
                        str(terr),
                        item,
                        output_id or "",
                        isrc_text,
                        iswc_text,
                        role,
                        int(units),
                        Decimal(int(revenue)).scaleb(-6),
                        (rate * shown).quantize(PLACES),
                        attribution.quantize(PLACES),
                        split,
                        share,
                    )
                )
            lines.append(
                Line(
                    period,
                    "rounding",
                    source,
                    pool,
                    cur,
                    "",
                    None,
                    "",
                    item,
                    output_id or "",
                    isrc_text,
                    iswc_text,
                    role,
                    0,
                    Decimal(0),
                    Decimal(0),
                    Decimal(0),
                    split,
                    posted - running,
                )
            )
    outputs = []
    if per_output:
        rows = session.scalars(select(Output).where(Output.id.in_(list(per_output)))).all()
        for o in sorted(rows, key=lambda o: (-per_output[o.id], o.id)):
            outputs.append(
                {"id": o.id, "model": o.model, "prompt": o.prompt or "", "amount": per_output[o.id]}
            )
    return Statement(
        party_id, party.name, period, run.id, tuple(lines), dict(totals), tuple(outputs)
    )


def _usage_lines(
    con: duckdb.DuckDBPyConnection, mine: list[tuple[Any, ...]], isrcs: dict[int, str]
) -> dict[int, list[tuple[Any, ...]]]:
    """Per leaf (by index in ``mine``), the usage lines its pool drew on for its item.

    One join over the usage for all the party's leaves (not a scan per leaf): a line counts
    when its (pool, currency, territory) is covered for any item (AI pools) or for its item.
    """
    keys = [
        (n, row[0], row[4] or row[7] or isrcs.get(row[5], ""), row[2])
        for n, row in enumerate(mine)
        if row[8] is not None and row[14] is not None
    ]
    schema = pa.schema(
        [("n", pa.int64()), ("pool", pa.string()), ("item", pa.string()), ("cur", pa.string())]
    )
    rows = [dict(zip(schema.names, key, strict=True)) for key in keys]
    con.register("leaf_keys", pa.Table.from_pylist(rows, schema=schema))
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for n, *line in con.execute(
        """
        SELECT k.n, u.report, u.line, u.territory, u.units, u.revenue
        FROM leaf_keys k JOIN u ON u.item = k.item AND u.currency = k.cur
        JOIN cov c ON c.pool = k.pool AND c.currency = u.currency AND c.territory = u.territory
            AND c.item IS NULL
        UNION ALL
        SELECT k.n, u.report, u.line, u.territory, u.units, u.revenue
        FROM leaf_keys k JOIN u ON u.item = k.item AND u.currency = k.cur
        JOIN cov c ON c.pool = k.pool AND c.currency = u.currency AND c.territory = u.territory
            AND c.item = u.item
        ORDER BY 1, 2, 3
        """
    ).fetchall():
        found[int(n)].append(tuple(line))
    return found


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return str(value)


def to_csv(st: Statement) -> str:
    """The statement as CSV: one row per usage line and per rounding adjustment."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for line in st.lines:
        w.writerow([_text(v) for v in line])
    return buf.getvalue()


def _chart(totals: dict[tuple[str, str], Decimal]) -> str:
    """Inline SVG bars of earnings by source (AI outputs vs catalog), one bar per currency."""
    labels = {
        "ai": "AI outputs",
        "catalog": "Catalog",
        "direct": "Catalog (direct)",
        "suspense": "Suspense",
    }
    items = sorted(totals.items())
    top = max((v for v in totals.values()), default=Decimal(0)) or Decimal(1)
    height = 34 * len(items) + 10
    bars = []
    for i, ((source, cur), value) in enumerate(items):
        width = int(360 * value / top)
        y = 10 + 34 * i
        color = "#6b4fbb" if source == "ai" else "#2f855a"
        bars.append(
            f'<text x="0" y="{y + 16}" font-size="13">{html.escape(labels.get(source, source))}'
            f" ({cur})</text>"
            f'<rect x="170" y="{y}" width="{width}" height="22" fill="{color}"/>'
            f'<text x="{176 + width}" y="{y + 16}" font-size="13">{_text(value)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{height}" '
        f'role="img" aria-label="Earnings by source">{"".join(bars)}</svg>'
    )


def to_html(st: Statement) -> str:
    """The statement as a self-contained HTML page: chart, outputs that used the works, lines."""
    first, last = period_bounds(st.period)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in line) + "</tr>"
        for line in st.lines
    )
    outputs = (
        "".join(
            f"<tr><td>{html.escape(str(o['id']))}</td><td>{html.escape(str(o['model']))}</td>"
            f"<td>{html.escape(str(o['prompt'])[:200])}</td><td>{_text(o['amount'])}</td></tr>"
            for o in st.outputs
        )
        or '<tr><td colspan="4">No AI output used these works in this period.</td></tr>'
    )
    totals = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{c}</td><td>{_text(v)}</td></tr>"
        for (s, c), v in sorted(st.totals.items())
    )
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Royalty statement {html.escape(st.party_name)} {st.period}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:left}}</style>
</head><body>
<h1>Royalty statement</h1>
<p>{html.escape(st.party_name)} (party {st.party_id}), usage {first} to {last}, run {st.run_id}.</p>
<h2>Earnings by source</h2>
{_chart(st.totals)}
<table><tr><th>source</th><th>currency</th><th>amount</th></tr>{totals}</table>
<h2>AI outputs that used your works</h2>
<table><tr><th>output</th><th>model</th><th>prompt</th><th>amount</th></tr>{outputs}</table>
<h2>Every usage line</h2>
<table><tr>{head}</tr>{rows}</table>
</body></html>
"""


def to_dsr(st: Statement) -> str:
    """The statement as a DSR flat file (HEAD, SY02, RE01/AS02/SU02 blocks, FOOT) that
    ``ingest.parse_file`` reads back: one summary per source and currency, territory
    'Worldwide', one royalty-bearing usage line per item with the party's amount.
    """
    first, last = period_bounds(st.period)
    out = [
        [
            "HEAD",
            "dsrf/3/0/0",
            "BasicAudioProfile",
            "1.0",
            f"ATTUNE-STMT-{st.party_id}-{st.period}-{st.run_id}",
            f"{last}T23:59:59Z",
            "1",
            "1",
            first.isoformat(),
            last.isoformat(),
            "ATTUNE",
            "Attune",
            "Royalty statement",
            f"PARTY-{st.party_id}",
            st.party_name,
        ]
    ]
    groups: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for line in st.lines:
        groups[(line.source, line.currency)].append(line)
    blocks: list[list[str]] = []
    for n, ((source, cur), lines) in enumerate(sorted(groups.items()), start=1):
        sy = f"SY{n}"
        units = sum(line.units for line in lines if line.kind == "usage")
        out.append(
            [
                "SY02",
                sy,
                "AIOutputs" if source == "ai" else "Catalog",
                "AIGeneration" if source == "ai" else "Stream",
                WORLDWIDE,
                "Attune royalty statement",
                str(units),
                "",
                cur,
                _text(sum((line.amount for line in lines), Decimal(0))),
            ]
        )
        items: dict[str, list[Line]] = defaultdict(list)
        for line in lines:
            items[line.item or line.pool].append(line)
        for item, item_lines in sorted(items.items()):
            # One usage line per item: its lines and rounding adjustments sum to whole leaves,
            # so the amount is exact in the currency's minor unit.
            block = f"B{len(blocks) + 1}"
            first_line = item_lines[0]
            blocks.append(["RE01", block, f"R{block}", "", item, ""])
            blocks.append(
                [
                    "AS02",
                    block,
                    "A1",
                    "",
                    first_line.isrc,
                    "" if first_line.isrc else item,  # an output id, or an unattributed pool
                    "",
                    "",
                    first_line.output_id,
                ]
            )
            blocks.append(
                [
                    "SU02",
                    block,
                    sy,
                    f"{block}-1",
                    "A1",
                    "true",
                    str(sum(line.units for line in item_lines if line.kind == "usage")),
                    _text(sum((line.amount for line in item_lines), Decimal(0))),
                ]
            )
    out.extend(blocks)
    count = len(out) + 1
    out.append(
        ["FOOT", str(count), str(len(groups)), str(sum(1 for b in blocks if b[0] == "RE01"))]
    )
    return "".join("\t".join(r) + "\n" for r in out)
