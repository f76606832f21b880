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

Usage-level work (item totals, coverage, pools, pairs) runs in DuckDB; the two item-level
splits (pools over pairs, pairs over parties) run in numpy on integer keys (attune.royalties
.split), in int64 where products fit and in exact Python integers where they do not.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
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
from attune.royalties.ingest import totals_path
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
LEAVES_SCHEMA = pa.schema(
    [
        ("pool", pa.string()),
        ("source", pa.string()),
        ("agreement_id", pa.int64()),
        ("currency", pa.string()),
        ("pair", pa.int64()),
        ("output_id", pa.string()),
        ("recording_id", pa.int64()),
        ("work_id", pa.int64()),
        ("isrc", pa.string()),
        ("pair_weight", HUGEINT),
        ("pair_amount", pa.int64()),
        ("role", pa.string()),
        ("party_id", pa.int64()),
        ("leaf_weight", HUGEINT),
        ("amount", pa.int64()),
    ]
)
# How pairs of one pool are ordered among equal remainders (and so numbered). The weight comes
# last: an output may attribute the same item twice, and such pairs differ only in weight.
PAIR_KEY = (
    "out_no NULLS FIRST, recording_id NULLS FIRST, work_id NULLS FIRST, isrc NULLS FIRST, weight"
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


def _lr(src: str, part: str, total: str, weight: str, order: str) -> str:
    """SQL: largest-remainder split of ``total`` over rows of ``src`` by ``weight`` per ``part``.

    ``total`` is an aggregate over the partition (``any_value(total)``, ``sum(revenue)``); a
    partition whose weights sum to 0 is split equally. Adds ``amount``; each partition's
    amounts sum exactly to its total, and ``order`` breaks ties. Partition sums come from
    GROUP BY and hash joins; a single-row partition takes its total without arithmetic; and
    only rows with a remainder are ranked (sorted), since the units left over are fewer than
    those rows. ``part`` columns must not be NULL.
    """
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
    SELECT * EXCLUDE (total_, n_, w_, tw_), total_::BIGINT AS amount FROM j WHERE n_ = 1
    UNION ALL BY NAME
    SELECT b.* EXCLUDE (total_, n_, w_, tw_, base_, rem_, rk),
        (base_ + CASE WHEN rk <= short_ THEN 1 ELSE 0 END)::BIGINT AS amount
    FROM (
        SELECT *, NULL::BIGINT AS rk FROM based WHERE rem_ = 0
        UNION ALL
        SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY rem_ DESC, {order}) AS rk
        FROM based WHERE rem_ > 0
    ) b JOIN short USING ({part})
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


def _column(table: pa.Table, name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """A nullable BIGINT column as int64 values (0 where NULL) and its NULL mask."""
    col = table.column(name)
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64), nulls


def _decimal(values: split.Ints) -> pa.Array:
    """Exact integers as DECIMAL(38, 0), the Arrow type of DuckDB's HUGEINT."""
    if values.dtype == np.int64:
        return pa.array(values).cast(HUGEINT)
    return pa.array([Decimal(int(v)) for v in values], HUGEINT)


@dataclass(frozen=True, slots=True)
class _Splits:
    """Split rows (owners of recordings, shares of works) sorted by key, then tie-break order."""

    key: npt.NDArray[np.int64]
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
        return cls(_column(rows, "k")[0], party, party_null, split.as_ints(rows.column("share")))


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
        left, right = split.expand(keys[pairs], splits.key)
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


