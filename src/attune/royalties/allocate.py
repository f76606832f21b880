"""Allocation: usage Parquet + registry snapshot -> pools -> items -> parties, set-based in DuckDB.

All money is integer: revenue in micro-units, pools and payouts in the currency's minor unit.
Each split is a largest-remainder allocation (floor, then one unit to each of the largest
remainders, ties broken by key), so every allocation sums exactly to what it divides.

The rule, per usage period:
  AI pool (agreement, currency) = round(AI revenue of the licensee's outputs in territories the
    agreement covers x ai_revenue_share), raised to the minimum guarantee (the top-up is
    recoupable) or lowered by recoupment of earlier top-ups.
  AI pool -> (output, item) pairs by units x attribution share, over the items the agreement
    covers (recordings its licensor owns, works its licensor holds a share of); no such usage:
    the whole pool to the licensor.
  Catalog pool (agreement, currency) = round(revenue of streams on recordings it governs), split
    over recordings by units (pro_rata) or listener by listener (user_centric).
  Recording -> master owners by master splits, and (its publishing share) -> writers and
    publishers by the splits of its work; a work -> its writers and publishers.
  Streams on recordings no agreement governs pay each recording its own revenue; streams on
  unregistered ISRCs go to suspense.

Usage-level work (pools, pairs, governance) runs in DuckDB; the two item-level splits (pools
over pairs, pairs over parties) and each listener's user-centric split run in numpy on integer
keys (attune.royalties.split), in int64 where products fit and in exact Python integers where
they do not. So do the per-recording totals of recordings governed everywhere by one
agreement (summed by ISRC number, no hash table) and the lookup of that agreement.

Item totals come in integer codes: from the coded rollup ingest writes beside each usage
file where every file has one (attune.royalties.ingest.write_listens), so that only the
distinct ISRCs' strings are joined to recordings; otherwise from the string rollup
(write_totals) or the lines, numbered at allocation. User-centric lines come from the
integer-coded ISRC lines where every file has them, else from the lines. Stages that do not
depend on each other run side by side on cursors of one DuckDB database.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import itertools
import math
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from attune.royalties import split
from attune.royalties.ingest import coded_totals_path, listens_paths, totals_path
from attune.royalties.money import div_half_even, exponent, micro_per_minor

ALGORITHM = "attune-allocation/1"
PERCENT = 100_000_000  # 100% in micro-percent, the unit of master and publishing splits
WHOLE = 1_000_000  # a fraction of 1 in micro-units: attribution and publishing shares
PAIR_WEIGHT = PERCENT * WHOLE  # every item's split weights add up to this
ROLES = ("master", "publishing", "suspense")  # leaf roles, in tie-break (name) order
MASTER, PUBLISHING, SUSPENSE = range(3)

SNAPSHOT_SCHEMAS: dict[str, pa.Schema] = {
    "recordings": pa.schema(
        [("recording_id", pa.int64()), ("isrc", pa.string()), ("work_id", pa.int64())]
    ),
    "owners": pa.schema(
        [("recording_id", pa.int64()), ("party_id", pa.int64()), ("share", pa.int64())]
    ),
    "work_shares": pa.schema(
        [
            ("work_id", pa.int64()),
            ("party_id", pa.int64()),
            ("role", pa.string()),
            ("share", pa.int64()),
        ]
    ),
    "outputs": pa.schema(
        [("output_id", pa.string()), ("platform_id", pa.int64()), ("model", pa.string())]
    ),
    "attributions": pa.schema(
        [
            ("output_id", pa.string()),
            ("recording_id", pa.int64()),
            ("work_id", pa.int64()),
            ("share", pa.int64()),
        ]
    ),
    "agreements": pa.schema(
        [
            ("agreement_id", pa.int64()),
            ("licensor_id", pa.int64()),
            ("licensee_id", pa.int64()),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("worldwide", pa.bool_()),
            ("covers_all", pa.bool_()),
            ("ai_share", pa.int64()),
            ("minimum_guarantee", pa.int64()),
            ("currency", pa.string()),
            ("catalog_policy", pa.string()),
            ("ai_publishing", pa.int64()),
            ("catalog_publishing", pa.int64()),
        ]
    ),
    "territories": pa.schema(
        [("agreement_id", pa.int64()), ("territory", pa.string()), ("excluded", pa.bool_())]
    ),
    "items": pa.schema(
        [("agreement_id", pa.int64()), ("recording_id", pa.int64()), ("work_id", pa.int64())]
    ),
    "models": pa.schema([("agreement_id", pa.int64()), ("model", pa.string())]),
}
POOLS_SCHEMA = pa.schema(
    [
        ("pool", pa.string()),
        ("source", pa.string()),
        ("agreement_id", pa.int64()),
        ("currency", pa.string()),
        ("payer", pa.string()),
        ("revenue", pa.int64()),
        ("earned", pa.int64()),
        ("guarantee", pa.int64()),
        ("recouped", pa.int64()),
        ("amount", pa.int64()),
        ("policy", pa.string()),
    ]
)
HUGEINT = pa.decimal128(38, 0)  # DuckDB's HUGEINT in Arrow
TEXT = pa.dictionary(pa.int32(), pa.string())  # leaves' strings index their pools' and outputs'
LEAVES_SCHEMA = pa.schema(
    [
        ("pool", TEXT),
        ("source", TEXT),
        ("agreement_id", pa.int64()),
        ("currency", TEXT),
        ("pair", pa.int64()),
        ("output_id", TEXT),
        ("recording_id", pa.int64()),
        ("work_id", pa.int64()),
        ("isrc", pa.string()),
        ("pair_weight", HUGEINT),
        ("pair_amount", pa.int64()),
        ("role", pa.dictionary(pa.int8(), pa.string())),
        ("party_id", pa.int64()),
        ("leaf_weight", HUGEINT),
        ("amount", pa.int64()),
    ]
)
REGISTRY_SQL = """
    CREATE TABLE ga AS SELECT * FROM s_agreements
        WHERE start_date <= DATE '{last}' AND (end_date IS NULL OR end_date >= DATE '{first}');
    CREATE TABLE covers_rec AS
        SELECT DISTINCT g.agreement_id, r.recording_id
        FROM ga g JOIN s_owners h ON h.party_id = g.licensor_id
        JOIN s_recordings r ON r.recording_id = h.recording_id
        LEFT JOIN s_items i ON i.agreement_id = g.agreement_id
            AND i.recording_id = r.recording_id
        LEFT JOIN s_items j ON j.agreement_id = g.agreement_id AND j.work_id = r.work_id
        WHERE g.covers_all OR i.agreement_id IS NOT NULL OR j.agreement_id IS NOT NULL;
    CREATE TABLE covers_work AS
        SELECT DISTINCT g.agreement_id, h.work_id
        FROM ga g JOIN s_work_shares h ON h.party_id = g.licensor_id
        LEFT JOIN s_items i ON i.agreement_id = g.agreement_id AND i.work_id = h.work_id
        WHERE g.covers_all OR i.agreement_id IS NOT NULL;
    -- Outputs numbered in id order, so that pairs sort and group on integers.
    CREATE TABLE out_no AS
        SELECT output_id, row_number() OVER (ORDER BY output_id) AS out_no
        FROM (SELECT DISTINCT output_id FROM s_outputs WHERE output_id IS NOT NULL);
"""
# What needs the usage's territories and AI usage (agg_out, usage_territories).
USAGE_SQL = """
    CREATE TABLE cov AS
        SELECT g.agreement_id, t.territory
        FROM ga g CROSS JOIN usage_territories t
        LEFT JOIN s_territories x
            ON x.agreement_id = g.agreement_id AND x.territory = t.territory
        WHERE CASE WHEN t.territory = 'Worldwide'
            -- usage not reported per country: only a worldwide grant without exceptions
            THEN g.worldwide AND NOT EXISTS (SELECT 1 FROM s_territories e
                WHERE e.agreement_id = g.agreement_id AND e.excluded)
            ELSE (g.worldwide AND (x.territory IS NULL OR NOT x.excluded))
                OR (NOT g.worldwide AND x.territory IS NOT NULL AND NOT x.excluded) END;
    CREATE TABLE ai_usage AS
        SELECT a.currency, a.territory, a.item AS output_id, n.out_no, o.platform_id,
            o.model, a.units, a.revenue
        FROM agg_out a JOIN s_outputs o ON o.output_id = a.item
        JOIN out_no n ON n.output_id = a.item;
    CREATE TABLE ai_sums AS
        SELECT platform_id, model, territory, currency, sum(revenue) AS revenue
        FROM ai_usage GROUP BY ALL;
    CREATE TABLE ai_ok AS
        SELECT DISTINCT g.agreement_id, x.platform_id, x.model, x.territory
        FROM (SELECT DISTINCT platform_id, model, territory FROM ai_sums) x
        JOIN ga g ON g.licensee_id = x.platform_id
        JOIN cov c ON c.agreement_id = g.agreement_id AND c.territory = x.territory
        WHERE NOT EXISTS (SELECT 1 FROM s_models m WHERE m.agreement_id = g.agreement_id)
            OR EXISTS (SELECT 1 FROM s_models m
                       WHERE m.agreement_id = g.agreement_id AND m.model = x.model);
    CREATE TABLE aie AS
        SELECT k.agreement_id, s.currency, sum(s.revenue) AS revenue
        FROM ai_sums s JOIN ai_ok k ON k.platform_id = s.platform_id
            AND k.model = s.model AND k.territory = s.territory
        GROUP BY ALL;
    -- A recording whose lowest covering agreement covers every usage territory is
    -- governed by it everywhere (_governing); only the others need a minimum per territory.
    CREATE TABLE full_cover AS
        SELECT agreement_id FROM cov GROUP BY ALL
        HAVING count(DISTINCT territory) = (SELECT count(territory) FROM usage_territories);
