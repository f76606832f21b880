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
splits (pools over pairs, pairs over parties) and each listener's user-centric split run in
numpy on integer keys (attune.royalties.split), in int64 where products fit and in exact
Python integers where they do not. Item totals come from the rollup ingest writes beside each
usage file, and user-centric lines from its integer-coded ISRC lines where every file has them
(attune.royalties.ingest.write_totals, write_listens); otherwise from the lines themselves.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from attune.royalties.ingest import listens_paths, totals_path
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


@dataclass(frozen=True, slots=True)
class _Registry:
    """What the leaves need of the snapshot, read once and shared (read-only) by all parts."""

    owners: _Splits
    shares: _Splits
    rec_key: split.SortedKeys  # recording ids
    rec_work: npt.NDArray[np.int64]  # and their works (0 where NULL)
    rec_work_null: npt.NDArray[np.bool_]
    outputs: pa.Array  # output ids by number (index 0: NULL)

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
            pa.concat_arrays([pa.nulls(1, pa.string()), *names.column(0).cast(pa.string()).chunks]),
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


def _leaves(con: duckdb.DuckDBPyConnection, parts: int) -> tuple[pa.Table, int]:
    """Levels 1 and 2 in numpy: each pool over its pairs, each pair over its parties.

    Pools are independent, so their pairs are cut at pool boundaries into ``parts`` runs of
    about equal size that threads allocate side by side (numpy and Arrow release the GIL);
    the runs' leaves are concatenated in pool order. Returns (leaves, number of pairs).
    """
    pools, pairs = _pairs(con)
    reg = _Registry.read(con)
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, pool_ix[1:] != pool_ix[:-1]]) if len(pool_ix) else pool_ix
    at = np.searchsorted(first, np.arange(1, parts) * len(pool_ix) / parts)
    cuts = np.unique(first[np.minimum(at, len(first) - 1)]) if len(first) else first
    bounds = np.r_[0, cuts[cuts > 0], len(pool_ix)].astype(np.int64)
    runs = [pairs.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds.tolist())]
    with ThreadPoolExecutor(max(1, len(runs))) as pool:
        done = list(pool.map(lambda run: _leaves_of(reg, pools, run), runs))
    leaves = [table for table, _ in done]
    reached = np.concatenate([np.zeros(0, np.int64), *(r for _, r in done)])
    return pa.concat_tables([*leaves, _unattributed(pools, reached)]), len(pool_ix)


