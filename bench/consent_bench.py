"""Consent engine benchmark: batch decisions over a generated catalog vs a per-recording ORM loop.

    .venv/bin/python bench/consent_bench.py [--recordings 1000000] [--loop-sample 2000]

Generates one realistic catalog (labels of Zipf-distributed size, artists with their own
co-writers, re-recorded works, co-owned and featured recordings, agreements with territories,
exclusions, end dates, listed items and model-version pins, consent records of every scope with
revocations, time windows and territory limits) and writes it into a temporary SQLite file and a
temporary PostgreSQL database. The rows go in with bulk inserts (SQLite executemany, PostgreSQL
COPY), not through the audited registry: a million audited writes would take hours. The party
sets the registry derives for each recording are computed with the same functions it uses.

Then, per database and per (use, territory): decide_batch over the whole catalog (median of
--runs), and policy.decide recording by recording over the ORM on a random sample, extrapolated to
decisions per second. The sample's decisions must equal the batch's; the table shows any
disagreement. PostgreSQL is skipped with a message when it does not answer.

decide_batch answers with numpy-backed ids and Reason objects made when read; the "to Python"
column is the further wall time (median) a caller pays to turn the whole answer into Python
objects, ``list(allowed)`` and ``dict(excluded.items())``, as the CLI and the API do. Every timed
step starts after a full garbage collection: this process holds the generated rows, which a
collection triggered inside a timed step would walk (about 0.8 s at 1M recordings).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, text

from attune.rights.batch import BatchDecision, decide_batch, party_set_entries, set_signature
from attune.rights.policy import Decision, decide
from attune.store.db import make_engine, session_factory
from attune.store.migrate import upgrade

TARGET = 500_000
AT = date(2026, 6, 1)
COMBOS = (("train", "FR"), ("train", None), ("style_reference", "US"))
CREATED = datetime(2026, 1, 1)
HUNDRED = 100_000_000  # 100% in the Micro column's integer millionths
TERRITORIES = ("FR", "DE", "GB", "IT", "ES", "NL", "SE", "JP", "BR", "US")

Row = tuple[Any, ...]


@dataclass
class Catalog:
    """Generated rows per table, in an order that satisfies foreign keys."""

    tables: dict[str, tuple[Sequence[str], list[Row]]] = field(default_factory=dict)
    recordings: int = 0
    party_sets: int = 0

    def add(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        """Append rows to a table (declaring its columns on first use)."""
        self.tables.setdefault(table, (columns, []))[1].extend(rows)


def _zipf(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def generate(n_recordings: int, seed: int) -> Catalog:
    """A catalog of ``n_recordings`` with the mix of rights a label-heavy service sees."""
    rnd = random.Random(seed)
    cat = Catalog(recordings=n_recordings)
    scale = max(n_recordings / 1_000_000, 0.002)
    n_labels = max(20, int(150 * scale**0.5))
    n_artists = int(25_000 * scale) + 20
    n_writers = int(15_000 * scale) + 10
    labels = list(range(1, n_labels + 1))
    platforms = [n_labels + 1, n_labels + 2, n_labels + 3]
    artists = list(range(platforms[-1] + 1, platforms[-1] + 1 + n_artists))
    writers = list(range(artists[-1] + 1, artists[-1] + 1 + n_writers))
    party = ("id", "kind", "name", "created_at")
    cat.add("parties", party, [(p, "organisation", f"Label {p}", CREATED) for p in labels])
    cat.add("parties", party, [(p, "organisation", f"Platform {p}", CREATED) for p in platforms])
    cat.add("parties", party, [(p, "person", f"Artist {p}", CREATED) for p in artists])
    cat.add("parties", party, [(p, "person", f"Writer {p}", CREATED) for p in writers])
    roles = [(p, "label") for p in labels] + [(p, "platform") for p in platforms]
    roles += [(p, r) for p in artists for r in ("artist", "songwriter")]
    roles += [(p, "songwriter") for p in writers]
    cat.add("party_roles", ("party_id", "role"), roles)

    label_weight = _zipf(n_labels, 0.8)
    home = {a: rnd.choices(labels, label_weight)[0] for a in artists}
    moved = {a: rnd.choices(labels, label_weight)[0] for a in artists if rnd.random() < 0.15}
    team = {
        a: ([a] if rnd.random() < 0.6 else []) + rnd.sample(writers, rnd.randint(1, 3))
        for a in artists
    }
    work_rows: list[Row] = []
    share_rows: list[Row] = []
    works_of: dict[int, list[int]] = {}
    writers_of: dict[int, list[int]] = {}
    rec_rows: list[Row] = []
    owner_rows: list[Row] = []
    artist_rows: list[Row] = []
    set_ids: dict[str, int] = {}
    member_rows: list[Row] = []
    mapping_rows: list[Row] = []
    recordings_of_label: dict[int, list[int]] = {}
    for rid, artist in enumerate(rnd.choices(artists, _zipf(n_artists, 0.6), k=n_recordings), 1):
        mine = works_of.setdefault(artist, [])
        if mine and rnd.random() < 0.3:
            work_id: int | None = rnd.choice(mine)
        else:
            work_id = len(work_rows) + 1
            chosen = rnd.sample(team[artist], min(len(team[artist]), rnd.choice((1, 1, 2, 2, 3))))
            work_rows.append((work_id, f"Work {work_id}", CREATED))
            each, rest = divmod(HUNDRED, len(chosen))
            share_rows += [
                (work_id, i, w, "writer", each + (rest if i == 0 else 0))
                for i, w in enumerate(chosen)
            ]
            writers_of[work_id] = chosen
            mine.append(work_id)
        if rnd.random() < 0.003:
            work_id = None
        label = moved[artist] if artist in moved and rnd.random() < 0.4 else home[artist]
        owners = [label]
        if rnd.random() < 0.06 and (co := rnd.choice(labels)) != label:
            owners.append(co)
        cast = [(artist, "main" if rnd.random() > 0.001 else "featured")]
        if rnd.random() < 0.12 and (guest := rnd.choice(artists)) != artist:
            cast.append((guest, "featured"))
        isrc = f"GBATT{rid // 100_000:02d}{rid % 100_000:05d}"
        rec_rows.append((rid, f"Recording {rid}", isrc, 180_000, work_id, CREATED))
        each, rest = divmod(HUNDRED, len(owners))
        owner_rows += [(rid, i, o, each + (rest if i == 0 else 0)) for i, o in enumerate(owners)]
        artist_rows += [(rid, i, p, role) for i, (p, role) in enumerate(cast)]
        for o in owners:
            recordings_of_label.setdefault(o, []).append(rid)
        entries = party_set_entries(
            owners, cast, work_id is not None, writers_of[work_id] if work_id else []
        )
        signature = set_signature(entries)
        if signature not in set_ids:
            set_ids[signature] = len(set_ids) + 1
            member_rows += [(set_ids[signature], i, p, role) for i, (role, p) in enumerate(entries)]
        mapping_rows.append((rid, set_ids[signature]))
    cat.add("works", ("id", "title", "created_at"), work_rows)
    cat.add("work_shares", ("work_id", "position", "party_id", "role", "share"), share_rows)
    cat.add(
        "recordings",
        ("id", "title", "isrc", "duration_ms", "work_id", "created_at"),
        rec_rows,
    )
    cat.add("recording_owners", ("recording_id", "position", "party_id", "share"), owner_rows)
    cat.add("recording_artists", ("recording_id", "position", "party_id", "role"), artist_rows)
    _agreements(cat, rnd, labels, platforms, recordings_of_label, len(work_rows))
    _consents(cat, rnd, artists + writers, artist_rows, writers_of, len(rec_rows))
    cat.add("party_sets", ("id", "signature"), [(i, s) for s, i in set_ids.items()])
    cat.add("party_set_members", ("party_set_id", "position", "party_id", "role"), member_rows)
    cat.add("recording_party_sets", ("recording_id", "party_set_id"), mapping_rows)
    cat.party_sets = len(set_ids)
    return cat


def _agreements(
    cat: Catalog,
    rnd: random.Random,
    labels: list[int],
    platforms: list[int],
    recordings_of_label: dict[int, list[int]],
    n_works: int,
) -> None:
    """Per label: catalog-wide training licences (some territorial, excluding, ended), style
    licences (some pinned to a model version) and listed licences for part of the catalog."""
    rows: list[Row] = []
    uses: list[Row] = []
    territories: list[Row] = []
    pins: list[Row] = []
    items: list[Row] = []

    def agreement(label: int, licensed: Sequence[str], **kw: Any) -> int:
        aid = len(rows) + 1
        rows.append(
            (
                aid,
                label,
                kw.get("licensee", platforms[0]),
                kw.get("start", date(2025, 1, 1)),
                kw.get("end"),
                not kw.get("listed_territories"),
                not kw.get("items"),
                0,
                0,
                "EUR",
                CREATED,
            )
        )
        uses.extend((aid, u) for u in licensed)
        territories.extend((aid, t, False) for t in kw.get("listed_territories", ()))
        territories.extend((aid, t, True) for t in kw.get("excluded", ()))
        pins.extend((aid, m) for m in kw.get("pins", ()))
        for i, (rid, wid) in enumerate(kw.get("items", ())):
            items.append((aid, i, rid, wid))
        return aid

    for label in labels:
        r = rnd.random()
        if r < 0.7:
            excluded = rnd.choice(((), (), (), ("US",), ("CN", "RU")))
            agreement(label, ("train",), excluded=excluded)
        elif r < 0.78:
            agreement(label, ("train",), end=date(2026, 3, 31))
        elif r < 0.88:
            agreement(label, ("train",), listed_territories=rnd.sample(TERRITORIES, 4))
        if rnd.random() < 0.45:
            pinned = ("tonal-2.1",) if rnd.random() < 0.3 else ()
            agreement(label, ("style_reference",), pins=pinned, licensee=rnd.choice(platforms))
        if r >= 0.7 and rnd.random() < 0.5:
            catalog = recordings_of_label.get(label, [])
            listed: list[tuple[int | None, int | None]] = [
                (rid, None) for rid in rnd.sample(catalog, min(200, len(catalog)))
            ]
            listed += [(None, rnd.randint(1, n_works)) for _ in range(50)]
            agreement(label, ("train", "style_reference"), items=listed)
    cat.add(
        "agreements",
        (
            "id",
            "licensor_id",
            "licensee_id",
            "start_date",
            "end_date",
            "worldwide",
            "covers_all",
            "ai_revenue_share",
            "minimum_guarantee",
            "currency",
            "created_at",
        ),
        rows,
    )
    cat.add("agreement_uses", ("agreement_id", "use"), uses)
    cat.add("agreement_territories", ("agreement_id", "territory", "excluded"), territories)
    cat.add("agreement_model_versions", ("agreement_id", "model_version"), pins)
    cat.add("agreement_items", ("agreement_id", "position", "recording_id", "work_id"), items)


def _consents(
    cat: Catalog,
    rnd: random.Random,
    people: list[int],
    artist_rows: list[Row],
    writers_of: dict[int, list[int]],
    n_recordings: int,
) -> None:
    """Opt-ins, refusals, constrained grants, revocations, time windows, territory limits and
    recording- and work-scoped records, spread over 2025-2026."""
    rows: list[Row] = []
    places: list[Row] = []

    def record(
        who: int,
        use: str,
        decision: str,
        since: datetime,
        *,
        until: datetime | None = None,
        scope: tuple[str, int | None, int | None] = ("all", None, None),
        where: Sequence[str] = (),
        supersedes: int | None = None,
    ) -> int:
        cid = len(rows) + 1
        terms = '{"no_vocals":true}' if decision == "constrained" else None
        kind, rid, wid = scope
        rows.append(
            (
                cid,
                who,
                kind,
                rid,
                wid,
                use,
                decision,
                terms,
                since,
                until,
                not where,
                who,
                supersedes,
                since,
            )
        )
        places.extend((cid, t) for t in where)
        return cid

    def day() -> datetime:
        return datetime(2025, 1, 1) + (datetime(2026, 12, 1) - datetime(2025, 1, 1)) * rnd.random()

    for who in people:
        r = rnd.random()
        if r < 0.62:
            decision = "constrained" if r < 0.06 else "allowed"
            since = day()
            if rnd.random() < 0.03:
                record(who, "train", decision, since, until=since + (datetime(2026, 3, 1) - since))
            else:
                grant = record(who, "train", decision, since)
                if rnd.random() < 0.06:
                    record(who, "train", "not_allowed", day(), supersedes=grant)
            if rnd.random() < 0.04:
                record(who, "train", "not_allowed", day(), where=rnd.sample(TERRITORIES, 2))
        elif r < 0.72:
            record(who, "train", "not_allowed", day())
        s = rnd.random()
        if s < 0.35:
            record(who, "style_reference", "allowed", day())
        elif s < 0.45:
            record(who, "style_reference", "not_allowed", day())
    for _ in range(max(10, n_recordings // 400)):
        rid, _pos, who, _role = rnd.choice(artist_rows)
        decision = rnd.choice(("allowed", "not_allowed"))
        record(
            who,
            rnd.choice(("train", "style_reference")),
            decision,
            day(),
            scope=("recording", rid, None),
        )
    for _ in range(max(5, n_recordings // 1200)):
        wid = rnd.randint(1, len(writers_of))
        who = rnd.choice(writers_of[wid])
        decision = rnd.choice(("allowed", "not_allowed"))
        record(who, "train", decision, day(), scope=("work", None, wid))
    cat.add(
        "consents",
        (
            "id",
            "party_id",
            "scope",
            "recording_id",
            "work_id",
            "use",
            "decision",
            "terms",
            "effective_from",
            "effective_until",
            "worldwide",
            "recorded_by_id",
            "supersedes_id",
            "recorded_at",
        ),
        rows,
    )
    cat.add("consent_territories", ("consent_id", "territory"), places)


def _sqlite_value(value: Any) -> Any:
    """The text SQLAlchemy's SQLite dialect stores for instants, days and flags."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def load(engine: Engine, cat: Catalog) -> float:
    """Bulk-load the catalog (SQLite executemany, PostgreSQL COPY); returns seconds taken."""
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN")  # the driver connection autocommits: one transaction, not millions
        for table, (columns, rows) in cat.tables.items():
            names = ", ".join(columns)
            if engine.dialect.name == "sqlite":
                marks = ", ".join("?" * len(columns))
                cur.executemany(
                    f"INSERT INTO {table} ({names}) VALUES ({marks})",
                    [[_sqlite_value(v) for v in row] for row in rows],
                )
            else:
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        if engine.dialect.name == "postgresql":
            for table, (columns, _rows) in cat.tables.items():
                if "id" in columns:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