"""
AI_SQL = """
    -- Attributions an agreement covers; n counts repeats of one (output, item, share).
    CREATE TABLE ai_cover AS
        SELECT agreement_id, n.out_no, recording_id, work_id, share, count(*) AS n
        FROM (
            SELECT agreement_id, recording_id, NULL::BIGINT AS work_id, t.output_id, t.share
            FROM covers_rec c JOIN s_attributions t USING (recording_id)
            UNION ALL
            SELECT agreement_id, NULL::BIGINT, work_id, t.output_id, t.share
            FROM covers_work c JOIN s_attributions t USING (work_id)
        ) JOIN out_no n USING (output_id)
        GROUP BY ALL;
    -- Units of covered outputs in the territories each agreement grants. Agreements that
    -- grant the same (platform, model, territory) set share one class, and units are
    -- summed once per class and output rather than once per agreement and output.
    CREATE TABLE ai_class AS
        SELECT agreement_id, dense_rank() OVER (ORDER BY grants) AS cls
        FROM (SELECT agreement_id,
                  list((platform_id, model, territory)
                       ORDER BY platform_id, model, territory) AS grants
              FROM ai_ok GROUP BY ALL);
    CREATE TABLE class_units AS
        SELECT k.cls, u.currency, u.out_no, sum(u.units) AS units
        FROM ai_usage u
        JOIN (SELECT DISTINCT c.cls, k.platform_id, k.model, k.territory
              FROM ai_ok k JOIN ai_class c USING (agreement_id)) k
            ON k.platform_id = u.platform_id AND k.model = u.model
            AND k.territory = u.territory
        GROUP BY ALL HAVING sum(u.units) > 0;
"""
# Each source's pairs, ordered by pool number (pools in name order, so sources come in the
# order ai, catalog, direct, suspense) and within a pool by the key that orders pairs among
# equal remainders (and so numbers them). An AI pair's weight comes last: an output may
# attribute the same item twice, and such pairs differ only in weight. The other sources' pairs
# are sums per recording (or ISRC) in their pool, so that key alone orders them. AI pairs of no
# weight are left out; so are pools with no pair.
PAIR_COLUMNS = "n.pool_ix, p.amount AS total"
AI_PAIRS = f"""
    SELECT {PAIR_COLUMNS}, c.out_no, c.recording_id, c.work_id, NULL::VARCHAR AS isrc,
        (x.units * c.n)::HUGEINT * c.share AS weight
    FROM ai_cover c JOIN ai_class a USING (agreement_id)
    JOIN class_units x ON x.cls = a.cls AND x.out_no = c.out_no
    JOIN pools p ON p.source = 'ai' AND p.agreement_id = c.agreement_id
        AND p.currency = x.currency
    JOIN pool_no n ON n.pool = p.pool
    WHERE (x.units * c.n)::HUGEINT * c.share > 0
    ORDER BY n.pool_ix, c.out_no, c.recording_id NULLS FIRST, c.work_id NULLS FIRST, weight
"""
CATALOG_PAIRS = f"""
    SELECT {PAIR_COLUMNS}, NULL::BIGINT AS out_no, c.recording_id, NULL::BIGINT AS work_id,
        NULL::VARCHAR AS isrc,
        CASE WHEN p.source = 'direct' THEN c.revenue ELSE c.units::HUGEINT END AS weight
    FROM cat_rec c
    JOIN pools p ON p.source IN ('catalog', 'direct') AND p.policy <> 'user_centric'
        AND coalesce(p.agreement_id, -1) = coalesce(c.agreement_id, -1)
        AND p.currency = c.currency
    JOIN pool_no n ON n.pool = p.pool
    ORDER BY n.pool_ix, c.recording_id
"""
# Pairs of user-centric pools, weighed by the user-centric split (table uc_w).
USER_CENTRIC_PAIRS = f"""
    SELECT {PAIR_COLUMNS}, NULL::BIGINT AS out_no, c.recording_id, NULL::BIGINT AS work_id,
        NULL::VARCHAR AS isrc, w.weight
    FROM cat_rec c
    JOIN pools p ON p.source = 'catalog' AND p.policy = 'user_centric'
        AND p.agreement_id = c.agreement_id AND p.currency = c.currency
    JOIN pool_no n ON n.pool = p.pool
    LEFT JOIN uc_w w ON w.currency = c.currency AND w.agreement_id = c.agreement_id
        AND w.recording_id = c.recording_id
    ORDER BY n.pool_ix, c.recording_id
"""
SUSPENSE_PAIRS = f"""
    SELECT {PAIR_COLUMNS}, NULL::BIGINT AS out_no, NULL::BIGINT AS recording_id,
        NULL::BIGINT AS work_id, c.isrc, sum(c.revenue)::HUGEINT AS weight
    FROM suspended c JOIN pools p ON p.source = 'suspense' AND p.currency = c.currency
    JOIN pool_no n ON n.pool = p.pool
    GROUP BY ALL
    ORDER BY n.pool_ix, c.isrc
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry as the allocation sees it: one Arrow table per name in SNAPSHOT_SCHEMAS.

    Splits are micro-percent (100% = 100,000,000); attribution, AI and publishing shares are
    micro-fractions (1 = 1,000,000); minimum guarantees are micro-units of the currency.
    """

    tables: dict[str, pa.Table]

    def digest(self) -> str:
        """SHA-256 over every table's rows in a canonical order (for the run's input hash)."""
        h = hashlib.sha256()
        con = connect()
        for name in sorted(SNAPSHOT_SCHEMAS):
            con.register("t", self.tables[name])
            rows = con.execute("SELECT * FROM t ORDER BY ALL").fetchall()
            h.update(name.encode())
            h.update(repr(rows).encode())
            con.unregister("t")
        return h.hexdigest()


def snapshot(**tables: Sequence[dict[str, Any]] | pa.Table) -> Snapshot:
    """Build a Snapshot from rows (dicts) or Arrow tables; missing tables are empty."""
    out: dict[str, pa.Table] = {}
    for name, schema in SNAPSHOT_SCHEMAS.items():
        given = tables.get(name, [])
        if isinstance(given, pa.Table):
            out[name] = given.select(schema.names).cast(schema)
        else:
            out[name] = pa.Table.from_pylist(list(given), schema=schema)
    unknown = set(tables) - set(SNAPSHOT_SCHEMAS)
    if unknown:
        raise ValueError(f"unknown snapshot tables: {', '.join(sorted(unknown))}")
    return Snapshot(out)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The result of allocating one period: pools, and leaves (pool -> pair -> party amounts).

    Every pool's leaves sum exactly to its amount. ``coverage`` lists, per pool, the
    (currency, territory, item) usage groups it was computed from, so a statement can trace
    every usage line; ``summary`` counts what was not pooled.
    """

    period: str
    pools: pa.Table
    leaves: pa.Table
    coverage: pa.Table
    summary: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """SHA-256 of pools and leaves in canonical order: equal results, equal digests.

        Hashes the sorted rows as Parquet, which stores values only (never the bytes Arrow
        leaves under nulls), so equal tables always give equal bytes.
        """
        h = hashlib.sha256()
        con = connect()
        for name, table in (("pools", self.pools), ("leaves", self.leaves)):
            con.register("t", table)
            ordered = con.sql("SELECT * FROM t ORDER BY ALL").to_arrow_table()
            buf = io.BytesIO()
            pq.write_table(ordered, buf, compression="none", write_statistics=False)
            h.update(name.encode())
            h.update(buf.getvalue())
            con.unregister("t")
        return h.hexdigest()


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that draws no progress bar on the CLI's stdout."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of a YYYY-MM period."""
    year, month = int(period[:4]), int(period[5:7])
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return first, date.fromordinal(nxt.toordinal() - 1)


def _listing(paths: Iterable[str | Path]) -> str:
    """SQL list literal of file paths."""
    return ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)


