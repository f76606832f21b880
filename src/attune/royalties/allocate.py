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
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from attune.royalties.ingest import totals_path
from attune.royalties.money import div_half_even, exponent, micro_per_minor

ALGORITHM = "attune-allocation/1"
PERCENT = 100_000_000  # 100% in micro-percent, the unit of master and publishing splits
WHOLE = 1_000_000  # a fraction of 1 in micro-units: attribution and publishing shares
PAIR_WEIGHT = PERCENT * WHOLE  # every item's split weights add up to this

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
# How pairs of one pool are ordered among equal remainders (and so numbered). The weight comes
# last: an output may attribute the same item twice, and such pairs differ only in weight.
PAIR_KEY = (
    "output_id NULLS FIRST, recording_id NULLS FIRST, work_id NULLS FIRST, isrc NULLS FIRST, weight"
)


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


def _lr(src: str, part: str, total: str, weight: str, order: str, *, rank: bool = False) -> str:
    """SQL: largest-remainder split of ``total`` over rows of ``src`` by ``weight`` per ``part``.

    ``total`` is an aggregate over the partition (``any_value(total)``, ``sum(revenue)``); a
    partition whose weights sum to 0 is split equally. Adds ``amount``; each partition's
    amounts sum exactly to its total, and ``order`` breaks ties. Partition sums come from
    GROUP BY and hash joins; a single-row partition takes its total without arithmetic; and
    only rows with a remainder are ranked (sorted), since the units left over are fewer than
    those rows. ``part`` columns must not be NULL. With ``rank``, every row is ranked and keeps
    ``rk``, its place in its partition's remainder order.
    """
    ranked = (
        f"SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY rem_ DESC, {order}) AS rk "
        "FROM based"
    )
    if not rank:
        ranked = (
            f"SELECT *, NULL::BIGINT AS rk FROM based WHERE rem_ = 0 UNION ALL ({ranked} "
            "WHERE rem_ > 0)"
        )
    keep = ", 1::BIGINT AS rk" if rank else ""
    drop = "" if rank else ", rk"
    return f"""
    WITH p AS (
        SELECT {part}, {total} AS total_, sum({weight}) AS tw_, count(*) AS n_
        FROM {src} GROUP BY ALL
    ),
    j AS MATERIALIZED (
        SELECT s.*, p.total_, p.n_, CASE WHEN p.tw_ = 0 THEN 1 ELSE ({weight}) END AS w_,
            CASE WHEN p.tw_ = 0 THEN p.n_ ELSE p.tw_ END AS tw_
        FROM {src} s JOIN p USING ({part})
    ),
    based AS MATERIALIZED (
        SELECT *, total_::HUGEINT * w_ // tw_ AS base_, total_::HUGEINT * w_ % tw_ AS rem_
        FROM j WHERE n_ > 1
    ),
    short AS (SELECT {part}, any_value(total_) - sum(base_) AS short_ FROM based GROUP BY ALL)
    SELECT * EXCLUDE (total_, n_, w_, tw_){keep}, total_::BIGINT AS amount FROM j WHERE n_ = 1
    UNION ALL BY NAME
    SELECT b.* EXCLUDE (total_, n_, w_, tw_, base_, rem_{drop}),
        (base_ + CASE WHEN rk <= short_ THEN 1 ELSE 0 END)::BIGINT AS amount
    FROM ({ranked}) b JOIN short USING ({part})
    """


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
        FROM catg c LEFT JOIN ga g ON g.agreement_id = c.agreement_id
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
        "SELECT currency, sum(revenue) FROM cat WHERE recording_id IS NULL GROUP BY ALL "
        "ORDER BY ALL"
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
    first, last = period_bounds(period)
    con = connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    for name in SNAPSHOT_SCHEMAS:
        con.register(f"s_{name}", snap.tables[name])
    files = list(usage_files)
    con.execute(
        "CREATE VIEW u AS SELECT territory, item_kind, item, units, revenue, currency, "
        f"listener FROM read_parquet([{_listing(files)}])"
        if files
        else "CREATE VIEW u AS SELECT NULL::VARCHAR territory, NULL::VARCHAR item_kind, "
        "NULL::VARCHAR item, 0::BIGINT units, 0::BIGINT revenue, NULL::VARCHAR currency, "
        "NULL::VARCHAR listener WHERE false"
    )
    # Item totals: from each file's rollup written at ingest, else from its lines. Files of one
    # column type are read in one scan (far cheaper than a UNION ALL of per-file scans).
    groups: dict[tuple[bool, str], list[str]] = {}
    for f in files:
        rollup = totals_path(f)
        source = str(rollup) if rollup.exists() else f
        kind = (rollup.exists(), str(pq.read_schema(source).field("revenue").type))
        groups.setdefault(kind, []).append(source)
    parts = [
        "SELECT currency, territory, item_kind, item, units::HUGEINT AS units, "
        f"revenue::HUGEINT AS revenue FROM read_parquet([{_listing(group)}])"
        for _, group in sorted(groups.items())
    ]
    con.execute(
        "CREATE VIEW item_totals AS "
        + (" UNION ALL ".join(parts) if parts else "SELECT * FROM u WHERE false")
    )
    con.execute(
        f"""
        CREATE TABLE ga AS SELECT * FROM s_agreements
            WHERE start_date <= DATE '{last}' AND (end_date IS NULL OR end_date >= DATE '{first}');
        CREATE TABLE rec_holder AS
            SELECT DISTINCT recording_id, party_id FROM s_owners;
        CREATE TABLE work_holder AS
            SELECT DISTINCT work_id, party_id FROM s_work_shares;
        CREATE TABLE covers_rec AS
            SELECT DISTINCT g.agreement_id, r.recording_id
            FROM ga g JOIN rec_holder h ON h.party_id = g.licensor_id
            JOIN s_recordings r ON r.recording_id = h.recording_id
            LEFT JOIN s_items i ON i.agreement_id = g.agreement_id
                AND i.recording_id = r.recording_id
            LEFT JOIN s_items j ON j.agreement_id = g.agreement_id AND j.work_id = r.work_id
            WHERE g.covers_all OR i.agreement_id IS NOT NULL OR j.agreement_id IS NOT NULL;
        CREATE TABLE covers_work AS
            SELECT DISTINCT g.agreement_id, h.work_id
            FROM ga g JOIN work_holder h ON h.party_id = g.licensor_id
            LEFT JOIN s_items i ON i.agreement_id = g.agreement_id AND i.work_id = h.work_id
            WHERE g.covers_all OR i.agreement_id IS NOT NULL;
        CREATE TABLE agg AS SELECT currency::VARCHAR AS currency,
            territory::VARCHAR AS territory, item_kind::VARCHAR AS item_kind, item,
            sum(units)::BIGINT AS units, sum(revenue)::HUGEINT AS revenue
            FROM item_totals GROUP BY ALL;
        CREATE TABLE cov AS
            SELECT g.agreement_id, t.territory
            FROM ga g CROSS JOIN (SELECT DISTINCT territory FROM agg) t
            LEFT JOIN s_territories x
                ON x.agreement_id = g.agreement_id AND x.territory = t.territory
            WHERE CASE WHEN t.territory = 'Worldwide'
                -- usage not reported per country: only a worldwide grant without exceptions
                THEN g.worldwide AND NOT EXISTS (SELECT 1 FROM s_territories e
                    WHERE e.agreement_id = g.agreement_id AND e.excluded)
                ELSE (g.worldwide AND (x.territory IS NULL OR NOT x.excluded))
                    OR (NOT g.worldwide AND x.territory IS NOT NULL AND NOT x.excluded) END;
        CREATE TABLE ai_usage AS
            SELECT a.currency, a.territory, a.item AS output_id, o.platform_id, o.model,
                a.units, a.revenue
            FROM agg a JOIN s_outputs o ON o.output_id = a.item
            WHERE a.item_kind = 'output';
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
        CREATE TABLE cat AS
            SELECT a.currency, a.territory, a.item AS isrc, r.recording_id, a.units, a.revenue
            FROM agg a LEFT JOIN s_recordings r ON r.isrc = a.item
            WHERE a.item_kind = 'isrc';
        -- A recording whose lowest covering agreement covers every usage territory is
        -- governed by it everywhere; only the others need a minimum per territory.
        CREATE TABLE full_cover AS
            SELECT agreement_id FROM cov GROUP BY ALL
            HAVING count(DISTINCT territory) = (SELECT count(DISTINCT territory) FROM agg);
        CREATE TABLE gov_all AS
            SELECT f.recording_id, f.agreement_id
            FROM (SELECT recording_id, min(agreement_id) AS agreement_id
                  FROM covers_rec GROUP BY ALL) f
            SEMI JOIN full_cover USING (agreement_id);
        CREATE TABLE gov AS
            SELECT c.recording_id, c.territory, min(v.agreement_id) AS agreement_id
            FROM (SELECT DISTINCT recording_id, territory FROM cat
                  WHERE recording_id IS NOT NULL) c
            ANTI JOIN gov_all a ON a.recording_id = c.recording_id
            JOIN covers_rec v ON v.recording_id = c.recording_id
            JOIN cov t ON t.agreement_id = v.agreement_id AND t.territory = c.territory
            GROUP BY ALL;
        CREATE TABLE catg AS
            SELECT c.*, coalesce(a.agreement_id, g.agreement_id) AS agreement_id FROM cat c
            LEFT JOIN gov_all a ON a.recording_id = c.recording_id
            LEFT JOIN gov g ON g.recording_id = c.recording_id AND g.territory = c.territory
            WHERE c.recording_id IS NOT NULL;
        """
    )
    pools = _pools(con, snap.tables["agreements"], recoupable or {})
    con.register("pools", pools)
    # Level 1: each pool over its pairs (AI: output x item; catalog: recording; suspense: ISRC).
    con.execute(
        f"""
        CREATE TABLE ai_cover AS
            SELECT agreement_id, recording_id, NULL::BIGINT AS work_id, t.output_id, t.share
            FROM covers_rec c JOIN s_attributions t USING (recording_id)
            UNION ALL
            SELECT agreement_id, NULL::BIGINT, work_id, t.output_id, t.share
            FROM covers_work c JOIN s_attributions t USING (work_id);
        CREATE TABLE ai_pairs AS
            SELECT p.pool, p.amount AS total, c.output_id, c.recording_id, c.work_id,
                NULL::VARCHAR AS isrc, sum(u.units)::HUGEINT * c.share AS weight
            FROM ai_cover c
            JOIN ai_usage u ON u.output_id = c.output_id
            JOIN ai_ok k ON k.agreement_id = c.agreement_id AND k.platform_id = u.platform_id
                AND k.model = u.model AND k.territory = u.territory
            JOIN pools p ON p.source = 'ai' AND p.agreement_id = c.agreement_id
                AND p.currency = u.currency
            GROUP BY p.pool, p.amount, c.output_id, c.recording_id, c.work_id, c.share
            HAVING sum(u.units) > 0;
        CREATE TABLE uc AS
            SELECT c.currency, c.agreement_id, coalesce(u.listener, '') AS listener,
                c.recording_id, sum(u.units)::HUGEINT AS units,
                sum(u.revenue)::HUGEINT AS revenue
            FROM u
            JOIN (SELECT DISTINCT c.isrc, c.territory, c.currency, c.recording_id,
                      c.agreement_id
                  FROM catg c JOIN ga g ON g.agreement_id = c.agreement_id
                  WHERE g.catalog_policy = 'user_centric') c ON u.item = c.isrc
            -- joined on the item alone (one hashed key), the rest checked after
            WHERE u.item_kind = 'isrc' AND u.territory = c.territory AND u.currency = c.currency
            GROUP BY ALL;
        CREATE TABLE uc_w AS
            SELECT currency, agreement_id, recording_id, sum(amount)::HUGEINT AS weight
            FROM ({
            _lr("uc", "currency, agreement_id, listener", "sum(revenue)", "units", "recording_id")
        })
            GROUP BY ALL;
        CREATE TABLE cat_pairs AS
            SELECT p.pool, p.amount AS total, NULL::VARCHAR AS output_id, c.recording_id,
                NULL::BIGINT AS work_id, NULL::VARCHAR AS isrc,
                CASE WHEN p.policy = 'user_centric' THEN any_value(w.weight)
                     WHEN p.source = 'direct' THEN sum(c.revenue)
                     ELSE sum(c.units)::HUGEINT END AS weight
            FROM catg c
            JOIN pools p ON p.source IN ('catalog', 'direct')
                AND coalesce(p.agreement_id, -1) = coalesce(c.agreement_id, -1)
                AND p.currency = c.currency
            LEFT JOIN uc_w w ON w.currency = c.currency AND w.agreement_id = c.agreement_id
                AND w.recording_id = c.recording_id
            GROUP BY p.pool, p.amount, p.policy, p.source, c.recording_id;
        CREATE TABLE sus_pairs AS
            SELECT p.pool, p.amount AS total, NULL::VARCHAR AS output_id,
                NULL::BIGINT AS recording_id, NULL::BIGINT AS work_id, c.isrc,
                sum(c.revenue) AS weight
            FROM cat c JOIN pools p ON p.source = 'suspense' AND p.currency = c.currency
            WHERE c.recording_id IS NULL GROUP BY ALL;
        CREATE TABLE pairs_in AS
            SELECT * FROM ai_pairs UNION ALL SELECT * FROM cat_pairs
            UNION ALL SELECT * FROM sus_pairs;
        """
    )
    # Pair ids: the pool's number (pools in name order) x 2^32 + the pair's rank in the pool's
    # largest-remainder order (remainder, then key), so numbering needs no global sort.
    con.execute(
        f"""
        CREATE TABLE pairs_w AS
            SELECT * EXCLUDE (weight, tw0),
                CASE WHEN tw0 = 0 THEN 1 ELSE weight END AS weight
            FROM (SELECT * FROM pairs_in WHERE weight > 0 OR pool NOT LIKE 'ai:%')
            JOIN (
                SELECT pool, sum(weight) AS tw0 FROM pairs_in
                WHERE weight > 0 OR pool NOT LIKE 'ai:%' GROUP BY ALL
            ) USING (pool);
        CREATE TABLE pool_no AS SELECT pool, row_number() OVER (ORDER BY pool) AS pool_no
            FROM pools;
        CREATE TABLE pairs AS
            SELECT n.pool_no * 4294967296 + x.rk AS pair, x.* EXCLUDE (rk)
            FROM ({_lr("pairs_w", "pool", "any_value(total)", "weight", PAIR_KEY, rank=True)}) x
            JOIN pool_no n USING (pool);
        """
    )
    # Level 2: each pair over the parties its splits name (narrow rows; attributes join after).
    con.execute(
        f"""
        CREATE TABLE pair_src AS
            SELECT x.pair, x.amount AS pair_amount, x.recording_id, x.work_id, x.isrc,
                CASE WHEN p.source = 'ai' THEN g.ai_publishing
                     ELSE coalesce(g.catalog_publishing, 0) END AS pub,
                r.work_id AS rec_work
            FROM pairs x JOIN pools p ON p.pool = x.pool
            LEFT JOIN ga g ON g.agreement_id = p.agreement_id
            LEFT JOIN s_recordings r ON r.recording_id = x.recording_id;
        CREATE TABLE leaves_in AS
            SELECT s.pair, s.pair_amount, 'master' AS role, o.party_id,
                o.share::HUGEINT * ({WHOLE} - s.pub) AS leaf_weight
            FROM pair_src s JOIN s_owners o ON o.recording_id = s.recording_id
            WHERE s.recording_id IS NOT NULL AND s.pub < {WHOLE}
            UNION ALL
            SELECT s.pair, s.pair_amount, 'publishing', w.party_id, w.share::HUGEINT * s.pub
            FROM pair_src s JOIN s_work_shares w ON w.work_id = s.rec_work
            WHERE s.recording_id IS NOT NULL AND s.pub > 0
            UNION ALL
            SELECT s.pair, s.pair_amount, 'suspense', NULL, {PERCENT}::HUGEINT * s.pub
            FROM pair_src s
            WHERE s.recording_id IS NOT NULL AND s.rec_work IS NULL AND s.pub > 0
            UNION ALL
            SELECT s.pair, s.pair_amount, 'publishing', w.party_id, w.share::HUGEINT * {WHOLE}
            FROM pair_src s JOIN s_work_shares w ON w.work_id = s.work_id
            UNION ALL
            SELECT s.pair, s.pair_amount, 'suspense', NULL, {PAIR_WEIGHT}::HUGEINT
            FROM pair_src s WHERE s.isrc IS NOT NULL;
        CREATE TABLE leaf_amounts AS {
            _lr(
                "leaves_in",
                "pair",
                "any_value(pair_amount)",
                "leaf_weight",
                "role, party_id NULLS LAST, leaf_weight",
            )
        };
        """
    )
    leaves = con.sql(
        f"""
        SELECT p.pool, o.source, o.agreement_id, o.currency, l.pair, p.output_id,
            p.recording_id, p.work_id, p.isrc, p.weight AS pair_weight,
            l.pair_amount, l.role, l.party_id, l.leaf_weight, l.amount
        FROM leaf_amounts l JOIN pairs p USING (pair) JOIN pools o ON o.pool = p.pool
        UNION ALL
        SELECT p.pool, p.source, p.agreement_id, p.currency, NULL::BIGINT AS pair,
            NULL::VARCHAR AS output_id, NULL::BIGINT AS recording_id, NULL::BIGINT AS work_id,
            NULL::VARCHAR AS isrc, NULL::HUGEINT AS pair_weight, p.amount AS pair_amount,
            'unattributed' AS role, g.licensor_id AS party_id,
            {PAIR_WEIGHT}::HUGEINT AS leaf_weight, p.amount AS amount
        FROM pools p JOIN s_agreements g ON g.agreement_id = p.agreement_id
        WHERE p.source = 'ai' AND p.amount > 0
            AND p.pool NOT IN (SELECT DISTINCT x.pool FROM leaf_amounts JOIN pairs x USING (pair))
        """
    ).to_arrow_table()
    unpooled = con.execute(
        """
        SELECT a.currency, sum(a.revenue) FROM agg a
        ANTI JOIN (
            SELECT DISTINCT e.output_id, e.currency, e.territory
            FROM ai_usage e
            JOIN (SELECT DISTINCT platform_id, model, territory FROM ai_ok) k
                ON k.platform_id = e.platform_id
                AND k.model = e.model AND k.territory = e.territory
        ) p ON p.output_id = a.item AND p.currency = a.currency AND p.territory = a.territory
        WHERE a.item_kind = 'output'
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    summary = {
        "ai_revenue_not_pooled": {str(c): str(int(r)) for c, r in unpooled},
        "pools": pools.num_rows,
        "pairs": int(con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]),
        "leaves": leaves.num_rows,
    }
    # Coverage rows are unique without DISTINCT: agg has one row per (currency, territory, item).
    coverage = con.sql(
        """
        SELECT DISTINCT p.pool, s.currency, s.territory, NULL::VARCHAR AS item
        FROM ai_sums s JOIN ai_ok k ON k.platform_id = s.platform_id AND k.model = s.model
            AND k.territory = s.territory
        JOIN pools p ON p.source = 'ai' AND p.agreement_id = k.agreement_id
            AND p.currency = s.currency
        UNION ALL
        SELECT p.pool, c.currency, c.territory, c.isrc
        FROM catg c JOIN pools p ON p.source IN ('catalog', 'direct')
            AND coalesce(p.agreement_id, -1) = coalesce(c.agreement_id, -1)
            AND p.currency = c.currency
        UNION ALL
        SELECT p.pool, c.currency, c.territory, c.isrc
        FROM cat c JOIN pools p ON p.source = 'suspense' AND p.currency = c.currency
        WHERE c.recording_id IS NULL
        """
    ).to_arrow_table()
    return Allocation(period, pools, leaves, coverage, summary)