def _leaves_of(
    reg: _Registry, pools: pa.Table, pairs: pa.Table
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """Leaves of whole pools' pairs (in PAIR_KEY order); also the pools they reach.

    Pair ids are the pool's number (pools in name order) x 2^32 + the pair's place in the
    pool's largest-remainder order (remainder, then PAIR_KEY), so numbering needs no global
    sort.
    """
    pool_ix = np.asarray(pairs.column("pool_ix").to_numpy(), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, pool_ix[1:] != pool_ix[:-1]]) if len(pool_ix) else pool_ix
    sizes = np.diff(np.r_[first, len(pool_ix)]).astype(np.int64)
    totals = np.asarray(pairs.column("total").to_numpy(), dtype=np.int64)[first]
    pair_weight = split.as_ints(pairs.column("weight"))
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
    leaf_pool, by_pool, by_pair = pool_ix[pair], pa.array(pool_ix[pair]), pa.array(pair)
    out_no = np.asarray(pairs.column("out_no").fill_null(0).to_numpy(), dtype=np.int64)
    leaves = pa.table(
        {
            "pool": pools.column("pool").take(by_pool),
            "source": pools.column("source").take(by_pool),
            "agreement_id": pools.column("agreement_id").take(by_pool),
            "currency": pools.column("currency").take(by_pool),
            "pair": ((pool_ix + 1) * 4294967296 + rank)[pair],
            "output_id": reg.outputs.take(pa.array(out_no[pair])),
            "recording_id": pairs.column("recording_id").take(by_pair),
            "work_id": pairs.column("work_id").take(by_pair),
            "isrc": pairs.column("isrc").take(by_pair),
            "pair_weight": _decimal(pair_weight[pair]),
            "pair_amount": pair_amount[pair],
            "role": pa.array(ROLES).take(pa.array(_cat(rows.role, np.int8)[order])),
            "party_id": pa.array(
                _cat(rows.party, np.int64)[order], mask=_cat(rows.party_null, np.bool_)[order]
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
        },
        schema=LEAVES_SCHEMA,
    )


def _uc_lines_from_listens(
    con: duckdb.DuckDBPyConnection, files: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], split.Ints, split.Ints]:
    """User-centric lines from the files' integer-coded side files: (uc_gov ix, listener, units,
    revenue) per line. Keys are joined once per distinct item; lines are kept by item number."""
    gov_ix, listener, units, revenue, names = [], [], [], [], []
    for f in files:
        listens, keys = listens_paths(f)
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
        picked = con.sql(
            f"""
            SELECT k.ix, l.listener_no, l.units, l.revenue
            FROM read_parquet({_listing([listens])}) l JOIN uc_look k
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
    order = np.lexsort((rec, agr, cur))
    cur, agr, rec = cur[order], agr[order], rec[order]
    new_ca = np.r_[True, (cur[1:] != cur[:-1]) | (agr[1:] != agr[:-1])] if len(order) else cur
    new_ucr = np.r_[True, rec[1:] != rec[:-1]] | new_ca if len(order) else new_ca
    ucr_of, ca_of = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    ucr_of[order], ca_of[order] = np.cumsum(new_ucr) - 1, np.cumsum(new_ca) - 1
    return ucr_of, ca_of, order[np.flatnonzero(new_ucr)]


def _user_centric(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> None:
    """Table uc_w: per (currency, agreement, recording), the sum over listeners of each
    listener's revenue split over their recordings by units (largest remainder, ties by
    recording id), for agreements whose catalog policy is user-centric."""
    gov = con.sql(
        "SELECT currency, agreement_id, recording_id FROM uc_gov ORDER BY ix"
    ).to_arrow_table()
    ucr_of, ca_of, ucr_rows = _uc_numbers(gov)
    sides = files and all(listens_paths(f)[0].exists() for f in files)
    ix, listener, units, revenue = (
        _uc_lines_from_listens(con, files) if sides else _uc_lines_from_usage(con)
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
    by_ucr = np.argsort(ucr)  # amounts of one recording are summed: their order is free
    ucr = ucr[by_ucr]
    runs = np.flatnonzero(np.r_[True, ucr[1:] != ucr[:-1]]) if len(ucr) else ucr
    weight = split.group_sums(amount[by_ucr], runs) if len(ucr) else amount
    sums = gov.take(pa.array(ucr_rows[ucr[runs]])).append_column("weight", _decimal(weight))
    con.register("uc_sums", sums)
    con.execute("CREATE TABLE uc_w AS SELECT * REPLACE (weight::HUGEINT AS weight) FROM uc_sums")
    con.unregister("uc_sums")


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
    # User-centric items per (ISRC, territory, currency), numbered for the numpy split, which
    # runs on a second connection while the AI pairs are built.
    con.execute(
        """
        CREATE TABLE uc_gov AS
            SELECT (row_number() OVER () - 1)::BIGINT AS ix, *
            FROM (SELECT DISTINCT c.isrc, c.territory, c.currency, c.recording_id,
                      c.agreement_id
                  FROM catg c JOIN ga g ON g.agreement_id = c.agreement_id
                  WHERE g.catalog_policy = 'user_centric')
        """
    )
    with ThreadPoolExecutor(1) as background:
        uc_weights = background.submit(_user_centric, con.cursor(), files)
        # Level 1: each pool over its pairs (AI: output x item; catalog: recording; suspense: ISRC).
        con.execute(
            """
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
            """
        )
        uc_weights.result()
    con.execute(
        """
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
        -- Spent: their memory is reused by what follows instead of fresh pages.
        DROP TABLE pairs_in; DROP TABLE ai_pairs; DROP TABLE cat_pairs; DROP TABLE sus_pairs;
        DROP TABLE ai_cover; DROP TABLE uc_gov; DROP TABLE uc_w; DROP TABLE cat_rec;
        """
    )
    # What the leaves do not need (unpooled revenue, coverage) is read on a second connection
    # to the same database while the leaves are computed.
    side = con.cursor()
    side.register("pools", pools)
    with ThreadPoolExecutor(1) as background:
        traced = background.submit(_traces, side)
        leaves, n_pairs = _leaves(con, int(threads or os.cpu_count() or 1))
        unpooled, coverage = traced.result()
    summary = {
        "ai_revenue_not_pooled": {str(c): str(int(r)) for c, r in unpooled},
        "pools": pools.num_rows,
        "pairs": n_pairs,
        "leaves": leaves.num_rows,
    }
    return Allocation(period, pools, leaves, coverage, summary)


def _traces(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], pa.Table]:
    """AI revenue no pool took, per currency; and coverage: per pool, the usage groups in it."""
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
    return unpooled, coverage