@dataclass
class Result:
    """One (database, use, territory) measurement."""

    database: str
    use: str
    territory: str | None
    decided: int
    batch_s: float
    batch_cpu_s: float
    objects_s: float
    loop_rate: float
    agree: int
    sample: int
    load: float

    @property
    def batch_rate(self) -> float:
        """Batch decisions per second of wall-clock time."""
        return self.decided / self.batch_s

    def cells(self) -> list[str]:
        """The table row: one string per column of COLUMNS."""
        return [
            self.database,
            self.use,
            self.territory or "everywhere",
            f"{self.batch_s:.2f}",
            f"{self.batch_rate:,.0f}",
            f"{self.batch_cpu_s:.2f}",
            f"{self.objects_s:.2f}",
            f"{self.loop_rate:,.0f}",
            f"{self.batch_rate / self.loop_rate:,.0f}x",
            f"{self.batch_rate / TARGET:.2f}x" if self.database == "SQLite" else "-",
            f"{self.agree}/{self.sample}",
            f"{self.load:.1f}",
        ]


COLUMNS = (
    "database",
    "use",
    "territory",
    "batch s (median)",
    "batch decisions/s",
    "batch CPU s (this process)",
    "to Python s",
    "loop decisions/s",
    "batch / loop",
    "batch / 500k target",
    "sample agrees",
    "load avg (1 min)",
)


