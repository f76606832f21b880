"""Royalty benchmark: ingest rate, DuckDB allocation of 10M (and 100M) usage rows vs pandas.

Generates a world of 1M recordings, 500k works, 1,000 labels and 100k AI outputs (5
attributions each), usage Parquet of N rows (90% catalog streams with listener ids, 10% AI
outputs, 1% unknown ISRCs), then measures in fresh processes:
  ingest     parse + validate + store a 10M-row usage CSV (rows/s)
  allocate   attune.royalties.allocate over N rows, exact largest-remainder rounding included
  pandas     a straightforward pandas implementation of the same rule on the 10M rows
and checks that pandas and DuckDB pay every party exactly the same. Prints a Markdown table.

    python bench/royalty_bench.py                 # 10M rows
    python bench/royalty_bench.py --full          # 10M and 100M rows
    python bench/royalty_bench.py --skip-ingest   # allocation only (DuckDB vs pandas)
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import platform
import queue
import resource
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from attune.royalties.ingest import coded_totals_path, totals_path, write_listens, write_totals

PERIOD = "2026-10"
LABELS = 1000
PLATFORM = 999_999


def build_world(out: Path, recordings: int, outputs: int, seed: int = 7) -> None:
    """Write the registry snapshot tables as Parquet under ``out/world``."""
    rng = np.random.default_rng(seed)
    world = out / "world"
    world.mkdir(parents=True, exist_ok=True)
    rid = np.arange(1, recordings + 1, dtype=np.int64)
    isrc = np.char.add("GBATT", np.char.zfill(rid.astype(str), 7))
    work = np.where(rid % 2 == 0, rid // 2, 0)
    label = (rid % LABELS) + 1
    pq.write_table(pa.table({"recording_id": rid, "isrc": isrc,
                             "work_id": pa.array(work, mask=work == 0)}),
                   world / "recordings.parquet")  # fmt: skip
    co = rid[rid % 5 == 0]
    owners = pa.table({
        "recording_id": np.concatenate([rid, co]),
        "party_id": np.concatenate([label, (co % LABELS + 7) % LABELS + 1]),
        "share": np.concatenate([np.where(rid % 5 == 0, 60_000_000, 100_000_000),
                                 np.full(len(co), 40_000_000)]),
    })  # fmt: skip
    pq.write_table(owners, world / "owners.parquet")
    wid = np.arange(1, recordings // 2 + 1, dtype=np.int64)
    writers = 10_000 + (wid % 20_000)
    pq.write_table(pa.table({
        "work_id": np.concatenate([wid, wid, wid]),
        "party_id": np.concatenate([writers, writers + 20_000, (wid % LABELS) + 1]),
        "role": ["writer"] * (2 * len(wid)) + ["publisher"] * len(wid),
        "share": np.concatenate([np.full(len(wid), 33_333_334), np.full(len(wid), 33_333_333),
                                 np.full(len(wid), 33_333_333)]),
    }), world / "work_shares.parquet")  # fmt: skip
    oid = np.char.add("out-", np.arange(outputs).astype(str))
    pq.write_table(
        pa.table(
            {
                "output_id": oid,
                "platform_id": np.full(outputs, PLATFORM),
                "model": ["tonal-2"] * outputs,
            }
        ),
        world / "outputs.parquet",
    )
    k = 5
    targets = rng.integers(1, recordings + 1, size=outputs * k)
    is_work = rng.random(outputs * k) < 0.2
    shares = np.tile(np.array([400_000, 250_000, 150_000, 120_000, 80_000]), outputs)
    pq.write_table(pa.table({
        "output_id": np.repeat(oid, k),
        "recording_id": pa.array(targets, mask=is_work),
        "work_id": pa.array(np.maximum(targets // 2, 1), mask=~is_work),
        "share": shares,
    }), world / "attributions.parquet")  # fmt: skip
    lid = np.arange(1, LABELS + 1, dtype=np.int64)
    pq.write_table(pa.table({
        "agreement_id": lid, "licensor_id": lid, "licensee_id": np.full(LABELS, PLATFORM),
        "start_date": pa.array([date(2026, 1, 1)] * LABELS, pa.date32()),
        "end_date": pa.array([None] * LABELS, pa.date32()),
        "worldwide": np.full(LABELS, True), "covers_all": np.full(LABELS, True),
        "ai_share": np.full(LABELS, 300_000),
        "minimum_guarantee": np.where(lid % 10 == 0, 500_000_000, 0),
        "currency": ["EUR"] * LABELS,
        "catalog_policy": np.where(lid % 10 == 3, "user_centric", "pro_rata"),
        "ai_publishing": np.full(LABELS, 500_000),
        "catalog_publishing": np.full(LABELS, 0),
    }), world / "agreements.parquet")  # fmt: skip


def load_snapshot(out: Path) -> Any:
    """The snapshot the allocation reads, from the world's Parquet tables."""
    from attune.royalties.allocate import snapshot

    world = out / "world"
    names = ("recordings", "owners", "work_shares", "outputs", "attributions", "agreements")
    return snapshot(**{n: pq.read_table(world / f"{n}.parquet") for n in names})


