"""Property tests: every allocation conserves money, pays nobody a negative amount, is
deterministic whatever the input order, and paying the same usage twice changes nothing."""

from __future__ import annotations

import ctypes
import itertools
import random
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attune.royalties import split
from attune.royalties.allocate import Allocation, Snapshot, allocate, snapshot
from attune.royalties.ingest import (
    USAGE_SCHEMA,
    coded_totals_path,
    totals_path,
    write_listens,
    write_parquet,
    write_totals,
)
from attune.royalties.money import div_half_even, largest_remainder

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(
    total=st.integers(0, 10**12),
    weights=st.lists(st.integers(0, 10**15), min_size=1, max_size=30).filter(lambda w: sum(w)),
)
def test_largest_remainder_sums_exactly_and_stays_within_one_unit(
    total: int, weights: list[int]
) -> None:
    keyed = list(enumerate(weights))
    parts = largest_remainder(total, keyed)
    assert sum(parts.values()) == total
    grand = sum(weights)
    for k, w in keyed:
        assert parts[k] >= 0
        assert total * w // grand <= parts[k] <= total * w // grand + 1
    shuffled = keyed[:]
    random.Random(total).shuffle(shuffled)
    assert largest_remainder(total, shuffled) == parts


@given(
    groups=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 10**6), st.integers(0, 2**63 - 1)),
            st.lists(
                st.one_of(st.integers(0, 10**4), st.integers(0, 10**18)), min_size=1, max_size=20
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_numpy_largest_remainder_matches_the_python_reference(
    groups: list[tuple[int, list[int]]],
) -> None:
    """Vectorised splits, int64 or (where products overflow 64 bits) exact Python ints, equal
    money.largest_remainder group by group; groups over SMALL_GROUP rows take the sorted path."""
    totals = split.fit(np.array([t for t, _ in groups], dtype=object))
    sizes = np.array([len(w) for _, w in groups], dtype=np.int64)
    weights = split.fit(np.array([w for _, ws in groups for w in ws], dtype=object))
    amounts, _ = split.largest_remainder(totals, sizes, weights)
    start = 0
    for total, ws in groups:
        keyed = list(enumerate(ws)) if sum(ws) else [(k, 1) for k in range(len(ws))]
        expected = largest_remainder(total, keyed)
        assert amounts[start : start + len(ws)].tolist() == [expected[k] for k in range(len(ws))]
        start += len(ws)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(-(2**62), 2**62)), max_size=40),
    st.sampled_from([1, 10**3, 10**12]),
)
@example([(3, 2**62), (3, 2**62), (0, 5)], 1)  # a sum of 2^63, past int64
def test_key_sums_are_exact_on_either_path(rows: list[tuple[int, int]], scale: int) -> None:
    """Per-key sums equal Python's, whether accumulated in int64 (small magnitudes) or summed
    as Python integers (large ones, up to and beyond 2^63 in total)."""
    keys = np.array([k for k, _ in rows], dtype=np.int64)
    values = np.array([v // scale for _, v in rows], dtype=np.int64)
    present, (sums, halves) = split.key_sums(keys, [values, values // 2], 10)
    expected: dict[int, int] = {}
    for k, v in zip(keys.tolist(), values.tolist(), strict=True):
        expected[k] = expected.get(k, 0) + v
    assert present.tolist() == sorted(expected)
    assert [int(x) for x in sums] == [expected[k] for k in sorted(expected)]
    half: dict[int, int] = {}
    for k, v in zip(keys.tolist(), (values // 2).tolist(), strict=True):
        half[k] = half.get(k, 0) + v
    assert [int(x) for x in halves] == [half[k] for k in sorted(half)]


def test_products_beyond_64_bits_fall_back_to_exact_integers() -> None:
    """Where amount x weight overflows int64, quotient and remainder are still exact."""
    a = np.array([3, 10**12], dtype=np.int64)
    b = np.array([5, 10**14], dtype=np.int64)
    den = np.array([4, 7 * 10**13 + 1], dtype=np.int64)
    quo, rem = split.mul_divmod(a, b, den)
    assert [int(q) for q in quo] == [3, 10**26 // (7 * 10**13 + 1)]
    assert [int(r) for r in rem] == [3, 10**26 % (7 * 10**13 + 1)]
    assert quo.dtype == np.int64 and rem.dtype == np.int64  # both fit once divided
    assert split.mul(a, b).dtype == object and split.mul(a[:1], b[:1]).dtype == np.int64
    assert split.as_ints(pa.array([10**30], pa.decimal128(38, 0))).tolist() == [10**30]
    assert split.as_ints(pa.array([7], pa.decimal128(38, 0))).dtype == np.int64
    with pytest.raises(ValueError, match="NULL"):
        split.as_ints(pa.array([1, None], pa.int64()))
    q, r = split.divmod_trunc(np.array([-7], dtype=np.int64), np.array([2], dtype=np.int64))
    assert (int(q[0]), int(r[0])) == (-3, -1)  # truncated toward zero, as in SQL


def test_expand_joins_dense_and_sparse_keys_alike() -> None:
    """The equi-join helper gives the same matches by lookup table (dense) and by search, with
    repeated keys or (the direct path) unique ones."""
    keys = np.array([7, 0, 1, 3, 9, -5, 1], dtype=np.int64)
    dense = np.array([1, 1, 3, 7, 7, 7], dtype=np.int64)
    sparse = np.append(dense, 10**12)
    expected = ([0, 0, 0, 2, 2, 3, 6, 6], [3, 4, 5, 0, 1, 2, 0, 1])
    for sorted_keys in (dense, sparse):
        left, right = split.SortedKeys(sorted_keys).expand(keys)
        assert (left.tolist(), right.tolist()) == expected
    unique = split.SortedKeys(np.array([1, 3, 7, 8], dtype=np.int64))
    assert unique.unique
    left, right = unique.expand(keys)
    assert (left.tolist(), right.tolist()) == ([0, 2, 3, 6], [2, 0, 1, 0])


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**9))
def test_half_even_division_matches_decimal_rounding(n: int, d: int) -> None:
    from decimal import ROUND_HALF_EVEN, Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        expected = (Decimal(n) / Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert div_half_even(n, d) == int(expected)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Snapshot, list[dict[str, object]]]:
    """A random registry (recordings, works, outputs, agreements) and usage rows over it."""
    n_rec = draw(st.integers(1, 6))
    n_work = draw(st.integers(1, 4))
    step = draw(st.sampled_from([1, 1, 10**9]))  # recording ids dense or far apart
    parties = list(range(1, 9))
    recordings, owners = [], []
    for r in range(1, n_rec + 1):
        work = draw(st.one_of(st.none(), st.integers(1, n_work)))
        recordings.append({"recording_id": r * step, "isrc": f"GBATT26{r:05d}",
                           "work_id": work})  # fmt: skip
        held = draw(st.lists(st.sampled_from(parties), min_size=1, max_size=3, unique=True))
        shares = _split(100_000_000, len(held), draw)
        owners += [{"recording_id": r * step, "party_id": p, "share": s}
                   for p, s in zip(held, shares, strict=True)]  # fmt: skip
    work_shares = []
    for w in range(1, n_work + 1):
        held = draw(st.lists(st.sampled_from(parties), min_size=1, max_size=3, unique=True))
        shares = _split(100_000_000, len(held), draw)
        work_shares += [{"work_id": w, "party_id": p, "role": "writer", "share": s}
                        for p, s in zip(held, shares, strict=True)]  # fmt: skip
    outputs, attributions = [], []
    for o in range(draw(st.integers(0, 4))):
        oid = f"out-{o}"
        outputs.append({"output_id": oid, "platform_id": 99, "model": "m"})
        k = draw(st.integers(1, 3))
        shares = _split(1_000_000, k, draw)
        for i, s in enumerate(shares):
            if draw(st.booleans()):
                attributions.append({"output_id": oid, "recording_id": (1 + i % n_rec) * step,
                                     "work_id": None, "share": s})  # fmt: skip
            else:
                attributions.append({"output_id": oid, "recording_id": None,
                                     "work_id": 1 + i % n_work, "share": s})  # fmt: skip
    agreements = [
        {"agreement_id": i, "licensor_id": p, "licensee_id": 99,
         "start_date": date(2026, 1, 1), "end_date": None, "worldwide": draw(st.booleans()),
         "covers_all": True,
         "ai_share": draw(st.integers(0, 1_000_000)),
         "minimum_guarantee": draw(st.sampled_from([0, 0, 1_000_000])), "currency": "EUR",
         "catalog_policy": draw(st.sampled_from(["pro_rata", "user_centric"])),
         "ai_publishing": draw(st.sampled_from([0, 500_000, 1_000_000])),
         "catalog_publishing": draw(st.sampled_from([0, 250_000]))}
        for i, p in enumerate(draw(st.lists(st.sampled_from(parties), max_size=4, unique=True)),
                              start=1)
    ]  # fmt: skip
    items = [r["isrc"] for r in recordings] + [o["output_id"] for o in outputs] + ["GBZZZ2600001"]
    usage = [
        {"report": "r", "line": n, "territory": draw(st.sampled_from(["FR", "DE"])),
         "service": "s", "use_type": "stream", "commercial_model": "",
         "item_kind": "output" if str(item).startswith("out") else "isrc", "item": item,
         "units": draw(st.integers(0, 1000)), "revenue": draw(st.integers(0, 10**8)),
         "currency": draw(st.sampled_from(["EUR", "EUR", "JPY"])),
         "listener": draw(st.sampled_from([None, "a", "b"])), "transaction_id": None}
        for n, item in enumerate(draw(st.lists(st.sampled_from(items), min_size=1,
                                               max_size=25)), start=2)
    ]  # fmt: skip
    # A grant that is not worldwide covers France: its recordings are governed per territory.
    territories = [{"agreement_id": a["agreement_id"], "territory": "FR", "excluded": False}
                   for a in agreements if not a["worldwide"]]  # fmt: skip
    snap = snapshot(
        recordings=recordings,
        owners=owners,
        work_shares=work_shares,
        outputs=outputs,
        attributions=attributions,
        agreements=agreements,
        territories=territories,
    )
    return snap, usage  # fmt: skip


def _split(total: int, n: int, draw: st.DrawFn) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(1, total - 1), min_size=n - 1, max_size=n - 1,
                                unique=True)))  # fmt: skip
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def _write(rows: list[dict[str, object]], path: Path) -> str:
    write_parquet(pa.Table.from_pylist(rows, schema=USAGE_SCHEMA), path)
    return str(path)


def _shuffled(snap: Snapshot, seed: int) -> Snapshot:
    rng = random.Random(seed)
    tables = {}
    for name, table in snap.tables.items():
        order = list(range(table.num_rows))
        rng.shuffle(order)
        tables[name] = table.take(pa.array(order, pa.int64()))
    return Snapshot(tables)


@SETTINGS
@given(world=worlds(), seed=st.integers(0, 1000))
def test_allocation_conserves_is_non_negative_deterministic_and_idempotent(
    tmp_path_factory: pytest.TempPathFactory,
    world: tuple[Snapshot, list[dict[str, object]]],
    seed: int,
) -> None:
    snap, usage = world
    folder = tmp_path_factory.mktemp("alloc")
    path = _write(usage, folder / "u.parquet")
    result = allocate([path], snap, "2026-10")
    con = duckdb.connect()
    con.register("p", result.pools)
    con.register("l", result.leaves)
    # Conservation: each pool's leaves sum to it; each pair's leaves to the pair.
    assert (
        con.execute(
            "SELECT count(*) FROM p LEFT JOIN (SELECT pool, sum(amount) s FROM l GROUP BY pool) x "
            "USING (pool) WHERE coalesce(x.s, 0) <> p.amount AND p.amount > 0"
        ).fetchall()[0][0]
        == 0
    )
    assert (
        con.execute(
            "SELECT count(*) FROM (SELECT pair, any_value(pair_amount) a, sum(amount) s FROM l "
            "WHERE pair IS NOT NULL GROUP BY pair) WHERE a <> s"
        ).fetchall()[0][0]
        == 0
    )
    # Every cent of catalog revenue reaches a pool (rounded once per pool to the minor unit).
    for cur, unit in (("EUR", 10_000), ("JPY", 1_000_000)):
        revenue = sum(int(u["revenue"]) for u in usage  # type: ignore[call-overload]
                      if u["item_kind"] == "isrc" and u["currency"] == cur)  # fmt: skip
        pooled = con.execute(
            "SELECT coalesce(sum(amount), 0) FROM p WHERE source <> 'ai' AND currency = ?", [cur]
        ).fetchall()[0][0]
        assert abs(int(pooled) * unit - revenue) <= unit * 3
    # Non-negativity.
    assert con.execute("SELECT count(*) FROM l WHERE amount < 0").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM p WHERE amount < 0").fetchall()[0][0] == 0
    # Determinism: the same inputs in any row order give the same result.
    rows = usage[:]
    random.Random(seed).shuffle(rows)
    again = allocate([_write(rows, folder / "v.parquet")], _shuffled(snap, seed), "2026-10")
    assert again.digest() == result.digest()
    # Idempotency: reading the same usage twice (a duplicate file) is not the same as once,
    # which is why ingest refuses duplicates; one file read once always gives one answer.
    assert allocate([path], snap, "2026-10").digest() == result.digest()
    # The ingest-time side files (item rollup, integer-coded ISRC lines) stand in for the
    # lines: same result with or without them, with one file coded and another not, and with
    # both coded (listeners merged across files by name); so does any number of threads.
    write_totals(Path(path))
    assert allocate([path], snap, "2026-10").digest() == result.digest()
    write_listens(Path(path))
    coded = allocate([path], snap, "2026-10", threads=3)
    assert coded.digest() == result.digest()
    assert _coverage(coded) == _coverage(result)
    # A report ingested before the integer-coded item totals has keys and coded lines but no
    # *.items.parquet: its totals are numbered at allocation, with the same result.
    coded_totals_path(Path(path)).unlink()
    assert allocate([path], snap, "2026-10").digest() == result.digest()
    half = len(usage) // 2
    split = [_write(usage[:half], folder / "a.parquet"), _write(usage[half:], folder / "b.parquet")]
    write_totals(Path(split[0]))
    assert allocate(split, snap, "2026-10").digest() == result.digest()
    write_listens(Path(split[0]))
    assert allocate(split, snap, "2026-10").digest() == result.digest()
    # A period mixing a file with only its coded rollup (as ingest now writes) and one with
    # only lines decodes the coded rollup to strings.
    totals_path(Path(split[0])).unlink()
    assert allocate(split, snap, "2026-10").digest() == result.digest()
    write_listens(Path(split[1]))
    both = allocate(split, snap, "2026-10", threads=1)
    assert both.digest() == result.digest()
    assert _coverage(both) == _coverage(result)


def _coverage(result: Allocation) -> list[tuple[str, ...]]:
    """Coverage rows as plain values, sorted: the same usage groups under the same pools."""
    return sorted(tuple(map(repr, r.values())) for r in result.coverage.to_pylist())


def test_incomplete_lines_get_no_coded_totals_and_allocate_alike(tmp_path: Path) -> None:
    """A file with a line that has no territory (possible only by hand) gets no coded totals;
    its allocation then numbers the totals itself and pays the same as from its lines."""
    snap = snapshot(
        recordings=[{"recording_id": 1, "isrc": "GBATT2600001", "work_id": None}],
        owners=[{"recording_id": 1, "party_id": 1, "share": 100_000_000}],
    )
    rows = [{"report": "r", "line": n, "territory": territory, "service": "s",
             "use_type": "stream", "commercial_model": "", "item_kind": "isrc",
             "item": item, "units": 3, "revenue": 1_234_567, "currency": "EUR",
             "listener": "a", "transaction_id": None}
            for n, (territory, item) in enumerate([("FR", "GBATT2600001"), (None, "GBATT2600001"),
                                                   ("DE", "GBZZZ2600009")], start=2)]  # fmt: skip
    path = _write(rows, tmp_path / "u.parquet")
    plain = allocate([path], snap, "2026-10")
    write_totals(Path(path))
    write_listens(Path(path))
    assert not coded_totals_path(Path(path)).exists()
    again = allocate([path], snap, "2026-10")
    assert again.digest() == plain.digest()
    assert _coverage(again) == _coverage(plain)


def test_sql_largest_remainder_matches_the_python_reference(tmp_path: Path) -> None:
    """One catalog pool over many recordings: SQL amounts equal money.largest_remainder."""
    n = 40
    snap = snapshot(
        recordings=[{"recording_id": r, "isrc": f"GBATT26{r:05d}", "work_id": None}
                    for r in range(1, n + 1)],
        owners=[{"recording_id": r, "party_id": r, "share": 100_000_000}
                for r in range(1, n + 1)],
    )  # fmt: skip
    rng = random.Random(3)
    usage = [{"report": "r", "line": r, "territory": "FR", "service": "s", "use_type": "x",
              "commercial_model": "", "item_kind": "isrc", "item": f"GBATT26{r:05d}",
              "units": rng.choice([1, 2, 3]), "revenue": 33_333, "currency": "EUR",
              "listener": None, "transaction_id": None} for r in range(1, n + 1)]  # fmt: skip
    result = allocate([_write(usage, tmp_path / "u.parquet")], snap, "2026-10")
    pool = result.pools.to_pylist()[0]
    got = {r["recording_id"]: r["amount"] for r in result.leaves.to_pylist()}
    expected = largest_remainder(pool["amount"], [
        (u["item"], u["revenue"]) for u in usage])  # fmt: skip
    assert pool["source"] == "direct"
    assert [got[r] for r in range(1, n + 1)] == [expected[f"GBATT26{r:05d}"]
                                                for r in range(1, n + 1)]  # fmt: skip


def test_worldwide_usage_is_pooled_only_by_worldwide_grants_without_exceptions(
    tmp_path: Path,
) -> None:
    """Revenue reported for 'Worldwide' (not per country) cannot be placed inside a grant that
    leaves a country out, so only an unrestricted worldwide agreement pools it."""
    base = {
        "licensee_id": 99,
        "start_date": date(2026, 1, 1),
        "end_date": None,
        "covers_all": True,
        "ai_share": 500_000,
        "minimum_guarantee": 0,
        "currency": "EUR",
        "catalog_policy": "pro_rata",
        "ai_publishing": 0,
        "catalog_publishing": 0,
    }
    snap = snapshot(
        recordings=[{"recording_id": r, "isrc": f"GBATT26{r:05d}", "work_id": None}
                    for r in (1, 2, 3)],
        owners=[{"recording_id": r, "party_id": r, "share": 100_000_000} for r in (1, 2, 3)],
        agreements=[{**base, "agreement_id": 1, "licensor_id": 1, "worldwide": True},
                    {**base, "agreement_id": 2, "licensor_id": 2, "worldwide": True},
                    {**base, "agreement_id": 3, "licensor_id": 3, "worldwide": False}],
        territories=[{"agreement_id": 2, "territory": "FR", "excluded": True},
                     {"agreement_id": 3, "territory": "FR", "excluded": False}],
    )  # fmt: skip
    usage = [{"report": "r", "line": r, "territory": "Worldwide", "service": "s",
              "use_type": "stream", "commercial_model": "", "item_kind": "isrc",
              "item": f"GBATT26{r:05d}", "units": 1, "revenue": 10_000, "currency": "EUR",
              "listener": None, "transaction_id": None} for r in (1, 2, 3)]  # fmt: skip
    result = allocate([_write(usage, tmp_path / "u.parquet")], snap, "2026-10")
    pools = {p["pool"]: p["amount"] for p in result.pools.to_pylist()}
    assert pools == {"catalog:1:EUR": 1, "direct:-:EUR": 2}


def test_huge_pools_split_exactly_beyond_64_bits(tmp_path: Path) -> None:
    """A pool so large that amount x split weight overflows int64 still pays to the unit,
    exactly as the Python reference splits it."""
    owners = [(1, 33_333_334), (2, 33_333_333), (3, 33_333_333)]
    snap = snapshot(
        recordings=[{"recording_id": 1, "isrc": "GBATT2600001", "work_id": None},
                    {"recording_id": 2, "isrc": "GBATT2600002", "work_id": None}],
        owners=[{"recording_id": 1, "party_id": p, "share": s} for p, s in owners]
        + [{"recording_id": 2, "party_id": 4, "share": 100_000_000}],
    )  # fmt: skip
    usage = [{"report": "r", "line": n, "territory": "FR", "service": "s", "use_type": "x",
              "commercial_model": "", "item_kind": "isrc", "item": f"GBATT260000{n}",
              "units": 1, "revenue": revenue, "currency": "EUR", "listener": None,
              "transaction_id": None}
             for n, revenue in ((1, 987_654_321_987_654_321), (2, 3))]  # fmt: skip
    result = allocate([_write(usage, tmp_path / "u.parquet")], snap, "2026-10")
    pair = [r for r in result.leaves.to_pylist() if r["recording_id"] == 1]
    amount = pair[0]["pair_amount"]
    assert amount * 10**14 > 2**63  # the overflow path was needed
    expected = largest_remainder(amount, [(p, s * 1_000_000) for p, s in owners])
    assert {r["party_id"]: r["amount"] for r in pair} == expected
    pool = result.pools.to_pylist()[0]
    assert sum(r["amount"] for r in result.leaves.to_pylist()) == pool["amount"]


def test_user_centric_listeners_are_one_across_coded_files(tmp_path: Path) -> None:
    """A listener's lines in two reports form one user-centric split, whether the lines are
    read as they are or from the integer-coded side files, whose numbers differ per file."""
    snap = snapshot(
        recordings=[{"recording_id": r, "isrc": f"GBATT260000{r}", "work_id": None}
                    for r in (1, 2)],
        owners=[{"recording_id": r, "party_id": 1, "share": 100_000_000} for r in (1, 2)],
        agreements=[{"agreement_id": 1, "licensor_id": 1, "licensee_id": 99,
                     "start_date": date(2026, 1, 1), "end_date": None, "worldwide": True,
                     "covers_all": True, "ai_share": 0, "minimum_guarantee": 0,
                     "currency": "EUR", "catalog_policy": "user_centric", "ai_publishing": 0,
                     "catalog_publishing": 0}],
    )  # fmt: skip

    def line(n: int, rec: int, units: int, revenue: int, listener: str) -> dict[str, object]:
        return {"report": "r", "line": n, "territory": "FR", "service": "s", "use_type": "x",
                "commercial_model": "", "item_kind": "isrc", "item": f"GBATT260000{rec}",
                "units": units, "revenue": revenue, "currency": "EUR", "listener": listener,
                "transaction_id": None}  # fmt: skip

    # Listener "a" streams recording 1 (1 unit, all the revenue) in one report and recording 2
    # (3 units, no revenue) in the other: merged, 1/4 of the revenue goes to recording 1. Forty
    # more listeners, in another order per report, each with their own mix of the two.
    a = [line(2, 1, 1, 1_000_001, "a")]
    a += [line(3 + i, 1, 1, 1_000_000 * (i + 1), f"L{i}") for i in range(40)]
    b = [line(2, 2, 3, 0, "a")]
    b += [line(3 + i, 2, i + 1, 0, f"L{i}") for i in reversed(range(40))]
    whole = allocate([_write(a + b, tmp_path / "all.parquet")], snap, "2026-10")
    files = [_write(a, tmp_path / "a.parquet"), _write(b, tmp_path / "b.parquet")]
    for f in files:
        write_totals(Path(f))
        write_listens(Path(f))
    coded = allocate(files, snap, "2026-10")
    assert coded.digest() == whole.digest()
    weights = {r["recording_id"]: r["pair_weight"] for r in coded.leaves.to_pylist()}
    listeners = [(1_000_001, 1, 3)] + [(1_000_000 * (i + 1), 1, i + 1) for i in range(40)]
    expected = [largest_remainder(t, [(1, u1), (2, u2)]) for t, u1, u2 in listeners]
    assert weights == {r: sum(e[r] for e in expected) for r in (1, 2)}


@pytest.mark.parametrize("before", [True, False])
def test_allocation_leaves_numpy_huge_page_setting_as_it_found_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: bool) -> None:
    """The allocation asks numpy and Arrow for ordinary pages while it runs (its short-lived
    arrays fault in faster) and restores their settings afterwards, also when it fails."""
    import pyarrow as pa
    from numpy._core import multiarray

    from attune.royalties import allocate as module

    seen: list[tuple[bool, str]] = []
    work = module._allocate
    pool = pa.default_memory_pool().backend_name

    def spy(*args: object) -> Allocation:
        seen.append((bool(multiarray._get_madvise_hugepage()),
                     pa.default_memory_pool().backend_name))
        return work(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "_allocate", spy)
    snap = snapshot(recordings=[{"recording_id": 1, "isrc": "GBATT2600001", "work_id": None}])
    previous = multiarray._set_madvise_hugepage(before)
    try:
        allocate([], snap, "2026-10")
        assert seen == [(False, "system")]
        assert bool(multiarray._get_madvise_hugepage()) is before
        assert pa.default_memory_pool().backend_name == pool
        with pytest.raises(ValueError):
            allocate([], snap, "2026-13")
        assert bool(multiarray._get_madvise_hugepage()) is before
        assert pa.default_memory_pool().backend_name == pool
    finally:
        multiarray._set_madvise_hugepage(previous)


def test_overlapping_allocations_restore_page_settings_when_the_last_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Allocations running side by side (threads of one server) share the switch: the first
    to start makes it, the last to end undoes it, and only then is glibc told to map large
    blocks and trim again, and to give its free memory back, and are huge pages back on."""
    import pyarrow as pa
    from numpy._core import multiarray

    from attune.royalties import allocate as module

    libc = module._glibc()
    assert libc is not None  # Debian's C library: the settings are really made
    thp_off = libc.prctl(module.PR_GET_THP_DISABLE, 0, 0, 0, 0)
    with module._MEMORY_SETUP:
        assert libc.prctl(module.PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1
    assert libc.prctl(module.PR_GET_THP_DISABLE, 0, 0, 0, 0) == thp_off
    calls: list[tuple[str, int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad: int) -> int:
            calls.append(("malloc_trim", pad, 0))
            return 1

        def prctl(self, option: int, value: ctypes.c_ulong, *rest: ctypes.c_ulong) -> int:
            assert all(r.value == 0 for r in rest)
            if option == module.PR_SET_THP_DISABLE:
                calls.append(("prctl", option, value.value))
            return 0  # huge pages were on

    monkeypatch.setattr(module, "_glibc", Libc)
    previous = multiarray._set_madvise_hugepage(True)
    pool = pa.default_memory_pool().backend_name
    keep = [("mallopt", module.M_MMAP_MAX, 0), ("mallopt", module.M_TRIM_THRESHOLD, 1 << 30),
            ("prctl", module.PR_SET_THP_DISABLE, 1)]
    try:
        with module._MEMORY_SETUP:
            with module._MEMORY_SETUP:
                pass
            assert not multiarray._get_madvise_hugepage()
            assert pa.default_memory_pool().backend_name == "system"
            assert calls == keep
        assert multiarray._get_madvise_hugepage()
        assert pa.default_memory_pool().backend_name == pool
        assert calls == [*keep, ("mallopt", module.M_MMAP_MAX, module.GLIBC_MMAP_MAX),
                         ("mallopt", module.M_TRIM_THRESHOLD, module.GLIBC_TRIM_THRESHOLD),
                         ("malloc_trim", 0, 0),
                         ("prctl", module.PR_SET_THP_DISABLE, 0)]  # fmt: skip
    finally:
        multiarray._set_madvise_hugepage(previous)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0, 1, None]), st.integers(0, 9),
                       st.integers(0, 10**6)), max_size=30),
    st.lists(st.sampled_from([None, 1, 2, 10**12]), min_size=6, max_size=6),
    st.lists(st.booleans(), min_size=6, max_size=6),
    st.booleans(),
)
def test_recording_totals_equal_a_plain_group_by(
    rows: list[tuple[int, int | None, int, int]], recording: list[int | None],
    governed: list[bool], one_to_one: bool,
) -> None:  # fmt: skip
    """Units and revenue per (currency, agreement, recording): summed by ISRC number in numpy
    for rows governed by one agreement, grouped in SQL for the rest (and for all of them where
    ISRCs and recordings are not one to one), they equal a GROUP BY over every row."""
    from attune.royalties.allocate import _recording_totals

    # Item i's recording is recording[i] (distinct per item where one to one); a governed
    # item's rows share one agreement (i % 2), the others' agreement varies by row (by
    # territory, in the allocation).
    if one_to_one:
        recording = [None if r is None else r * 10 + i for i, r in enumerate(recording)]
    table = pa.table({
        "item_no": pa.array([i for i, *_ in rows], pa.int32()),
        "currency_no": pa.array([c for _, c, *_ in rows], pa.int16()),
        "recording_id": pa.array([recording[i] for i, *_ in rows], pa.int64()),
        "agreement_id": pa.array([i % 2 if governed[i] else (a % 3 or None)
                                  for i, _, a, _ in rows], pa.int64()),
        "units": pa.array([u % 7 for *_, u in rows], pa.int64()),
        "revenue": pa.array([u for *_, u in rows], pa.int64()),
    })  # fmt: skip
    by_item = np.array([governed[i] and recording[i] is not None for i, *_ in rows], dtype=bool)
    con = duckdb.connect()
    _recording_totals(con, table, by_item if one_to_one else None, pa.array(["EUR", "JPY"]))
    got = con.sql("SELECT * FROM cat_rec ORDER BY ALL").fetchall()
    con.register("cat", table)
    con.register("names", pa.table({"no": [0, 1], "currency": ["EUR", "JPY"]}))
    expected = con.sql(
        "SELECT n.currency, agreement_id, recording_id, sum(units), sum(revenue) "
        "FROM cat LEFT JOIN names n ON n.no = cat.currency_no WHERE recording_id IS NOT NULL "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert got == expected


@pytest.mark.parametrize("step", [1, 10**12])
def test_governing_agreements_are_looked_up_by_dense_and_sparse_ids(step: int) -> None:
    """Each recording's governing agreement is its lowest covering one where that one covers
    every territory, NULL otherwise, for recordings without cover and NULL recordings, whether
    ids are dense or far apart."""
    from attune.royalties.allocate import _governing

    con = duckdb.connect()
    # Recording i (odd, below 40) is covered by agreements 100 + i % 3 and 103 + i % 5; only
    # agreements 100, 101, 104 and 106 cover every territory.
    con.execute(f"CREATE TABLE covers_rec AS SELECT i * {step} AS recording_id, a AS agreement_id "
                "FROM range(1, 40, 2) t(i), LATERAL (SELECT unnest([100 + i % 3, 103 + i % 5]) a)")
    con.execute("CREATE TABLE full_cover AS SELECT unnest([100, 101, 104, 106]) AS agreement_id")
    ids = [i * step for i in range(0, 45)] + [-step, 10**15]
    rec = np.array(ids, dtype=np.int64)
    null = np.array([i % 11 == 5 for i in range(len(ids))], dtype=bool)
    got = _governing(con, rec, null).to_pylist()
    lowest: dict[int, int] = {}
    for r, a in con.sql("SELECT recording_id, agreement_id FROM covers_rec").fetchall():
        lowest[r] = min(a, lowest.get(r, a))
    expected = [None if n or lowest.get(r) not in (100, 101, 104, 106) else lowest[r]
                for r, n in zip(ids, null, strict=True)]  # fmt: skip
    assert got == expected
    assert sum(g is not None for g in got) > 5 and sum(g is None for g in got) > 20


def test_kind_keys_slice_contiguous_kinds_and_filter_interleaved_ones() -> None:
    """A keys file's rows of one kind: a zero-copy slice where the kind's rows are contiguous
    (as ingest writes them), the same rows by a filter where they are not."""
    from attune.royalties.allocate import _kind_keys

    kinds = ["currency", "item", "item", "item", "territory", "item", "output"]
    keys = pa.table({"kind": kinds, "no": list(range(len(kinds))),
                     "value": [f"v{i}" for i in range(len(kinds))]})  # fmt: skip
    for kind in ("currency", "item", "output", "territory", "listener"):
        assert _kind_keys(keys, kind).to_pylist() == [r for r in keys.to_pylist()
                                                      if r["kind"] == kind]  # fmt: skip
    contiguous = keys.slice(0, 5)
    assert _kind_keys(contiguous, "item").column("no").to_pylist() == [1, 2, 3]