def first_key(batch: BatchDecision, rid: int) -> tuple[Any, ...] | None:
    """The batch's first exclusion of a recording as code and ids (None when allowed)."""
    r = batch.excluded.get(rid)
    return None if r is None else (r.code, r.party_id, r.agreement_id, r.consent_id)


def decision_key(d: Decision) -> tuple[Any, ...] | None:
    """decide()'s first exclusion as code and ids (None when allowed)."""
    r = d.first_exclusion
    return None if r is None else (r.code, r.party_id, r.agreement_id, r.consent_id)


def measure(
    engine: Engine, name: str, n: int, runs: int, sample: list[int], console: Console
) -> Iterator[Result]:
    """Time decide_batch (median of ``runs``) and the per-recording loop for every combo."""
    factory = session_factory(engine)
    for use, territory in COMBOS:
        walls: list[float] = []
        cpus: list[float] = []
        objects: list[float] = []
        batch: BatchDecision | None = None
        load = os.getloadavg()[0]
        for _ in range(runs):
            # This process holds the generated catalog (7.7M row tuples at 1M recordings); a
            # full collection started inside a timed run would walk them all, so start clean.
            gc.collect()
            with factory() as s:
                cpu, wall = time.process_time(), time.perf_counter()
                batch = decide_batch(s, use, AT, territory)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                s.rollback()
            gc.collect()
            started = time.perf_counter()
            every = (list(batch.allowed), dict(batch.excluded.items()))
            objects.append(time.perf_counter() - started)
            del every
        assert batch is not None and len(batch) == n
        with factory() as s:
            started = time.perf_counter()
            decisions = [decide(s, use, rid, AT, territory) for rid in sample]
            loop_s = time.perf_counter() - started
            s.rollback()
        agree = sum(first_key(batch, d.recording_id) == decision_key(d) for d in decisions)
        console.log(
            f"{name} {use} {territory or 'everywhere'}: batch runs "
            f"{', '.join(f'{t:.2f}' for t in walls)} s, loop {loop_s:.1f} s, load {load:.1f}"
        )
        yield Result(
            name,
            use,
            territory,
            n,
            statistics.median(walls),
            statistics.median(cpus),
            statistics.median(objects),
            len(sample) / loop_s,
            agree,
            len(sample),
            load,
        )