def _pools(
    con: duckdb.DuckDBPyConnection, agreements: pa.Table, recoupable: dict[int, int]
) -> pa.Table:
    """AI, catalog, direct and suspense pools; guarantees and recoupment applied per AI pool."""
    rows: list[dict[str, Any]] = []
    ag = {r["agreement_id"]: r for r in agreements.to_pylist()}
    basis = {
        (int(a), str(c)): int(rev)
        for a, c, rev in con.execute("SELECT agreement_id, currency, revenue FROM aie").fetchall()
    }
    for a in con.execute("SELECT agreement_id FROM ga WHERE minimum_guarantee > 0").fetchall():
        basis.setdefault((int(a[0]), str(ag[a[0]]["currency"])), 0)
    for (aid, cur), revenue in sorted(basis.items()):
        g = ag[aid]
        unit = 10 ** (12 - exponent(cur))  # revenue x share is in 1e-12 of the currency
        earned = div_half_even(revenue * int(g["ai_share"]), unit)
        guarantee = recouped = 0
        if cur == g["currency"] and g["minimum_guarantee"] > 0:
            floor = int(g["minimum_guarantee"]) // micro_per_minor(cur)
            if earned < floor:
                guarantee = floor - earned
            else:
                owed = recoupable.get(aid, 0) // micro_per_minor(cur)
                recouped = max(0, min(owed, earned - floor))
        rows.append(
            {
                "pool": f"ai:{aid}:{cur}",
                "source": "ai",
                "agreement_id": aid,
                "currency": cur,
                "payer": f"party:{g['licensee_id']}",
                "revenue": revenue,
                "earned": earned,
                "guarantee": guarantee,
                "recouped": recouped,
                "amount": earned + guarantee - recouped,
                "policy": "attribution",
            }
        )
    for aid, cur, revenue, policy in con.execute(
        """
        SELECT c.agreement_id, c.currency, sum(c.revenue), any_value(g.catalog_policy)
        FROM cat_rec c LEFT JOIN ga g ON g.agreement_id = c.agreement_id
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall():
        source = "catalog" if aid is not None else "direct"
        amount = div_half_even(int(revenue), micro_per_minor(cur))
        rows.append(
            {
                "pool": f"{source}:{aid if aid is not None else '-'}:{cur}",
                "source": source,
                "agreement_id": aid,
                "currency": cur,
                "payer": "catalog",
                "revenue": int(revenue),
                "earned": amount,
                "guarantee": 0,
                "recouped": 0,
                "amount": amount,
                "policy": policy or "per_recording",
            }
        )
    for cur, revenue in con.execute(
        "SELECT currency, sum(revenue) FROM suspended GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        amount = div_half_even(int(revenue), micro_per_minor(cur))
        rows.append(
            {
                "pool": f"suspense:-:{cur}",
                "source": "suspense",
                "agreement_id": None,
                "currency": cur,
                "payer": "catalog",
                "revenue": int(revenue),
                "earned": amount,
                "guarantee": 0,
                "recouped": 0,
                "amount": amount,
                "policy": "unmatched",
            }
        )
    return pa.Table.from_pylist(rows, schema=POOLS_SCHEMA)


def _column(table: pa.Table, name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """A nullable BIGINT column as int64 values (0 where NULL) and its NULL mask."""
    col = table.column(name)
    if not col.null_count:  # no fill (a copy) needed
        return np.asarray(col.to_numpy(), dtype=np.int64), np.zeros(len(col), dtype=bool)
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64), nulls


def _nullable(values: npt.NDArray[Any], nulls: npt.NDArray[np.bool_]) -> pa.Array:
    """A numpy column as Arrow, NULL where ``nulls``; the validity bitmap is packed directly
    (``pa.array(values, mask=...)`` takes a slow path when any value is masked)."""
    values = np.ascontiguousarray(values)
    count = int(np.count_nonzero(nulls))
    bitmap = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if count else None
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), len(values), [bitmap, pa.py_buffer(values)], count
    )


def _decimal(values: split.Ints) -> pa.Array:
    """Exact integers as DECIMAL(38, 0), the Arrow type of DuckDB's HUGEINT."""
    if values.dtype == np.int64:
        # Two's-complement 128-bit little-endian words: the value, then its sign extension.
        words = np.empty((len(values), 2), dtype=np.int64)
        words[:, 0], words[:, 1] = values, values >> 63
        return pa.Array.from_buffers(HUGEINT, len(values), [None, pa.py_buffer(words)])
    return pa.array([Decimal(int(v)) for v in values], HUGEINT)


@dataclass(frozen=True, slots=True)
class _Splits:
    """Split rows (owners of recordings, shares of works) sorted by key, then tie-break order."""

    key: split.SortedKeys
    party: npt.NDArray[np.int64]
    party_null: npt.NDArray[np.bool_]
    share: split.Ints

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection, table: str, key: str) -> _Splits:
        """The rows of a snapshot split table, ordered by (key, party NULLS LAST, share)."""
        rows = con.sql(
            f"SELECT {key} AS k, party_id, coalesce(share, 0) AS share FROM {table} "
            f"WHERE {key} IS NOT NULL ORDER BY k, party_id NULLS LAST, share"
        ).to_arrow_table()
        party, party_null = _column(rows, "party_id")
        index = split.SortedKeys(_column(rows, "k")[0])
        return cls(index, party, party_null, split.as_ints(rows.column("share")))


@dataclass(slots=True)
class _LeafRows:
    """Leaves under construction: per row its pair (index), role, party and weight."""

    pair: list[npt.NDArray[np.int64]] = field(default_factory=list)
    role: list[npt.NDArray[np.int8]] = field(default_factory=list)
    party: list[npt.NDArray[np.int64]] = field(default_factory=list)
    party_null: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    weight: list[split.Ints] = field(default_factory=list)

    def join(
        self, pairs: npt.NDArray[np.int64], keys: npt.NDArray[np.int64], splits: _Splits,
        factor: split.Ints, role: int,
    ) -> None:  # fmt: skip
        """One row per split row of each pair's key, weighing share x the pair's factor."""
        left, right = splits.key.expand(keys[pairs])
        idx = pairs[left]
        self._add(idx, role, splits.party[right], splits.party_null[right],
                  split.mul(split.fit(splits.share[right]), split.fit(factor[idx])))  # fmt: skip

    def single(self, pairs: npt.NDArray[np.int64], weight: split.Ints, role: int) -> None:
        """One party-less row per pair."""
        n = len(pairs)
        self._add(pairs, role, np.zeros(n, np.int64), np.ones(n, bool), split.fit(weight[pairs]))

    def _add(
        self, pair: npt.NDArray[np.int64], role: int, party: npt.NDArray[np.int64],
        party_null: npt.NDArray[np.bool_], weight: split.Ints,
    ) -> None:  # fmt: skip
        """Append rows of one role."""
        self.pair.append(pair)
        self.role.append(np.full(len(pair), role, dtype=np.int8))
        self.party.append(party)
        self.party_null.append(party_null)
        self.weight.append(weight)


def _pool_rows(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Pools in name order, with their publishing share and (AI pools) licensor."""
    return con.sql(
        """
        SELECT n.pool_ix, p.pool, p.source, p.agreement_id, p.currency, p.amount,
            CASE WHEN p.source = 'ai' THEN g.ai_publishing
                 ELSE coalesce(g.catalog_publishing, 0) END AS pub,
            s.licensor_id
        FROM pools p JOIN pool_no n USING (pool)
        LEFT JOIN ga g ON g.agreement_id = p.agreement_id
        LEFT JOIN s_agreements s ON s.agreement_id = p.agreement_id AND p.source = 'ai'
        ORDER BY n.pool_ix
        """
    ).to_arrow_table()


@dataclass(frozen=True, slots=True)
class _Registry:
    """What the leaves need of the snapshot, read once and shared (read-only) by all parts."""

    owners: _Splits
    shares: _Splits
    rec_key: split.SortedKeys  # recording ids
    rec_work: npt.NDArray[np.int64]  # and their works (0 where NULL)
    rec_work_null: npt.NDArray[np.bool_]
    outputs: pa.Array  # output ids by number - 1

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> _Registry:
        """Split tables, recording works and output names from the connection's snapshot."""
        recs = con.sql(
            "SELECT recording_id, work_id FROM s_recordings WHERE recording_id IS NOT NULL "
            "ORDER BY recording_id"
        ).to_arrow_table()
        names = con.sql("SELECT output_id FROM out_no ORDER BY out_no").to_arrow_table()
        return cls(
            _Splits.read(con, "s_owners", "recording_id"),
            _Splits.read(con, "s_work_shares", "work_id"),
            split.SortedKeys(_column(recs, "recording_id")[0]),
            *_column(recs, "work_id"),
            names.column(0).combine_chunks().cast(pa.string()),
        )


def _leaf_rows(reg: _Registry, pools: pa.Table, pairs: pa.Table) -> _LeafRows:
    """Each pair's parties, by the splits of its recording, work or ISRC (as leaves_in was).

    A pair's rows come out role by role (master, publishing, suspense), each role's in
    (party NULLS LAST, share) order: the leaves' tie-break order.
    """
    n = pairs.num_rows
    pub, pub_null = _column(pools, "pub")
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    pub, pub_null = pub[pool_ix], pub_null[pool_ix]
    rec, rec_null = _column(pairs, "recording_id")
    work, work_null = _column(pairs, "work_id")
    isrc_null = np.asarray(pairs.column("isrc").is_null().to_numpy(zero_copy_only=False))
    # The work of each pair's recording (NULL where the recording is unknown or has none).
    at, found = reg.rec_key.expand(rec[~rec_null])
    on_rec = np.flatnonzero(~rec_null)[at]
    pair_work, pair_work_null = np.zeros(n, np.int64), np.ones(n, bool)
    pair_work[on_rec], pair_work_null[on_rec] = reg.rec_work[found], reg.rec_work_null[found]
    rows = _LeafRows()
    rec_pub = ~rec_null & ~pub_null
    published = rec_pub & (pub > 0)
    rows.join(np.flatnonzero(rec_pub & (pub < WHOLE)), rec, reg.owners, WHOLE - pub, MASTER)
    rows.join(np.flatnonzero(published & ~pair_work_null), pair_work, reg.shares, pub,
              PUBLISHING)  # fmt: skip
    rows.single(np.flatnonzero(published & pair_work_null), split.mul(pub, np.full(n, PERCENT)),
                SUSPENSE)  # fmt: skip
    rows.join(np.flatnonzero(~work_null), work, reg.shares, np.full(n, WHOLE), PUBLISHING)
    rows.single(np.flatnonzero(~isrc_null), np.full(n, PAIR_WEIGHT), SUSPENSE)
    return rows


def _leaf_runs(
    background: ThreadPoolExecutor, reg: _Registry, pools: pa.Table, pairs: pa.Table, parts: int
) -> list[Future[tuple[pa.Table, npt.NDArray[np.int64]]]]:
    """Levels 1 and 2 in numpy, each pool over its pairs and each pair over its parties, for
    whole pools' pairs (in pool order), started on ``background``.

    Pools are independent, so their pairs are cut at pool boundaries into ``parts`` runs of
    about equal size that threads allocate side by side (numpy and Arrow release the GIL).
    """
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, pool_ix[1:] != pool_ix[:-1]]) if len(pool_ix) else pool_ix
    at = np.searchsorted(first, np.arange(1, parts) * len(pool_ix) / parts)
    cuts = np.unique(first[np.minimum(at, len(first) - 1)]) if len(first) else first
    bounds = np.r_[0, cuts[cuts > 0], len(pool_ix)].astype(np.int64)
    return [
        background.submit(_leaves_of, reg, pools, pairs.slice(lo, hi - lo))
        for lo, hi in itertools.pairwise(bounds.tolist())
    ]


def _leaves(
    runs: list[Future[tuple[pa.Table, npt.NDArray[np.int64]]]], pools: pa.Table
) -> pa.Table:
    """The runs' leaves in pool order, then those of AI pools no pair reached."""
    done = [run.result() for run in runs]
    reached = np.concatenate([np.zeros(0, np.int64), *(r for _, r in done)])
    return pa.concat_tables([*(table for table, _ in done), _unattributed(pools, reached)])