def generate_usage(out: Path, rows: int, recordings: int, outputs: int) -> list[str]:
    """Write ``rows`` usage rows as Parquet files of at most 10M rows; return their paths."""
    folder = out / f"usage-{rows}" / f"period={PERIOD}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    con = _quiet_duckdb()
    chunk = 10_000_000
    for n, start in enumerate(range(0, rows, chunk)):
        path = folder / f"part-{n}.parquet"
        paths.append(str(path))
        if not path.exists():
            _write_usage(con, path, start, min(chunk, rows - start), recordings, outputs)
        # the side files ingest writes beside every report: integer-coded lines and item totals
        # (and the string rollup only where those could not be written)
        if not coded_totals_path(path).exists():
            write_listens(path)
        if not coded_totals_path(path).exists() and not totals_path(path).exists():
            write_totals(path)
    return paths


def _write_usage(con: duckdb.DuckDBPyConnection, path: Path, start: int, size: int,
                 recordings: int, outputs: int) -> None:
    """Write usage lines ``start`` .. ``start + size`` of the bench's mix as Parquet."""
    con.execute(f"""
            COPY (
                SELECT 'bench' AS report, i AS line,
                    ['FR', 'DE', 'GB', 'US', 'JP'][(1 + hash(i * 3) % 5)::BIGINT] AS territory,
                    'Tonal' AS service, 'stream' AS use_type, '' AS commercial_model,
                    CASE WHEN h % 10 = 0 THEN 'output' ELSE 'isrc' END AS item_kind,
                    CASE WHEN h % 10 = 0 THEN 'out-' || (hash(i * 7) % {outputs})
                         WHEN h % 100 = 1 THEN 'GBZZZ' || lpad((h % 9999999)::VARCHAR, 7, '0')
                         ELSE 'GBATT' || lpad((1 + hash(i * 11) % {recordings})::VARCHAR, 7, '0')
                    END AS item,
                    (1 + hash(i * 13) % 50)::BIGINT AS units,
                    (hash(i * 17) % 20000)::BIGINT AS revenue,
                    'EUR' AS currency,
                    CASE WHEN h % 10 = 0 THEN NULL
                         ELSE 'L' || (hash(i * 19) % 1000000) END AS listener,
                    NULL::VARCHAR AS transaction_id
                FROM (SELECT i, hash(i) AS h FROM range({start}, {start + size}) t(i))
            ) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
        """)  # fmt: skip


def _quiet_duckdb() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that draws no progress bar over the benchmark's output."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used: load-independent work."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], q: Any) -> None:
    load = os.getloadavg()[0]
    result = fn(*args)
    q.put({"peak_mib": _peak_mib(), **result, "load": max(load, os.getloadavg()[0])})


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a measurement in a fresh process so its peak memory is its own."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    while True:
        try:
            result: dict[str, Any] = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                msg = f"{fn.__name__} failed in its process (exit {p.exitcode})"
                raise SystemExit(msg) from None
    p.join()
    return result


def measure_ingest(out: Path, rows: int, recordings: int) -> dict[str, Any]:
    """Time parse + validate + Parquet write of a usage CSV of ``rows`` lines."""
    from attune.royalties.ingest import parse_csv, usage_path

    csv_path = out / f"usage-{rows}.csv"
    if not csv_path.exists():
        _quiet_duckdb().execute(f"""
            COPY (SELECT '{PERIOD}' AS period, ['FR', 'DE', 'GB'][1 + i % 3] AS territory,
                'Tonal' AS service, 'stream' AS use_type,
                'GB-ATT-' || lpad((1 + hash(i) % {recordings})::VARCHAR, 7, '0') AS item_id,
                (1 + i % 40)::VARCHAR AS units,
                ((hash(i * 3) % 100000) / 10000)::DECIMAL(10, 4)::VARCHAR AS net_revenue,
                'EUR' AS currency, 'L' || (i % 500000) AS listener_id
            FROM range({rows}) t(i)) TO '{csv_path}' (HEADER, DELIMITER ',')
        """)  # fmt: skip
    os.sync()  # the new file's write-back is the set-up's, not the ingest's, I/O
    t0, c0 = time.perf_counter(), _cpu_seconds()
    parsed = parse_csv(csv_path)
    parsed.write(out / "ingested" / usage_path(PERIOD, "0" * 64))
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {"rows": parsed.lines, "seconds": seconds, "cpu": cpu}