def _pg_engine(admin_url: str, console: Console) -> tuple[Engine, Engine, str] | None:
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means: skip PostgreSQL
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        console.print(f"[yellow]PostgreSQL skipped ({admin_url} does not answer): {problem}")
        return None
    name = f"attune_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin, make_engine(admin_url.rsplit("/", 1)[0] + f"/{name}"), name


def markdown(results: list[Result]) -> str:
    """The results as a markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---:|" * (len(COLUMNS) - 3)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (Rich, then markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=1_000_000)
    parser.add_argument("--loop-sample", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="batch runs per combo (median)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="an admin URL; a temporary database is created beside it and dropped after",
    )
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    console = Console(stderr=True)

    started = time.perf_counter()
    cat = generate(args.recordings, args.seed)
    n = cat.recordings
    rows = sum(len(r) for _c, r in cat.tables.values())
    console.log(
        f"generated {n:,} recordings, {cat.party_sets:,} party sets, {rows:,} rows "
        f"in {time.perf_counter() - started:.1f}s"
    )
    sample = random.Random(args.seed + 1).sample(range(1, n + 1), min(args.loop_sample, n))
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        console.log(f"SQLite: loaded in {load(engine, cat):.1f}s")
        results += measure(engine, "SQLite", n, args.runs, sample, console)
        engine.dispose()
    pg = None if args.no_pg else _pg_engine(args.pg_url, console)
    if pg is not None:
        admin, engine, name = pg
        try:
            upgrade(engine)
            console.log(f"PostgreSQL: loaded in {load(engine, cat):.1f}s")
            results += measure(engine, "PostgreSQL", n, args.runs, sample, console)
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    table = Table(title=f"Consent decisions over {n:,} recordings ({cat.party_sets:,} party sets)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("database", "use") else "right")
    for r in results:
        table.add_row(*r.cells())
    Console(width=200).print(table)
    print()
    print(markdown(results))
    return 0 if all(r.agree == r.sample for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