def _leaves_of(
    reg: _Registry, pools: pa.Table, pairs: pa.Table
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """Leaves of whole pools' pairs (in pair order); also the pools they reach.

    Pair ids are the pool's number (pools in name order) x 2^32 + the pair's place in the
    pool's largest-remainder order (remainder, then pair order), so numbering needs no global
    sort.
    """
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, pool_ix[1:] != pool_ix[:-1]]) if len(pool_ix) else pool_ix
    sizes = np.diff(np.r_[first, len(pool_ix)]).astype(np.int64)
    totals = np.asarray(pairs.column("total").to_numpy(), dtype=np.int64)[first]
    pair_weight = split.as_ints(pairs.column("weight"))
    # A pool whose pairs weigh nothing in all is split equally: each pair weighs 1.
    weightless = (
        np.repeat(split.group_sums(pair_weight, first) == 0, sizes)
        if len(first)
        else np.zeros(0, dtype=bool)
    )
    if weightless.any():
        pair_weight = split.fit(np.where(weightless, 1, pair_weight))
    pair_amount, rank = split.largest_remainder(totals, sizes, pair_weight)
    rows = _leaf_rows(reg, pools, pairs)
    pair = np.concatenate([np.zeros(0, np.int64), *rows.pair])
    order = np.argsort(pair, kind="stable")  # pair by pair, each pair's rows in tie-break order
    pair = pair[order]
    exact = all(w.dtype == np.int64 for w in rows.weight)
    leaf_weight = np.concatenate(
        [np.zeros(0, np.int64), *(w if exact else w.astype(object) for w in rows.weight)]
    )[order]
    counts = np.bincount(pair, minlength=len(pool_ix))
    paid = np.flatnonzero(counts)
    amount, _ = split.largest_remainder(pair_amount[paid], counts[paid], leaf_weight)
    leaf_pool, by_pair = pool_ix[pair], pa.array(pair)
    by_pool = pa.array(leaf_pool.astype(np.int32))
    out_no = np.asarray(pairs.column("out_no").fill_null(0).to_numpy(), dtype=np.int64)[pair]
    # String columns are dictionaries over the pools' and outputs' strings: no string copied.
    text = {
        name: pa.DictionaryArray.from_arrays(pc.take(codes.indices, by_pool), codes.dictionary)
        for name in ("pool", "source", "currency")
        for codes in [pc.dictionary_encode(pools.column(name).combine_chunks())]
    }
    leaves = pa.table(
        {
            "pool": text["pool"],
            "source": text["source"],
            "agreement_id": pools.column("agreement_id").take(by_pool),
            "currency": text["currency"],
            "pair": ((pool_ix + 1) * 4294967296 + rank)[pair],
            "output_id": pa.DictionaryArray.from_arrays(
                _nullable((out_no - 1).astype(np.int32), out_no == 0), reg.outputs
            ),
            "recording_id": pairs.column("recording_id").take(by_pair),
            "work_id": pairs.column("work_id").take(by_pair),
            "isrc": pairs.column("isrc").take(by_pair),
            "pair_weight": _decimal(pair_weight[pair]),
            "pair_amount": pair_amount[pair],
            "role": pa.DictionaryArray.from_arrays(
                pa.array(_cat(rows.role, np.int8)[order]), pa.array(ROLES)
            ),
            "party_id": _nullable(
                _cat(rows.party, np.int64)[order], _cat(rows.party_null, np.bool_)[order]
            ),
            "leaf_weight": _decimal(leaf_weight),
            "amount": amount,
        },
        schema=LEAVES_SCHEMA,
    )
    return leaves, np.flatnonzero(np.bincount(leaf_pool, minlength=pools.num_rows))


def _cat(arrays: list[Any], dtype: type) -> Any:
    """Concatenate a list of arrays, which may be empty."""
    return np.concatenate([np.zeros(0, dtype), *arrays])


def _unattributed(pools: pa.Table, leaf_pool: npt.NDArray[np.int64]) -> pa.Table:
    """Leaves for AI pools that no pair reached: the whole pool to the licensor."""
    amounts, _ = _column(pools, "amount")
    reached = np.zeros(pools.num_rows, dtype=bool)
    reached[leaf_pool] = True
    ai = np.asarray(pc.equal(pools.column("source"), "ai").to_numpy(zero_copy_only=False))
    licensed = np.asarray(pools.column("licensor_id").is_valid().to_numpy(zero_copy_only=False))
    lone = pools.filter(pa.array(ai & (amounts > 0) & ~reached & licensed))
    n = lone.num_rows
    return pa.table(
        {
            "pool": lone.column("pool"),
            "source": lone.column("source"),
            "agreement_id": lone.column("agreement_id"),
            "currency": lone.column("currency"),
            "pair": pa.nulls(n, pa.int64()),
            "output_id": pa.nulls(n, pa.string()),
            "recording_id": pa.nulls(n, pa.int64()),
            "work_id": pa.nulls(n, pa.int64()),
            "isrc": pa.nulls(n, pa.string()),
            "pair_weight": pa.nulls(n, HUGEINT),
            "pair_amount": lone.column("amount"),
            "role": pa.array(["unattributed"] * n, pa.string()),
            "party_id": lone.column("licensor_id"),
            "leaf_weight": pa.array([Decimal(PAIR_WEIGHT)] * n, HUGEINT),
            "amount": lone.column("amount"),
        }
    ).cast(LEAVES_SCHEMA)