def measure_allocate(out: Path, files: list[str], threads: int, limit: str) -> dict[str, Any]:
    """Time the DuckDB allocation, check that every pool is paid out exactly, and digest the
    payouts (pools and leaves), which must not change with the implementation."""
    from attune.royalties.allocate import allocate

    snap = load_snapshot(out)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    alloc = allocate(files, snap, PERIOD, {}, threads=threads, memory_limit=limit)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    con = _quiet_duckdb()
    con.register("l", alloc.leaves)
    con.register("p", alloc.pools)
    bad = con.execute(
        "SELECT count(*) FROM p LEFT JOIN (SELECT pool, sum(amount) s FROM l GROUP BY pool) x "
        "ON x.pool = p.pool WHERE coalesce(x.s, 0) <> p.amount"
    ).fetchall()[0][0]
    negative = con.execute("SELECT count(*) FROM l WHERE amount < 0").fetchall()[0][0]
    totals = con.execute(
        "SELECT coalesce(party_id, -1), sum(amount)::BIGINT FROM l GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    pq.write_table(pa.table({"party": [t[0] for t in totals], "amount": [t[1] for t in totals]}),
                   out / f"duckdb-totals-{len(files)}.parquet")  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "pools": alloc.pools.num_rows,
            "leaves": alloc.leaves.num_rows, "unbalanced_pools": bad,
            "negative": negative, "peak_mib": _peak_mib(),  # before the digest's sort
            "digest": alloc.digest()}  # fmt: skip