def _pairs(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """Pools (with their publishing share and licensor) and their pairs, in PAIR_KEY order."""
    pools = con.sql(
        """
        SELECT n.pool_no, p.pool, p.source, p.agreement_id, p.currency, p.amount,
            CASE WHEN p.source = 'ai' THEN g.ai_publishing
                 ELSE coalesce(g.catalog_publishing, 0) END AS pub,
            s.licensor_id
        FROM pools p JOIN pool_no n USING (pool)
        LEFT JOIN ga g ON g.agreement_id = p.agreement_id
        LEFT JOIN s_agreements s ON s.agreement_id = p.agreement_id AND p.source = 'ai'
        ORDER BY n.pool_no
        """
    ).to_arrow_table()
    pairs = con.sql(
        f"""
        SELECT n.pool_no - 1 AS pool_ix, x.total, x.out_no, x.recording_id, x.work_id,
            x.isrc, x.weight
        FROM pairs_w x JOIN pool_no n USING (pool) ORDER BY n.pool_no, {PAIR_KEY}
        """
    ).to_arrow_table()
    return pools, pairs


def _leaf_rows(con: duckdb.DuckDBPyConnection, pools: pa.Table, pairs: pa.Table) -> _LeafRows:
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
    owners = _Splits.read(con, "s_owners", "recording_id")
    shares = _Splits.read(con, "s_work_shares", "work_id")
    # The work of each pair's recording (NULL where the recording is unknown or has none).
    recs = con.sql(
        "SELECT recording_id, work_id FROM s_recordings WHERE recording_id IS NOT NULL "
        "ORDER BY recording_id"
    ).to_arrow_table()
    rec_key, _ = _column(recs, "recording_id")
    rec_work, rec_work_null = _column(recs, "work_id")
    at, found = split.expand(rec[~rec_null], rec_key)
    on_rec = np.flatnonzero(~rec_null)[at]
    pair_work, pair_work_null = np.zeros(n, np.int64), np.ones(n, bool)
    pair_work[on_rec], pair_work_null[on_rec] = rec_work[found], rec_work_null[found]
    rows = _LeafRows()
    rec_pub = ~rec_null & ~pub_null
    published = rec_pub & (pub > 0)
    rows.join(np.flatnonzero(rec_pub & (pub < WHOLE)), rec, owners, WHOLE - pub, MASTER)
    rows.join(np.flatnonzero(published & ~pair_work_null), pair_work, shares, pub, PUBLISHING)
    rows.single(np.flatnonzero(published & pair_work_null), split.mul(pub, np.full(n, PERCENT)),
                SUSPENSE)  # fmt: skip
    rows.join(np.flatnonzero(~work_null), work, shares, np.full(n, WHOLE), PUBLISHING)
    rows.single(np.flatnonzero(~isrc_null), np.full(n, PAIR_WEIGHT), SUSPENSE)
    return rows


def _leaves(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, int]:
    """Levels 1 and 2 in numpy: each pool over its pairs, each pair over its parties.

    Pair ids are the pool's number (pools in name order) x 2^32 + the pair's place in the
    pool's largest-remainder order (remainder, then PAIR_KEY), so numbering needs no global
    sort. Returns (leaves, number of pairs).
    """
    pools, pairs = _pairs(con)
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, pool_ix[1:] != pool_ix[:-1]]) if len(pool_ix) else pool_ix
    sizes = np.diff(np.r_[first, len(pool_ix)]).astype(np.int64)
    totals = np.asarray(pairs.column("total").to_numpy(), dtype=np.int64)[first]
    pair_weight = split.as_ints(pairs.column("weight"))
    pair_amount, rank = split.largest_remainder(totals, sizes, pair_weight)
    rows = _leaf_rows(con, pools, pairs)
    pair = np.concatenate(rows.pair)
    order = np.argsort(pair, kind="stable")  # pair by pair, each pair's rows in tie-break order
    pair = pair[order]
    exact = all(w.dtype == np.int64 for w in rows.weight)
    leaf_weight = np.concatenate([w if exact else w.astype(object) for w in rows.weight])[order]
    counts = np.bincount(pair, minlength=len(pool_ix))
    paid = np.flatnonzero(counts)
    amount, _ = split.largest_remainder(pair_amount[paid], counts[paid], leaf_weight)
    names = con.sql("SELECT output_id FROM out_no ORDER BY out_no").to_arrow_table()
    outputs = pa.concat_arrays(
        [pa.nulls(1, pa.string()), *names.column(0).cast(pa.string()).chunks]
    )
    leaf_pool, by_pool, by_pair = pool_ix[pair], pa.array(pool_ix[pair]), pa.array(pair)
    leaves = pa.table(
        {
            "pool": pools.column("pool").take(by_pool),
            "source": pools.column("source").take(by_pool),
            "agreement_id": pools.column("agreement_id").take(by_pool),
            "currency": pools.column("currency").take(by_pool),
            "pair": ((pool_ix + 1) * 4294967296 + rank)[pair],
            "output_id": outputs.take(pairs.column("out_no").fill_null(0).take(by_pair)),
            "recording_id": pairs.column("recording_id").take(by_pair),
            "work_id": pairs.column("work_id").take(by_pair),
            "isrc": pairs.column("isrc").take(by_pair),
            "pair_weight": _decimal(pair_weight[pair]),
            "pair_amount": pair_amount[pair],
            "role": pa.array(np.array(ROLES, dtype=object)[np.concatenate(rows.role)[order]]),
            "party_id": pa.array(
                np.concatenate(rows.party)[order], mask=np.concatenate(rows.party_null)[order]
            ),
            "leaf_weight": _decimal(leaf_weight),
            "amount": amount,
        },
        schema=LEAVES_SCHEMA,
    )
    return pa.concat_tables([leaves, _unattributed(pools, leaf_pool)]), len(pair_weight)


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
        },
        schema=LEAVES_SCHEMA,
    )


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
    # One rollup alone already has one row per (currency, territory, item): no merge, and
    # it is read where used rather than stored; merged totals are stored, as merging is dear.
    single = len(files) == 1 and totals_path(files[0]).exists()
    agg = "VIEW" if single else "TABLE"
    merged = (
        "units::BIGINT AS units, revenue::HUGEINT AS revenue FROM item_totals"
        if single
        else "sum(units)::BIGINT AS units, sum(revenue)::HUGEINT AS revenue FROM item_totals "
        "GROUP BY ALL"
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
        -- Item totals per (currency, territory, item).
        CREATE {agg} agg AS SELECT currency::VARCHAR AS currency,
            territory::VARCHAR AS territory, item_kind::VARCHAR AS item_kind, item,
            {merged};
        CREATE TABLE usage_territories AS
            SELECT DISTINCT territory::VARCHAR AS territory FROM item_totals;
        CREATE TABLE agg_out AS SELECT * FROM agg WHERE item_kind = 'output';
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
        -- Outputs numbered in id order, so that pairs sort and group on integers.
        CREATE TABLE out_no AS
            SELECT output_id, row_number() OVER (ORDER BY output_id) AS out_no
            FROM (SELECT DISTINCT output_id FROM s_outputs WHERE output_id IS NOT NULL);
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
        -- governed by it everywhere; only the others need a minimum per territory.
        CREATE TABLE full_cover AS
            SELECT agreement_id FROM cov GROUP BY ALL
            HAVING count(DISTINCT territory) = (SELECT count(territory) FROM usage_territories);
        CREATE TABLE gov_all AS
            SELECT f.recording_id, f.agreement_id
            FROM (SELECT recording_id, min(agreement_id) AS agreement_id
                  FROM covers_rec GROUP BY ALL) f
            SEMI JOIN full_cover USING (agreement_id);
        CREATE TABLE cat AS
            SELECT a.currency, a.territory, a.item AS isrc, r.recording_id, a.units, a.revenue,
                r.agreement_id
            FROM agg a LEFT JOIN (
                SELECT r.isrc, r.recording_id, f.agreement_id FROM s_recordings r
                LEFT JOIN gov_all f ON f.recording_id = r.recording_id
            ) r ON r.isrc = a.item
            WHERE a.item_kind = 'isrc';
        CREATE TABLE gov AS
            SELECT c.recording_id, c.territory, min(v.agreement_id) AS agreement_id
            FROM (SELECT DISTINCT recording_id, territory FROM cat
                  WHERE recording_id IS NOT NULL AND agreement_id IS NULL) c
            JOIN covers_rec v ON v.recording_id = c.recording_id
            JOIN cov t ON t.agreement_id = v.agreement_id AND t.territory = c.territory
            GROUP BY ALL;
        CREATE VIEW catg AS SELECT * FROM cat WHERE recording_id IS NOT NULL;
        """
    )
    if con.execute("SELECT count(*) FROM gov").fetchall()[0][0]:
        con.execute(
            "UPDATE cat SET agreement_id = g.agreement_id FROM gov g "
            "WHERE g.recording_id = cat.recording_id AND g.territory = cat.territory"
        )
    con.execute(
        "CREATE TABLE cat_rec AS SELECT currency, agreement_id, recording_id, "
        "sum(units) AS units, sum(revenue) AS revenue FROM catg GROUP BY ALL"
    )
    pools = _pools(con, snap.tables["agreements"], recoupable or {})
    con.register("pools", pools)
    # Level 1: each pool over its pairs (AI: output x item; catalog: recording; suspense: ISRC).
    con.execute(
        f"""
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
        -- Units of each covered output in the territories each agreement grants.
        CREATE TABLE ai_units AS
            SELECT c.agreement_id, u.currency, u.out_no, sum(u.units) AS units
            FROM (SELECT DISTINCT agreement_id, out_no FROM ai_cover) c
            JOIN ai_usage u ON u.out_no = c.out_no
            JOIN ai_ok k ON k.agreement_id = c.agreement_id AND k.platform_id = u.platform_id
                AND k.model = u.model AND k.territory = u.territory
            GROUP BY ALL HAVING sum(u.units) > 0;
        CREATE TABLE ai_pairs AS
            SELECT p.pool, p.amount AS total, c.out_no, c.recording_id, c.work_id,
                NULL::VARCHAR AS isrc, (a.units * c.n)::HUGEINT * c.share AS weight
            FROM ai_cover c
            JOIN ai_units a ON a.agreement_id = c.agreement_id AND a.out_no = c.out_no
            JOIN pools p ON p.source = 'ai' AND p.agreement_id = c.agreement_id
                AND p.currency = a.currency;
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
            SELECT p.pool, p.amount AS total, NULL::BIGINT AS out_no, c.recording_id,
                NULL::BIGINT AS work_id, NULL::VARCHAR AS isrc,
                CASE WHEN p.policy = 'user_centric' THEN w.weight
                     WHEN p.source = 'direct' THEN c.revenue
                     ELSE c.units::HUGEINT END AS weight
            FROM cat_rec c
            JOIN pools p ON p.source IN ('catalog', 'direct')
                AND coalesce(p.agreement_id, -1) = coalesce(c.agreement_id, -1)
                AND p.currency = c.currency
            LEFT JOIN uc_w w ON w.currency = c.currency AND w.agreement_id = c.agreement_id
                AND w.recording_id = c.recording_id;
        CREATE TABLE sus_pairs AS
            SELECT p.pool, p.amount AS total, NULL::BIGINT AS out_no,
                NULL::BIGINT AS recording_id, NULL::BIGINT AS work_id, c.isrc,
                sum(c.revenue) AS weight
            FROM cat c JOIN pools p ON p.source = 'suspense' AND p.currency = c.currency
            WHERE c.recording_id IS NULL GROUP BY ALL;
        CREATE TABLE pairs_in AS
            SELECT * FROM ai_pairs UNION ALL SELECT * FROM cat_pairs
            UNION ALL SELECT * FROM sus_pairs;
        """
    )
    con.execute(
        """
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
        """
    )
    leaves, n_pairs = _leaves(con)
    unpooled = con.execute(
        """
        SELECT a.currency, sum(a.revenue) FROM agg_out a
        ANTI JOIN (
            SELECT DISTINCT e.output_id, e.currency, e.territory
            FROM ai_usage e
            JOIN (SELECT DISTINCT platform_id, model, territory FROM ai_ok) k
                ON k.platform_id = e.platform_id
                AND k.model = e.model AND k.territory = e.territory
        ) p ON p.output_id = a.item AND p.currency = a.currency AND p.territory = a.territory
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    summary = {
        "ai_revenue_not_pooled": {str(c): str(int(r)) for c, r in unpooled},
        "pools": pools.num_rows,
        "pairs": n_pairs,
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