def _uc_lines_from_listens(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    local: list[dict[str, tuple[npt.NDArray[np.int64], int]]] | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], split.Ints, split.Ints]:
    """User-centric lines from the files' integer-coded side files: (uc_gov ix, listener, units,
    revenue) per line. Lines are kept by their (item, territory, currency) code, which each
    uc_gov row gets from its numbers through ``local`` where given, else by joining the
    file's keys once per distinct item."""
    gov_ix, listener, units, revenue, names = [], [], [], [], []
    if local is not None:
        gov = con.sql("SELECT ix, item_no, territory_no, currency_no FROM uc_gov").to_arrow_table()
    for n, f in enumerate(files):
        listens, keys = listens_paths(f)
        if local is not None:
            own = {k: _codes(gov.column(f"{k}_no")) for k in ("item", "territory", "currency")}
            for k, codes in own.items():
                own[k] = np.where(codes < 0, -1, local[n][k][0][codes])
            n_terr, n_cur = local[n]["territory"][1], local[n]["currency"][1]
            ok = (own["item"] >= 0) & (own["territory"] >= 0) & (own["currency"] >= 0)
            code = (own["item"] * n_terr + own["territory"]) * n_cur + own["currency"]
            look = pa.table({"code": code[ok], "ix": _codes(gov.column("ix"))[ok]})
            con.register("uc_look", look)
        else:
            k = f"read_parquet({_listing([keys])})"
            sizes = dict(con.execute(f"SELECT kind, count(*) FROM {k} GROUP BY ALL").fetchall())
            n_terr, n_cur = int(sizes.get("territory", 0)), int(sizes.get("currency", 0))
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE uc_look AS
                SELECT (i.no::BIGINT * {n_terr} + t.no) * {n_cur} + c.no AS code, g.ix
                FROM uc_gov g JOIN {k} i ON i.kind = 'item' AND i.value = g.isrc
                JOIN {k} t ON t.kind = 'territory' AND t.value = g.territory
                JOIN {k} c ON c.kind = 'currency' AND c.value = g.currency
                """
            )
        # The semi-join on the item alone is pushed into the scan as a filter, so that only
        # user-centric items' lines are read whole and probe the coded key.
        picked = con.sql(
            f"""
            SELECT k.ix, l.listener_no, l.units, l.revenue
            FROM (SELECT * FROM read_parquet({_listing([listens])}) SEMI JOIN (
                      SELECT DISTINCT (code // {max(n_terr * n_cur, 1)})::INTEGER AS item_no
                      FROM uc_look) USING (item_no)) l
            JOIN uc_look k
                ON k.code = (l.item_no::BIGINT * {n_terr} + l.territory_no) * {n_cur}
                    + l.currency_no
            """
        ).to_arrow_table()
        gov_ix.append(np.asarray(picked.column("ix").to_numpy(), dtype=np.int64))
        heard = np.asarray(picked.column("listener_no").to_numpy(), dtype=np.int64)
        if len(files) > 1:  # listeners are merged across files by their names
            names.append(
                pq.read_table(keys, filters=[("kind", "=", "listener")])
                .sort_by("no")
                .column("value")
                .take(pa.array(heard))
            )
        listener.append(heard)
        units.append(np.asarray(picked.column("units").to_numpy(), dtype=np.int64))
        revenue.append(np.asarray(picked.column("revenue").to_numpy(), dtype=np.int64))
    codes_of = (
        np.asarray(
            pc.dictionary_encode(
                pa.chunked_array(names, pa.string()).combine_chunks()
            ).indices.to_numpy(),
            dtype=np.int64,
        )
        if names
        else np.concatenate(listener)
    )
    return np.concatenate(gov_ix), codes_of, np.concatenate(units), np.concatenate(revenue)


def _uc_lines_from_usage(
    con: duckdb.DuckDBPyConnection,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], split.Ints, split.Ints]:
    """User-centric lines read from the usage lines themselves (files without side files)."""
    rows = con.sql(
        """
        SELECT g.ix, coalesce(u.listener, '') AS listener, sum(u.units)::HUGEINT AS units,
            sum(u.revenue)::HUGEINT AS revenue
        FROM u JOIN uc_gov g ON u.item = g.isrc
        -- joined on the item alone (one hashed key), the rest checked after
        WHERE u.item_kind = 'isrc' AND u.territory = g.territory AND u.currency = g.currency
        GROUP BY ALL
        """
    ).to_arrow_table()
    listener = pc.dictionary_encode(rows.column("listener").combine_chunks()).indices
    return (
        np.asarray(rows.column("ix").to_numpy(), dtype=np.int64),
        np.asarray(listener.to_numpy(), dtype=np.int64),
        split.as_ints(rows.column("units")),
        split.as_ints(rows.column("revenue")),
    )


def _uc_numbers(
    gov: pa.Table,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per uc_gov row: its (currency, agreement, recording) number, numbered in that order,
    and its (currency, agreement) number; and per the former, one uc_gov row carrying it."""
    cur = np.asarray(pc.dictionary_encode(gov.column("currency").combine_chunks()).indices
                     .to_numpy(zero_copy_only=False), dtype=np.int64)  # fmt: skip
    agr, _ = _column(gov, "agreement_id")
    rec, _ = _column(gov, "recording_id")
    order = _order_by(cur, agr, rec)
    cur, agr, rec = cur[order], agr[order], rec[order]
    new_ca = np.r_[True, (cur[1:] != cur[:-1]) | (agr[1:] != agr[:-1])] if len(order) else cur
    new_ucr = np.r_[True, rec[1:] != rec[:-1]] | new_ca if len(order) else new_ca
    ucr_of, ca_of = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    ucr_of[order], ca_of[order] = np.cumsum(new_ucr) - 1, np.cumsum(new_ca) - 1
    return ucr_of, ca_of, order[np.flatnonzero(new_ucr)]


def _order_by(*columns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """An order of rows by the given int64 columns (the first most significant); rows equal
    in all come in any order. One sort of a packed key where the columns' ranges fit 63 bits,
    else a lexicographic sort."""
    if not len(columns[0]):
        return np.zeros(0, dtype=np.int64)
    lows = [int(c.min()) for c in columns]
    spans = [int(c.max()) - low + 1 for c, low in zip(columns, lows, strict=True)]
    if math.prod(spans) >= 2**63:
        return np.lexsort(columns[::-1])
    key = columns[0] - lows[0]
    for c, low, span in zip(columns[1:], lows[1:], spans[1:], strict=True):
        key = key * span + (c - low)
    return np.argsort(key)


def _user_centric(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    uc_gov: pa.Table,
    local: list[dict[str, tuple[npt.NDArray[np.int64], int]]] | None,
) -> None:
    """Table uc_w: per (currency, agreement, recording), the sum over listeners of each
    listener's revenue split over their recordings by units (largest remainder, ties by
    recording id), for agreements whose catalog policy is user-centric, whose items are the
    rows of ``uc_gov`` (numbered by ix). ``local``: the files' own numbers of the usage's
    codes, where the usage was read from coded side files."""
    con.register("uc_gov", uc_gov)
    gov = uc_gov.select(["currency", "agreement_id", "recording_id"])
    ucr_of, ca_of, ucr_rows = _uc_numbers(gov)
    sides = files and all(listens_paths(f)[0].exists() for f in files)
    ix, listener, units, revenue = (
        _uc_lines_from_listens(con, files, local) if sides else _uc_lines_from_usage(con)
    )
    n_ucr = int(ucr_of.max()) + 1 if len(ucr_of) else 1
    ca_of_ucr = np.zeros(n_ucr, dtype=np.int64)
    ca_of_ucr[ucr_of] = ca_of
    # Rows per (listener, recording), sorted so that each (listener, currency, agreement) is
    # one run, its recordings in id order: the tie-break order of the split. Listener numbers
    # are below 2^31 (int32 in side files and Arrow dictionaries), so the key fits int64.
    key = listener * n_ucr + ucr_of[ix]
    order = np.argsort(key)  # rows of one key are summed: their order is free
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
    weights = split.group_sums(split.fit(units[order]), starts) if len(key) else units
    revenues = split.group_sums(split.fit(revenue[order]), starts) if len(key) else revenue
    who, ucr = key[starts] // n_ucr, key[starts] % n_ucr
    part = np.r_[True, (who[1:] != who[:-1]) | (ca_of_ucr[ucr[1:]] != ca_of_ucr[ucr[:-1]])]
    first = np.flatnonzero(part) if len(ucr) else ucr
    sizes = np.diff(np.r_[first, len(ucr)]).astype(np.int64)
    totals = split.group_sums(revenues, first) if len(ucr) else revenues
    amount, _ = split.largest_remainder(split.fit(totals), sizes, weights)
    present, (weight,) = split.key_sums(ucr, [amount], n_ucr)  # per recording, in number order
    sums = gov.take(pa.array(ucr_rows[present])).append_column("weight", _decimal(weight))
    con.register("uc_sums", sums)
    con.execute("CREATE TABLE uc_w AS SELECT * REPLACE (weight::HUGEINT AS weight) FROM uc_sums")
    con.unregister("uc_sums")


CODED_KINDS = ("currency", "item", "output", "territory")  # key kinds of the coded rollup


@dataclass(frozen=True, slots=True)
class _Usage:
    """A period's item totals in integer codes, one row per (output, item, territory,
    currency), and the strings the codes stand for. ``local``, where the totals were read from
    coded side files: per file and kind, each number's number in the file (-1: not in it),
    and how many the file numbers."""

    totals: pa.Table  # output, item_no, territory_no, currency_no (NULL: none), units, revenue
    names: dict[str, pa.Array]  # per kind in CODED_KINDS: strings by number
    local: list[dict[str, tuple[npt.NDArray[np.int64], int]]] | None


def _codes(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    """An integer code column as int64, -1 where NULL."""
    filled = column.fill_null(-1) if column.null_count else column
    return np.asarray(filled.to_numpy(), dtype=np.int64)


def _dictionary(codes: pa.ChunkedArray | npt.NDArray[np.int64], names: pa.Array) -> pa.ChunkedArray:
    """Strings by code as a dictionary column over ``names``, which copies no string: an
    Arrow code column is used as it is (NULL stays NULL), numpy codes are NULL where -1."""
    if isinstance(codes, np.ndarray):
        codes = pa.chunked_array([_nullable(codes.astype(np.int32), codes < 0)])
    return pa.chunked_array(
        [pa.DictionaryArray.from_arrays(c, names) for c in codes.chunks],
        pa.dictionary(codes.type, pa.string()),
    )


def _by_number(keys: pa.Table) -> pa.Array:
    """The values of a kind's keys (columns no, value) placed by their number."""
    no = np.asarray(keys.column("no").to_numpy(), dtype=np.int64)
    values = keys.column("value").combine_chunks().cast(pa.string())
    return values if np.array_equal(no, np.arange(len(no))) else values.take(np.argsort(no))


def _kind_keys(keys: pa.Table, kind: str) -> pa.Table:
    """The rows of one kind of a keys file: a slice where they are contiguous (ingest writes
    kind after kind), else a filter."""
    mask = pc.equal(keys.column("kind"), kind)
    at = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False)))
    if len(at) and int(at[-1]) - int(at[0]) + 1 == len(at):
        return keys.slice(int(at[0]), len(at))
    return keys.filter(mask)