def _lr(df: Any, part: str, total: str, weight: str, order: list[str]) -> Any:
    """Largest remainder in pandas with Python integers (int64 would overflow the products)."""
    w = df[weight].astype(object)
    tw = df.groupby(part)[weight].transform("sum").astype(object)
    tw = tw.where(tw != 0, 1)
    prod = df[total].astype(object) * w
    df = df.assign(base=prod // tw, rem=prod % tw)
    df["short"] = df[total].astype(object) - df.groupby(part)["base"].transform("sum")
    df = df.sort_values([part, "rem", *order], ascending=[True, False] + [True] * len(order))
    df["rk"] = df.groupby(part).cumcount() + 1
    df["amount"] = df["base"] + (df["rk"] <= df["short"]).astype(int)
    return df


def measure_pandas(out: Path, files: list[str]) -> dict[str, Any]:
    """A straightforward pandas implementation of the same rule (worldwide, no pins, all items)."""
    import pandas as pd

    from attune.royalties.money import div_half_even

    world = out / "world"
    t0, c0 = time.perf_counter(), _cpu_seconds()
    u = pd.concat(
        [
            pd.read_parquet(
                f, columns=["item_kind", "item", "units", "revenue", "currency", "listener"]
            )
            for f in files
        ]
    )
    rec = pd.read_parquet(world / "recordings.parquet")
    own = pd.read_parquet(world / "owners.parquet")
    ws = pd.read_parquet(world / "work_shares.parquet")
    outs = pd.read_parquet(world / "outputs.parquet")
    att = pd.read_parquet(world / "attributions.parquet")
    ag = pd.read_parquet(world / "agreements.parquet")
    agg = u.groupby(["item_kind", "item"], as_index=False)[["units", "revenue"]].sum()
    ai = agg[agg.item_kind == "output"].merge(outs, left_on="item", right_on="output_id")
    ai_rev = ai.groupby("platform_id", as_index=False).revenue.sum().merge(
        ag, left_on="platform_id", right_on="licensee_id")  # fmt: skip
    pools = []
    for a in ai_rev.itertuples():
        earned = div_half_even(int(a.revenue) * int(a.ai_share), 10**10)
        floor = int(a.minimum_guarantee) // 10_000
        pools.append({"pool": f"ai:{a.agreement_id}", "agreement_id": a.agreement_id,
                      "amount": max(earned, floor), "licensor_id": int(a.licensor_id)})  # fmt: skip
    pools_df = pd.DataFrame(pools)
    holders = pd.concat([own[["recording_id", "party_id"]].rename(columns={"recording_id": "k"})
                         .assign(kind="r"),
                         ws[["work_id", "party_id"]].rename(columns={"work_id": "k"})
                         .assign(kind="w")]).drop_duplicates()  # fmt: skip
    # Attributed items held by an agreement's licensor, then the usage of the licensee's outputs.
    held = att.assign(k=att.recording_id.fillna(att.work_id).astype("int64"),
                      kind=np.where(att.recording_id.notna(), "r", "w"))  # fmt: skip
    held = held.merge(holders, on=["k", "kind"]).merge(
        ag[["agreement_id", "licensor_id", "licensee_id"]], left_on="party_id",
        right_on="licensor_id")  # fmt: skip
    pairs = held.merge(ai[["output_id", "platform_id", "units"]],
                       left_on=["output_id", "licensee_id"],
                       right_on=["output_id", "platform_id"])  # fmt: skip
    pairs["weight"] = pairs.units * pairs.share
    pairs = pairs.merge(pools_df[["agreement_id", "pool", "amount"]], on="agreement_id")
    pairs = pairs.rename(columns={"amount": "total"})
    cat = agg[agg.item_kind == "isrc"].merge(rec, left_on="item", right_on="isrc", how="left")
    known = cat[cat.recording_id.notna()].copy()
    first = own.groupby("recording_id", as_index=False).party_id.min()
    known = known.merge(first, on="recording_id").merge(
        ag[["agreement_id", "licensor_id", "catalog_policy"]],
        left_on="party_id", right_on="licensor_id")  # fmt: skip
    uc_ids = set(known.loc[known.catalog_policy == "user_centric", "item"])
    ucl = u[(u.item_kind == "isrc") & u.item.isin(uc_ids)].fillna({"listener": ""})
    ucl = ucl.groupby(["listener", "item"], as_index=False)[["units", "revenue"]].sum()
    ucl = ucl.merge(known[["item", "agreement_id", "recording_id"]], on="item")
    ucl["lkey"] = ucl.agreement_id.astype(str) + "/" + ucl.listener
    ucl["total"] = ucl.groupby("lkey").revenue.transform("sum")
    ucw = _lr(ucl, "lkey", "total", "units", ["recording_id"]).groupby(
        ["agreement_id", "recording_id"], as_index=False).amount.sum()  # fmt: skip
    cpool = known.groupby("agreement_id", as_index=False).revenue.sum()
    cpool["total"] = cpool.revenue.astype(object).map(lambda v: div_half_even(int(v), 10_000))
    cpool["pool"] = "catalog:" + cpool.agreement_id.astype(str)
    cw = known.merge(ucw, on=["agreement_id", "recording_id"], how="left")
    cw["weight"] = np.where(cw.catalog_policy == "user_centric", cw.amount.fillna(0), cw.units)
    cw = cw.groupby(["agreement_id", "recording_id"], as_index=False).weight.sum()
    cw = cw.merge(cpool[["agreement_id", "pool", "total"]], on="agreement_id")
    both = pd.concat([
        pairs[["pool", "total", "output_id", "recording_id", "work_id", "weight"]],
        cw.assign(output_id=None, work_id=np.nan)[
            ["pool", "total", "output_id", "recording_id", "work_id", "weight"]],
    ], ignore_index=True)  # fmt: skip
    both = both[both.weight > 0]
    both["okey"] = both.output_id.fillna("")
    both["rkey"] = both.recording_id.fillna(0)
    both["wkey"] = both.work_id.fillna(0)
    lv1 = _lr(both, "pool", "total", "weight", ["okey", "rkey", "wkey"]).reset_index(drop=True)
    lv1["pair"] = np.arange(len(lv1))
    lv1["pub"] = np.where(lv1.pool.str.startswith("ai:"), 500_000, 0)
    recs = lv1[lv1.recording_id.notna()].merge(
        rec[["recording_id", "work_id"]], on="recording_id", suffixes=("", "_rec")
    )
    master = recs.merge(own, on="recording_id").assign(role="master")
    master["lw"] = master.share * (1_000_000 - master.pub)
    pubs = (
        recs[recs.pub > 0]
        .merge(ws, left_on="work_id_rec", right_on="work_id", suffixes=("", "_ws"))
        .assign(role="publishing")
    )
    pubs["lw"] = pubs.share * pubs.pub
    sus = recs[(recs.pub > 0) & recs.work_id_rec.isna()].assign(role="suspense", party_id=-1)
    sus["lw"] = 100_000_000 * sus.pub
    works = lv1[lv1.work_id.notna()].merge(ws, on="work_id").assign(role="publishing")
    works["lw"] = works.share * 1_000_000
    cols = ["pair", "amount", "role", "party_id", "lw"]
    leaves = pd.concat([master[cols], pubs[cols], sus[cols], works[cols]], ignore_index=True)
    leaves = leaves[leaves.lw > 0].rename(columns={"amount": "pair_amount"})
    leaves["party_key"] = leaves.party_id.fillna(-1)
    lv2 = _lr(leaves, "pair", "pair_amount", "lw", ["role", "party_key"])
    missing = pools_df[~pools_df.pool.isin(lv1.pool)]
    totals = lv2.groupby("party_key").amount.sum()
    for _, p in missing.iterrows():
        totals.loc[p.licensor_id] = totals.get(p.licensor_id, 0) + p.amount
    sus_rev = cat.loc[cat.recording_id.isna(), "revenue"].sum()
    totals.loc[-1] = totals.get(-1, 0) + div_half_even(int(sus_rev), 10_000)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    pq.write_table(pa.table({"party": totals.index.astype("int64").to_numpy(),
                             "amount": totals.astype("int64").to_numpy()}),
                   out / "pandas-totals.parquet")  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "rows": len(u)}


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="*", default=None, help="usage rows (10M)")
    ap.add_argument("--full", action="store_true", help="also 100M rows")
    ap.add_argument("--recordings", type=int, default=1_000_000)
    ap.add_argument("--outputs", type=int, default=100_000)
    ap.add_argument("--ingest-rows", type=int, default=10_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="6GB", help="DuckDB's share of the 8 GiB")
    ap.add_argument("--no-pandas", action="store_true")
    ap.add_argument("--skip-ingest", action="store_true", help="measure the allocation only")
    ap.add_argument("--out", type=Path, default=Path("bench/out/royalty"))
    args = ap.parse_args()
    if not args.no_pandas and importlib.util.find_spec("pandas") is None:
        raise SystemExit("the pandas baseline needs pandas: .venv/bin/pip install -e '.[bench]'")
    sizes = args.rows or ([10_000_000, 100_000_000] if args.full else [10_000_000])
    args.out.mkdir(parents=True, exist_ok=True)
    build_world(args.out, args.recordings, args.outputs)
    print(f"machine: {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, "
          f"python {platform.python_version()}, duckdb {duckdb.__version__}")  # fmt: skip
    results: list[tuple[str, int, float, float, float, float, str]] = []
    if not args.skip_ingest:
        ing = in_child(measure_ingest, args.out, args.ingest_rows, args.recordings)
        results.append(("ingest CSV (parse, validate, Parquet, side files)", ing["rows"],
                        ing["seconds"], ing["cpu"], ing["peak_mib"], ing["load"], ""))  # fmt: skip
        print(results[-1], flush=True)  # fmt: skip
    duck_10m = None
    for rows in sizes:
        files = generate_usage(args.out, rows, args.recordings, args.outputs)
        r = in_child(measure_allocate, args.out, files, args.threads, args.memory_limit)
        note = (
            f"{r['pools']} pools, {r['leaves']} leaves, unbalanced {r['unbalanced_pools']}, "
            f"negative {r['negative']}, digest {r['digest'][:8]}"
        )
        results.append(("allocate (DuckDB, exact rounding)", rows, r["seconds"], r["cpu"],
                        r["peak_mib"], r["load"], note))  # fmt: skip
        print(results[-1], flush=True)  # fmt: skip
        if rows == min(sizes):
            duck_10m = r["seconds"]
            if not args.no_pandas:
                p = in_child(measure_pandas, args.out, files)
                ours = pq.read_table(args.out / f"duckdb-totals-{len(files)}.parquet")
                theirs = pq.read_table(args.out / "pandas-totals.parquet")
                same = sorted(zip(*ours.to_pydict().values(), strict=True)) == sorted(
                    zip(*theirs.to_pydict().values(), strict=True))  # fmt: skip
                results.append(("allocate (pandas baseline)", rows, p["seconds"], p["cpu"],
                                p["peak_mib"], p["load"],
                                f"same payouts as DuckDB: {same}; DuckDB is "
                                f"{p['seconds'] / duck_10m:.1f}x faster"))  # fmt: skip
    print("\n| step | rows | seconds | rows/s | CPU s | peak MiB | load avg | notes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|")  # fmt: skip
    for step, rows, secs, cpu, peak, load, note in results:
        print(f"| {step} | {rows:,} | {secs:.2f} | {rows / secs:,.0f} | {cpu:.1f} | {peak:,.0f} "
              f"| {load:.1f} | {note} |")  # fmt: skip


if __name__ == "__main__":
    main()