def _usage_from_side_files(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> _Usage:
    """Item totals from the files' integer-coded rollups (ingest.write_listens). Several
    files are numbered as one by their strings, and rows of one key in several files summed."""
    tables, names = [], []
    for f in files:
        # Listeners' row groups are skipped; the kinds come one after another.
        keys = pq.read_table(listens_paths(f)[1], filters=[("kind", "in", list(CODED_KINDS))])
        names.append({k: _by_number(_kind_keys(keys, k)) for k in CODED_KINDS})
        tables.append(pq.read_table(coded_totals_path(f)))
    if len(files) == 1:
        local = [{k: (np.arange(len(v)), len(v)) for k, v in names[0].items()}]
        return _Usage(tables[0], names[0], local)
    one: dict[str, pa.Array] = {}
    to_one: list[dict[str, npt.NDArray[np.int64]]] = [{} for _ in files]
    for k in CODED_KINDS:
        encoded = pc.dictionary_encode(pa.concat_arrays([n[k] for n in names]))
        one[k] = encoded.dictionary
        at = np.cumsum([0, *(len(n[k]) for n in names)])
        numbers = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
        for i in range(len(files)):
            to_one[i][k] = numbers[at[i] : at[i + 1]]
    # Sums are exact in DuckDB either way; DECIMAL columns only where a file has them.
    wide = any(not pa.types.is_int64(t.schema.field(c).type) for t in tables
               for c in ("units", "revenue"))  # fmt: skip
    parts = []
    for t, m in zip(tables, to_one, strict=True):
        output = np.asarray(t.column("output").to_numpy(), dtype=bool)
        item = _codes(t.column("item_no"))
        item = np.where(output, m["output"][np.where(output, item, 0)] if len(m["output"]) else 0,
                        m["item"][np.where(output, 0, item)] if len(m["item"]) else 0)  # fmt: skip
        parts.append(pa.table({
            "output": t.column("output"), "item_no": item.astype(np.int32),
            "territory_no": m["territory"][_codes(t.column("territory_no"))].astype(np.int32),
            "currency_no": m["currency"][_codes(t.column("currency_no"))].astype(np.int32),
            **{c: t.column(c).cast(HUGEINT) if wide else t.column(c) for c in ("units", "revenue")},
        }))  # fmt: skip
    con.register("coded_in", pa.concat_tables(parts))
    totals = con.sql(
        "SELECT output, item_no, territory_no, currency_no, sum(units)::HUGEINT AS units, "
        "sum(revenue)::HUGEINT AS revenue FROM coded_in GROUP BY ALL"
    ).to_arrow_table()
    con.unregister("coded_in")
    local = []
    for m in to_one:
        back = {}
        for k, to in m.items():
            inverse = np.full(len(one[k]), -1, dtype=np.int64)
            inverse[to] = np.arange(len(to))
            back[k] = (inverse, len(to))
        local.append(back)
    return _Usage(totals, one, local)


def _decoded_rollup(f: str) -> str:
    """SQL for a file's coded rollup (ingest.write_listens) decoded back to strings, in the
    columns of a string rollup: what a file of a mixed period brings to the string path."""
    keys = f"read_parquet({_listing([listens_paths(f)[1]])})"
    return (
        "SELECT c.value AS currency, t.value AS territory, "
        "CASE WHEN r.output THEN 'output' ELSE 'isrc' END AS item_kind, i.value AS item, "
        f"r.units::HUGEINT AS units, r.revenue::HUGEINT AS revenue "
        f"FROM read_parquet({_listing([coded_totals_path(f)])}) r "
        f"JOIN {keys} i ON i.kind = CASE WHEN r.output THEN 'output' ELSE 'item' END "
        "AND i.no = r.item_no "
        f"JOIN {keys} t ON t.kind = 'territory' AND t.no = r.territory_no "
        f"JOIN {keys} c ON c.kind = 'currency' AND c.no = r.currency_no"
    )


def _usage_from_sql(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> _Usage:
    """Item totals from each file's string rollup (ingest.write_totals), or its coded rollup
    decoded, else its lines, numbered here: the path of periods where some file has no coded
    rollup."""
    # Files of one column type are read in one scan (far cheaper than a UNION ALL of per-file
    # scans); one rollup alone already has one row per key, so needs no merge.
    groups: dict[tuple[bool, str], list[str]] = {}
    decoded = []
    for f in files:
        rollup = totals_path(f)
        if not rollup.exists() and coded_totals_path(f).exists():
            decoded.append(_decoded_rollup(f))
            continue
        source = str(rollup) if rollup.exists() else f
        kind = (rollup.exists(), str(pq.read_schema(source).field("revenue").type))
        groups.setdefault(kind, []).append(source)
    parts = [
        "SELECT currency::VARCHAR AS currency, territory::VARCHAR AS territory, "
        "item_kind::VARCHAR AS item_kind, item::VARCHAR AS item, units::HUGEINT AS units, "
        f"revenue::HUGEINT AS revenue FROM read_parquet([{_listing(group)}])"
        for _, group in sorted(groups.items())
    ] + decoded
    single = len(files) == 1 and (totals_path(files[0]).exists() or bool(decoded))
    con.execute(
        "CREATE TABLE agg AS SELECT currency, territory, item_kind, item, "
        + ("units, revenue" if single else "sum(units) AS units, sum(revenue) AS revenue")
        + " FROM ("
        + (" UNION ALL ".join(parts) if parts else "SELECT * FROM u WHERE false")
        + ")"
        + ("" if single else " GROUP BY ALL")
    )
    values = {"currency": "currency", "item": "item", "output": "item", "territory": "territory"}
    where = {"item": "item_kind = 'isrc' AND ", "output": "item_kind = 'output' AND "}
    for k, v in values.items():
        con.execute(
            f"CREATE TABLE k_{k} AS SELECT value, (row_number() OVER () - 1)::INTEGER AS no "
            f"FROM (SELECT DISTINCT {v} AS value FROM agg WHERE {where.get(k, '')}"
            f"{v} IS NOT NULL)"
        )
    totals = con.sql(
        """
        SELECT a.item_kind = 'output' AS output, coalesce(i.no, o.no) AS item_no,
            t.no AS territory_no, c.no AS currency_no, a.units, a.revenue
        FROM agg a
        LEFT JOIN k_item i ON a.item_kind = 'isrc' AND i.value = a.item
        LEFT JOIN k_output o ON a.item_kind = 'output' AND o.value = a.item
        LEFT JOIN k_territory t ON t.value = a.territory
        LEFT JOIN k_currency c ON c.value = a.currency
        WHERE a.item_kind IN ('isrc', 'output')
        """
    ).to_arrow_table()
    names = {
        k: con.sql(f"SELECT value FROM k_{k} ORDER BY no").to_arrow_table().column(0)
        .combine_chunks() for k in values
    }  # fmt: skip
    con.execute("DROP TABLE agg; DROP TABLE k_item; DROP TABLE k_output")
    return _Usage(totals, names, None)


def _matched(
    found: pa.Table, name: str, match: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """A nullable BIGINT column of ``found`` at rows ``match``; row len(found) is NULL."""
    values, nulls = _column(found, name)
    return np.r_[values, 0][match], np.r_[nulls, True][match]


def _by_item(
    found: pa.Table, name: str, no: npt.NDArray[np.int64], n_items: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """A nullable BIGINT column of ``found`` (one row per item number ``no``) placed by item
    number, NULL for numbers without a row and for number ``n_items`` (no item)."""
    values, nulls = _column(found, name)
    by_item, null = np.zeros(n_items + 1, dtype=np.int64), np.ones(n_items + 1, dtype=bool)
    by_item[no], null[no] = values, nulls
    return by_item, null


def _kind_rows(totals: pa.Table, *, output: bool) -> pa.Table:
    """The output (or ISRC) rows of coded totals: a slice where ingest wrote them apart (ISRC
    rows first), else a filter."""
    flags = totals.column("output")
    n = pc.sum(flags).as_py() or 0
    at = totals.num_rows - n
    if pc.all(flags.slice(at)).as_py() is not False:
        return totals.slice(at) if output else totals.slice(0, at)
    return totals.filter(flags if output else pc.invert(flags))


def _item_recordings(con: duckdb.DuckDBPyConnection, usage: _Usage) -> pa.Table:
    """Per ISRC number (column no), each recording of that ISRC and the agreement that governs
    it everywhere (NULL: none), joining only the distinct ISRCs' strings."""
    con.register("items", pa.table({"no": np.arange(len(usage.names["item"])),
                                    "value": usage.names["item"]}))  # fmt: skip
    found = con.sql(
        "SELECT i.no, r.recording_id FROM items i JOIN s_recordings r ON r.isrc = i.value"
    ).to_arrow_table()
    con.unregister("items")
    return found.append_column("agreement_id", _governing(con, *_column(found, "recording_id")))


def _catalog(
    con: duckdb.DuckDBPyConnection, usage: _Usage, found: pa.Table
) -> tuple[pa.Table, npt.NDArray[np.bool_] | None]:
    """Table cat: per ISRC total, its recording (one row per recording of that ISRC, as
    ``found`` has them; NULL when none) and the agreement that governs it.

    Also the rows whose recording and agreement follow from their ISRC alone (a recording
    governed everywhere by one agreement), where ISRCs and recordings are one to one; else
    None.
    """
    t = _kind_rows(usage.totals, output=False)
    n_items = len(usage.names["item"])
    # Per row, its ISRC number (NULL: n_items), as the index type that take uses unconverted.
    item = np.asarray(t.column("item_no").fill_null(n_items).to_numpy(), dtype=np.intp)
    # Per row, its match in found; len(found) (a NULL recording and agreement) where none.
    no = _column(found, "no")[0]
    if np.bincount(no, minlength=1).max() <= 1:  # an ISRC of at most one recording
        # Per item number its recording and agreement (slot n_items: none), then per row.
        rec_of, rec_null_of = _by_item(found, "recording_id", no, n_items)
        agr_of, agr_null_of = _by_item(found, "agreement_id", no, n_items)
        rec, rec_null = rec_of.take(item), rec_null_of.take(item)
        agr, agr_null = agr_of.take(item), agr_null_of.take(item)
        by_item = ~rec_null & ~agr_null if _distinct(_column(found, "recording_id")[0]) else None
    else:  # one row per recording of the ISRC
        order = np.argsort(no, kind="stable")
        left, right = split.SortedKeys(no[order]).expand(item.astype(np.int64))
        none = np.ones(len(item), dtype=bool)
        none[left] = False
        t = t.take(np.r_[left, np.flatnonzero(none)])
        match = np.r_[order[right], np.full(int(none.sum()), len(no))]
        rec, rec_null = _matched(found, "recording_id", match)
        agr, agr_null = _matched(found, "agreement_id", match)
        by_item = None
    # A recording no agreement governs everywhere is governed per territory.
    ungoverned = np.flatnonzero(~rec_null & agr_null)
    if len(ungoverned):
        con.register("ungoverned", pa.table({
            "row": ungoverned, "recording_id": rec[ungoverned],
            "territory": _dictionary(t.column("territory_no").take(ungoverned),
                                     usage.names["territory"]),
        }))  # fmt: skip
        patch = con.sql(
            """
            SELECT u.row, g.agreement_id FROM ungoverned u JOIN (
                SELECT c.recording_id, c.territory, min(v.agreement_id) AS agreement_id
                FROM (SELECT DISTINCT recording_id, territory FROM ungoverned) c
                JOIN covers_rec v ON v.recording_id = c.recording_id
                JOIN cov t ON t.agreement_id = v.agreement_id AND t.territory = c.territory
                GROUP BY ALL
            ) g ON g.recording_id = u.recording_id AND g.territory = u.territory
            """
        ).to_arrow_table()
        con.unregister("ungoverned")
        at = _column(patch, "row")[0]
        agr[at], agr_null[at] = _column(patch, "agreement_id")
    cat = pa.table({
        "currency": _dictionary(t.column("currency_no"), usage.names["currency"]),
        "territory": _dictionary(t.column("territory_no"), usage.names["territory"]),
        "isrc": _dictionary(t.column("item_no"), usage.names["item"]),
        "recording_id": _nullable(rec, rec_null),
        "units": t.column("units"), "revenue": t.column("revenue"),
        "agreement_id": _nullable(agr, agr_null),
        **{f"{k}_no": t.column(f"{k}_no") for k in ("item", "territory", "currency")},
    })  # fmt: skip
    con.register("cat", cat)
    # The few unmatched rows, their ISRCs as plain strings: DuckDB reads a dictionary column
    # by its whole dictionary.
    suspended = cat.filter(pa.array(rec_null))
    con.register("suspended", suspended.set_column(
        2, "isrc", suspended.column("isrc").cast(pa.string())
    ))  # fmt: skip
    return cat, by_item


def _governing(
    con: duckdb.DuckDBPyConnection, rec: npt.NDArray[np.int64], rec_null: npt.NDArray[np.bool_]
) -> pa.Array:
    """Per recording id (``rec_null``: none), the agreement that governs it everywhere: its
    lowest covering agreement (table covers_rec) where that one covers every usage territory
    (table full_cover), else NULL. Computed in numpy: a minimum per id, not a GROUP BY."""
    cover = con.sql("SELECT recording_id, agreement_id FROM covers_rec").to_arrow_table()
    ids, agreement = _column(cover, "recording_id")[0], _column(cover, "agreement_id")[0]
    full = _column(con.sql("SELECT agreement_id FROM full_cover").to_arrow_table(),
                   "agreement_id")[0]  # fmt: skip
    lowest, found = np.zeros(len(rec), dtype=np.int64), np.zeros(len(rec), dtype=bool)
    if len(ids):
        low = int(ids.min())
        span = int(ids.max()) - low + 1
        inside = ~rec_null & (rec >= low) & (rec < low + span)
        at = np.where(inside, rec - low, 0)
        if split.dense(span, len(ids)):  # the minimum by id in a table
            none = np.iinfo(np.int64).max
            best = np.full(span, none, dtype=np.int64)
            np.minimum.at(best, ids - low, agreement)
            lowest = best.take(at)
            found = inside & (lowest != none)
        else:  # sorted by id, then agreement: each id's first row is its minimum
            order = np.lexsort((agreement, ids))
            ids, agreement = ids[order], agreement[order]
            first = np.r_[True, ids[1:] != ids[:-1]]
            ids, agreement = ids[first], agreement[first]
            near = np.searchsorted(ids, rec).clip(max=len(ids) - 1)
            lowest, found = agreement[near], ~rec_null & (ids[near] == rec)
    found &= np.isin(lowest, full)
    return _nullable(np.where(found, lowest, 0), ~found)


def _distinct(ids: npt.NDArray[np.int64]) -> bool:
    """Whether no id repeats: counted where the ids are dense, else sorted."""
    if not len(ids):
        return True
    low = int(ids.min())
    if split.dense(int(ids.max()) - low + 1, len(ids)):
        return int(np.bincount(ids - low).max()) <= 1
    return len(np.unique(ids)) == len(ids)


def _recording_totals(
    con: duckdb.DuckDBPyConnection, cat: pa.Table, by_item: npt.NDArray[np.bool_] | None,
    currencies: pa.Array,
) -> None:  # fmt: skip
    """Table cat_rec: units and revenue per (currency, agreement, recording) of the cat rows
    with a recording. Rows ``by_item`` (ISRC and currency determine the group) are summed per
    (ISRC, currency) number in numpy, with no hash table; the rest are grouped in DuckDB."""
    has_rec = np.asarray(cat.column("recording_id").is_valid().to_numpy(zero_copy_only=False))
    by_item = np.zeros(cat.num_rows, dtype=bool) if by_item is None else by_item
    n_cur = len(currencies) + 1  # currency number + 1; 0 is NULL
    key = _codes(cat.column("item_no")) * n_cur + _codes(cat.column("currency_no")) + 1
    sink = int(key.max(initial=-1)) + 1  # the other rows' key, dropped
    key[~by_item] = sink
    present, (units, revenue) = split.key_sums(
        key, [split.as_ints(cat.column(c)) for c in ("units", "revenue")], sink + 1
    )
    if len(present) and present[-1] == sink:
        present, units, revenue = present[:-1], units[:-1], revenue[:-1]
    first = np.zeros(sink + 1, dtype=np.int64)  # per key, one of its rows: all agree on the group
    first[key] = np.arange(len(key))
    one = pa.array(first[present])
    con.register("rec_sums", pa.table({
        "currency": _dictionary(present % n_cur - 1, currencies),
        "agreement_id": cat.column("agreement_id").take(one),
        "recording_id": cat.column("recording_id").take(one),
        "units": _integers(units), "revenue": _integers(revenue),
    }))  # fmt: skip
    con.register("cat_rest", cat.filter(pa.array(has_rec & ~by_item)))
    con.register("currencies", pa.table({"no": np.arange(len(currencies)),
                                         "currency": currencies}))  # fmt: skip
    con.execute(
        """
        CREATE TABLE cat_rec AS
            SELECT currency::VARCHAR AS currency, agreement_id, recording_id,
                units::HUGEINT AS units, revenue::HUGEINT AS revenue
            FROM rec_sums
            UNION ALL
            SELECT k.currency, c.* EXCLUDE (currency_no)
            FROM (SELECT currency_no, agreement_id, recording_id, sum(units) AS units,
                      sum(revenue) AS revenue
                  FROM cat_rest GROUP BY ALL) c
            LEFT JOIN currencies k ON k.no = c.currency_no
        """
    )
    for name in ("rec_sums", "cat_rest", "currencies"):
        con.unregister(name)


def _integers(values: split.Ints) -> pa.Array:
    """Exact integers as BIGINT where they fit, else as DECIMAL(38, 0)."""
    return pa.array(values) if values.dtype == np.int64 else _decimal(values)


def _catalog_coverage(cat: pa.Table, pools: pa.Table, names: dict[str, pa.Array]) -> pa.Table:
    """Coverage of the catalog, direct and suspense pools: each cat row with its pool, as
    dictionary columns over the usage's strings (no string is copied)."""
    cur = _codes(cat.column("currency_no"))
    rec_null = np.asarray(cat.column("recording_id").is_null().to_numpy(zero_copy_only=False))
    agr, agr_null = _column(cat, "agreement_id")
    catalog = pools.filter(pc.equal(pools.column("source"), "catalog"))
    ids = np.unique(_column(catalog, "agreement_id")[0])
    # Pool numbers by (agreement's place in ids + 1, currency + 1): place 0 is no agreement
    # (direct, suspense); currency 0 is NULL, which has no pool. Every agreement of a row
    # with a recording has a catalog pool (pools are its sums), so its place is exact.
    low = int(ids[0]) if len(ids) else 0
    span = int(ids[-1]) - low + 1 if len(ids) else 1
    if split.dense(span, len(ids)):  # a table by id
        places = np.zeros(span, dtype=np.int64)
        places[ids - low] = np.arange(1, len(ids) + 1)
        rank = places.take(agr - low, mode="clip")
    else:
        rank = np.searchsorted(ids, agr) + 1
    rank[agr_null] = 0
    table = np.full((len(ids) + 1, len(names["currency"]) + 1), -1, dtype=np.int64)
    suspense = np.full(len(names["currency"]) + 1, -1, dtype=np.int64)
    currency = {str(c): i for i, c in enumerate(names["currency"].to_pylist())}
    for ix, src, aid, c in zip(*(pools.column(n).to_pylist() for n in
                                 ("pool_ix", "source", "agreement_id", "currency")),
                               strict=True):  # fmt: skip
        if c in currency and src == "suspense":
            suspense[currency[c] + 1] = ix
        elif c in currency and src in ("catalog", "direct"):
            table[0 if aid is None else int(np.searchsorted(ids, aid)) + 1, currency[c] + 1] = ix
    cur = cur + 1  # column 0 of the tables is no currency
    pool = table.ravel().take(rank * table.shape[1] + cur)
    if rec_null.any():
        pool[rec_null] = suspense.take(cur[rec_null])
    rows = cat if pool.min(initial=0) >= 0 else cat.filter(pa.array(pool >= 0))
    return pa.table({
        "pool": _dictionary(pool if rows is cat else pool[pool >= 0],
                            pools.column("pool").combine_chunks()),
        **{n: _dictionary(rows.column(f"{k}_no"), names[k])
           for n, k in (("currency", "currency"), ("territory", "territory"), ("item", "item"))},
    })  # fmt: skip


def allocate(
    usage_files: Sequence[str],
    snap: Snapshot,
    period: str,
    recoupable: dict[int, int] | None = None,
    *,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> Allocation:
    """Allocate one period's usage (Parquet files) over a registry snapshot; pure and exact.

    ``recoupable``: per agreement, guarantee top-ups not yet recouped (micro-units), as the
    ledger stood before this period.
    """
    with _MEMORY_SETUP:
        return _allocate(usage_files, snap, period, recoupable, threads, memory_limit)


class _MemorySetup:
    """Memory for many short-lived large arrays while allocations run (a context manager):
    ordinary pages for numpy's and Arrow's buffers, freed memory kept for reuse, no huge
    pages. The first allocation to start switches these process-wide settings, the last to end
    restores them.

    The allocation makes many short-lived arrays of tens of MB. Where transparent huge pages
    are on request ("madvise", Debian's default), numpy asks for them on every large array,
    and so does Arrow's default allocator (mimalloc) for its segments; each first touch then
    has the kernel find and zero fresh 2 MB pages, which took more system time than the huge
    pages saved. At 10M rows, on 2 cores, in alternating runs: numpy's switch alone took the
    wall time from 3.4-3.9 s to 2.9-3.3 s, and Arrow's buffers from the C library's allocator
    (which asks for no huge pages) from 2.9-3.2 s to 2.7-3.0 s. Buffers keep the pool they
    came from, so switching pools is safe.

    The C library's allocator (glibc) also keeps the memory freed while allocations run, for
    reuse, instead of giving every block over 32 MB back to the kernel (munmap) and taking
    fresh zeroed pages for the next: no block is mapped apart and the heap is not trimmed.
    The last allocation to end gives the free memory back (malloc_trim). In 6 alternating runs
    that took the allocation's system time from 1.53 to 1.27 s and its wall time from 3.29 to
    3.10 s.

    Memory reused so still came on huge pages where an earlier madvise had marked the heap, and
    on this kind of virtual machine a huge page fault costs milliseconds (the host backs 512
    small pages). So transparent huge pages are off for the process while allocations run
    (prctl PR_SET_THP_DISABLE, Linux): about 170 huge page faults fewer per 10M-row
    allocation; in 4 alternating runs system time 1.34 -> 1.02 s, wall 3.07 -> 2.85 s.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.numpy_huge: bool | None = None  # numpy's setting before (None: numpy has none)
        self.pool: pa.MemoryPool | None = None  # Arrow's default pool before
        self.thp_off: bool | None = None  # the process's huge page switch before (None: none)

    def __enter__(self) -> None:
        with self.lock:
            if not self.running:
                self.numpy_huge = _numpy_huge_pages(False)
                self.pool = pa.default_memory_pool()
                pa.set_memory_pool(pa.system_memory_pool())
                _keep_freed_memory(True)
                self.thp_off = _huge_pages_off(True)
            self.running += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1
            if not self.running:
                if self.numpy_huge is not None:
                    _numpy_huge_pages(self.numpy_huge)
                if self.pool is not None:
                    pa.set_memory_pool(self.pool)
                _keep_freed_memory(False)
                if self.thp_off is not None:
                    _huge_pages_off(self.thp_off)


_MEMORY_SETUP = _MemorySetup()
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42  # Linux's prctl options
# What glibc's settings are put back to: its default limit of mapped blocks, and the trim
# threshold its adaptive rule reaches for blocks of 32 MB (a setting ends that rule).
GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD = 65536, 64 << 20


def _glibc() -> Any:
    """The C library where it is glibc on Linux (mallopt, malloc_trim, prctl), else None."""
    try:
        libc = ctypes.CDLL(None)
        names = ("mallopt", "malloc_trim", "prctl")
        return libc if all(hasattr(libc, n) for n in names) else None
    except OSError:
        return None


def _keep_freed_memory(keep: bool) -> None:
    """Have glibc keep freed memory for reuse (no separately mapped blocks, no trimming), or
    restore its limits and give the free memory back to the kernel; nothing elsewhere."""
    libc = _glibc()
    if libc is None:
        return
    if keep:
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    else:
        libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def _huge_pages_off(off: bool) -> bool | None:
    """Turn transparent huge pages off (or back on) for the whole process; return whether
    they were off before (None, and nothing set, where the C library or kernel has no such
    switch)."""
    libc = _glibc()
    if libc is None:
        return None

    def prctl(option: int, value: int) -> int:  # unused arguments must be zero: full width
        zero = ctypes.c_ulong(0)
        return int(libc.prctl(option, ctypes.c_ulong(value), zero, zero, zero))

    before = prctl(PR_GET_THP_DISABLE, 0)
    if before < 0 or prctl(PR_SET_THP_DISABLE, int(off)) != 0:
        return None
    return bool(before)


def _numpy_huge_pages(enable: bool) -> bool | None:
    """Set whether numpy asks for huge pages for large arrays; return the previous setting
    (None, and nothing set, for a numpy without the switch)."""
    from numpy._core import multiarray

    get = getattr(multiarray, "_get_madvise_hugepage", None)
    put = getattr(multiarray, "_set_madvise_hugepage", None)
    if get is None or put is None:
        return None
    before = bool(get())
    put(enable)
    return before


def _allocate(
    usage_files: Sequence[str],
    snap: Snapshot,
    period: str,
    recoupable: dict[int, int] | None,
    threads: int | None,
    memory_limit: str | None,
) -> Allocation:
    """:func:`allocate`'s work."""
    first, last = period_bounds(period)
    con = connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    files = list(usage_files)
    con.execute(
        "CREATE VIEW u AS SELECT territory, item_kind, item, units, revenue, currency, "
        f"listener FROM read_parquet([{_listing(files)}])"
        if files
        else "CREATE VIEW u AS SELECT NULL::VARCHAR territory, NULL::VARCHAR item_kind, "
        "NULL::VARCHAR item, 0::BIGINT units, 0::BIGINT revenue, NULL::VARCHAR currency, "
        "NULL::VARCHAR listener WHERE false"
    )
    # Independent stages run side by side on cursors of the same database (Python objects
    # registered on a connection are its own, so each cursor registers the snapshot): the
    # usage read, AI preparation, registry splits, user-centric split, traces and leaf runs.
    with ThreadPoolExecutor(6) as background:
        # Item totals in integer codes: from the coded rollups ingest writes beside each usage
        # file where every file has one, else from string rollups or lines, numbered here.
        coded = bool(files) and all(coded_totals_path(f).exists() for f in files)
        read = _usage_from_side_files if coded else _usage_from_sql
        usage_read = background.submit(read, _cursor(con, snap), files)
        _register(con, snap)
        con.execute(REGISTRY_SQL.format(first=first, last=last))
        usage = usage_read.result()
        out_rows = _kind_rows(usage.totals, output=True)
        agg_out = pa.table({
            "currency": _dictionary(out_rows.column("currency_no"), usage.names["currency"]),
            "territory": _dictionary(out_rows.column("territory_no"), usage.names["territory"]),
            "item": _dictionary(out_rows.column("item_no"), usage.names["output"]),
            "units": out_rows.column("units"), "revenue": out_rows.column("revenue"),
        })  # fmt: skip
        con.register("agg_out", agg_out)
        con.register("usage_territories", pa.table({"territory": usage.names["territory"]}))
        con.execute(USAGE_SQL)
        # The AI side (covered attributions, units per output) and the registry's splits need
        # no catalog: they are prepared while the catalog is joined and pooled, the splits
        # while the catalog's numpy work runs, which would otherwise have the cores to itself.
        ai_ready = background.submit(_cursor(con, snap).execute, AI_SQL)
        found = _item_recordings(con, usage)
        registry = background.submit(_Registry.read, _cursor(con, snap))
        cat, by_item = _catalog(con, usage, found)
        # User-centric weights need only the catalog's agreements: they are computed while
        # the catalog is pooled and the AI pairs read.
        uc_weights = background.submit(
            _user_centric, _cursor(con, snap), files, _uc_items(con, cat), usage.local
        )
        _recording_totals(con, cat, by_item, usage.names["currency"])
        pools = _pools(con, snap.tables["agreements"], recoupable or {})
        con.register("pools", pools)
        con.execute(
            "CREATE TABLE pool_no AS SELECT pool, row_number() OVER (ORDER BY pool) - 1 "
            "AS pool_ix FROM pools"
        )
        # What the leaves do not need (unpooled revenue, coverage) is computed beside them.
        pool_rows = _pool_rows(con)
        side = _cursor(con, snap)
        side.register("pools", pools)
        side.register("agg_out", agg_out)
        traced = background.submit(_traces, side, cat, pool_rows, usage.names)
        # Levels 1 and 2: each pool over its pairs (AI: output x item; catalog: recording;
        # suspense: ISRC), each pair over its parties. All but the user-centric pools are
        # allocated while the user-centric weights are still being computed.
        parts = int(threads or os.cpu_count() or 1)
        ai_ready.result()
        pairs = [con.sql(AI_PAIRS).to_arrow_table()]
        pairs.append(pa.concat_tables([con.sql(CATALOG_PAIRS).to_arrow_table(),
                                       con.sql(SUSPENSE_PAIRS).to_arrow_table()]))  # fmt: skip
        reg = registry.result()
        runs = [run for p in pairs for run in _leaf_runs(background, reg, pool_rows, p, parts)]
        uc_weights.result()
        pairs.append(con.sql(USER_CENTRIC_PAIRS).to_arrow_table())
        runs += _leaf_runs(background, reg, pool_rows, pairs[-1], parts)
        # Spent: their memory is reused by what follows instead of fresh pages.
        con.execute(
            "DROP TABLE ai_cover; DROP TABLE class_units; DROP TABLE uc_w; DROP TABLE cat_rec"
        )
        leaves = _leaves(runs, pool_rows)
        unpooled, coverage = traced.result()
    summary = {
        "ai_revenue_not_pooled": {str(c): str(int(r)) for c, r in unpooled},
        "pools": pools.num_rows,
        "pairs": sum(p.num_rows for p in pairs),
        "leaves": leaves.num_rows,
    }
    return Allocation(period, pools, leaves, coverage, summary)


def _register(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> None:
    """Register the snapshot's tables as s_<name> on a connection or cursor."""
    for name in SNAPSHOT_SCHEMAS:
        con.register(f"s_{name}", snap.tables[name])


def _cursor(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> duckdb.DuckDBPyConnection:
    """A cursor of the connection's database, for another thread, with the snapshot."""
    cursor = con.cursor()
    _register(cursor, snap)
    return cursor


def _uc_items(con: duckdb.DuckDBPyConnection, cat: pa.Table) -> pa.Table:
    """User-centric items: the cat rows governed by a user-centric agreement, numbered (ix)
    for the numpy split. Rows of cat are distinct, one per (ISRC, territory, currency,
    recording)."""
    user_centric = con.execute(
        "SELECT agreement_id FROM ga WHERE catalog_policy = 'user_centric'"
    ).fetchall()
    agr, agr_null = _column(cat, "agreement_id")
    uc = ~agr_null & cat.column("recording_id").is_valid().to_numpy(zero_copy_only=False)
    uc &= np.isin(agr, np.array([a for (a,) in user_centric], dtype=np.int64))
    columns = ["isrc", "territory", "currency", "recording_id", "agreement_id", "item_no",
               "territory_no", "currency_no"]  # fmt: skip
    items = cat.select(columns).filter(pa.array(uc))
    return items.add_column(0, "ix", pa.array(np.arange(items.num_rows)))


def _traces(
    con: duckdb.DuckDBPyConnection, cat: pa.Table, pools: pa.Table, names: dict[str, pa.Array]
) -> tuple[list[Any], pa.Table]:
    """AI revenue no pool took, per currency; and coverage: per pool, the usage groups in it."""
    unpooled = con.execute(
        """
        SELECT a.currency, sum(a.revenue) FROM agg_out a
        ANTI JOIN (
            SELECT e.output_id, e.currency, e.territory
            FROM ai_usage e
            JOIN (SELECT DISTINCT platform_id, model, territory FROM ai_ok) k
                ON k.platform_id = e.platform_id
                AND k.model = e.model AND k.territory = e.territory
        ) p ON p.output_id = a.item AND p.currency = a.currency AND p.territory = a.territory
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    ai = con.sql(
        """
        SELECT DISTINCT p.pool, s.currency, s.territory, NULL::VARCHAR AS item
        FROM ai_sums s JOIN ai_ok k ON k.platform_id = s.platform_id AND k.model = s.model
            AND k.territory = s.territory
        JOIN pools p ON p.source = 'ai' AND p.agreement_id = k.agreement_id
            AND p.currency = s.currency
        """
    ).to_arrow_table()
    ai = pa.table({n: pc.dictionary_encode(ai.column(n)) for n in ai.column_names})
    catalog = _catalog_coverage(cat, pools, names)
    return unpooled, pa.concat_tables([ai.cast(catalog.schema), catalog])
