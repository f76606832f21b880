"""Content identification benchmark: attune.identify against Chromaprint (fpcalc), one command.

    .venv/bin/python bench/identify_bench.py            # full run (about 15 minutes on 2 cores)
    .venv/bin/python bench/identify_bench.py --quick    # smaller run (a few minutes)

Catalog: the 41 pieces of Debian's ``wesnoth-1.16-music`` plus the SuperTuxKart pieces that ship a
real ``_fast`` tempo variant. Distractors (never indexed): the other SuperTuxKart pieces. Queries
of 3, 5, 10 and 20 s start at random offsets and go through each condition of issue 3. For every
query the same audio is also fingerprinted with ``fpcalc -raw`` and slid along the whole-file
Chromaprint fingerprints of the catalog (bit error rate at the best offset; a match is the lowest
rate, below the rate reached by FPCALC_FP_TARGET of the distractor queries). Latency and recall at
scale are measured on a synthetic index (entries drawn from the catalog's own, keeping their keys
and packed anchor pitch and span, spread over hash-range segments) plus the real catalog.
``--fp-queries`` more 10 s distractor queries (attune only, every condition in turn, 3,000 by
default) bound the false-positive rate: with none matching, the 95% upper bound of 3,200 queries is
0.094%. Indexing speed is measured in CPU seconds of the worker processes (and in wall-clock
seconds, which depend on the machine's load). Missing Debian packages are installed with apt-get
when run as root. ``--write-docs`` replaces the section "Content identification" of
docs/BENCHMARKS.md with the tables printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from attune.audio import decode, resample, to_mono
from attune.identify import (
    Fingerprinted,
    Hit,
    Index,
    Job,
    LocalPool,
    identify,
    index_jobs,
    tune_allocator,
)
from attune.identify import landmarks as fp

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
STK = Path("/usr/share/games/supertuxkart/data/music")
APT = {"wesnoth-1.16-music": WESNOTH, "supertuxkart-data": STK}
TOOLS = {"fpcalc": "libchromaprint-tools", "ffmpeg": "ffmpeg"}
SR = 44100  # rate queries are made at before analysis
LENGTHS = (3, 5, 10, 20)
FPCALC_FP_TARGET = 0.001  # Chromaprint's threshold: the bit error rate with this FP rate
FPCALC_ITEM_S = 4096 / 3 / 11025  # seconds per Chromaprint item
DOCS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
SECTION = "## Content identification (bench/identify_bench.py)"

Transform = Callable[[np.ndarray, Path], np.ndarray]


# ---------------------------------------------------------------------------------- setup


def ensure_packages() -> None:
    """Install the Debian packages the benchmark reads, when missing (root only)."""
    missing = [pkg for pkg, path in APT.items() if not path.is_dir()]
    missing += [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"identify_bench: install these Debian packages first: {' '.join(missing)}")
    print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env)


@dataclass
class Corpus:
    """Catalog files (indexed, by recording id), distractors and real sped-up variants."""

    catalog: dict[int, Path]
    distractors: list[Path]
    fast: dict[Path, int]  # STK "_fast" file -> recording id of its base piece


def corpus() -> Corpus:
    """Split the Debian music into catalog, distractors and real tempo variants."""
    wesnoth = sorted(WESNOTH.glob("*.ogg"))
    stk = sorted(STK.glob("*.ogg"))
    fast = {p: p.with_name(p.name.replace("_fast", "")) for p in stk if "_fast" in p.stem}
    bases = {b for b in fast.values() if b.exists()}
    catalog = {i + 1: p for i, p in enumerate(wesnoth + sorted(bases))}
    ids = {p: i for i, p in catalog.items()}
    distractors = [p for p in stk if p not in bases and p not in fast]
    return Corpus(catalog, distractors, {f: ids[b] for f, b in fast.items() if b in ids})


def duration(path: Path) -> float:
    """Length of a file in seconds."""
    return float(sf.info(str(path)).duration)


def excerpt(path: Path, start: float, seconds: float) -> np.ndarray:
    """Mono float32 audio at SR from ``start`` for ``seconds`` (seeking, not decoding all)."""
    info = sf.info(str(path))
    with sf.SoundFile(str(path)) as f:
        f.seek(int(start * info.samplerate))
        y = to_mono(f.read(int(seconds * info.samplerate), dtype="float32", always_2d=True))
    return resample(y, int(info.samplerate), SR) if info.samplerate != SR else y


# ----------------------------------------------------------------------------- conditions


def _ffmpeg(y: np.ndarray, tmp: Path, args: list[str], suffix: str) -> np.ndarray:
    """Run ffmpeg on ``y`` with output options ``args``; decode the result back at SR."""
    src, dst = tmp / "src.wav", tmp / f"out{suffix}"
    sf.write(src, y, SR, subtype="FLOAT")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return decode(dst, SR)[0]


def _noise(y: np.ndarray, snr_db: float, pink: bool, seed: int) -> np.ndarray:
    """Add white or pink noise at ``snr_db`` dB SNR."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(len(y))
    if pink:
        spec = np.fft.rfft(n)
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        spec[0] = 0
        n = np.fft.irfft(spec, len(y))
    gain = np.sqrt(np.mean(y**2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return (y + gain * n).astype(np.float32)


def _reverb(y: np.ndarray) -> np.ndarray:
    """Convolve with a room response: direct sound, an echo at 120 ms, a 0.5 s decaying tail."""
    rng = np.random.default_rng(7)
    k = np.arange(int(0.8 * SR))
    ir = 0.3 * rng.standard_normal(len(k)) * np.exp(-6.9 * k / (0.5 * SR))
    ir[0] += 1.0
    ir[int(0.12 * SR)] += 0.6
    wet = fftconvolve(y, ir)[: len(y)]
    return (wet / np.max(np.abs(wet)) * np.max(np.abs(y))).astype(np.float32)


def _bandpass(y: np.ndarray) -> np.ndarray:
    """Telephone band: 300-3400 Hz, 4th-order Butterworth."""
    sos = butter(4, [300, 3400], btype="band", fs=SR, output="sos")
    return sosfilt(sos, y).astype(np.float32)


def _speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster: tempo and pitch together (resampling)."""
    up, down = {0.9: (10, 9), 0.95: (20, 19), 1.05: (20, 21), 1.1: (10, 11)}[factor]
    return resample_poly(y, up, down).astype(np.float32)


def conditions() -> dict[str, tuple[float, Transform]]:
    """Condition name -> (time factor: reference seconds per query second, transform)."""
    c: dict[str, tuple[float, Transform]] = {"clean": (1.0, lambda y, tmp: y)}
    for kind in ("white", "pink"):
        for snr in (10, 5, 0):
            c[f"{kind} noise {snr} dB"] = (
                1.0, lambda y, tmp, s=snr, p=kind == "pink": _noise(y, s, p, len(y)))
    for kbps in (32, 64, 128):
        c[f"MP3 {kbps}k"] = (1.0, lambda y, tmp, b=kbps: _ffmpeg(
            y, tmp, ["-c:a", "libmp3lame", "-b:a", f"{b}k"], ".mp3"))
    c["AAC 64k"] = (1.0, lambda y, tmp: _ffmpeg(y, tmp, ["-c:a", "aac", "-b:a", "64k"], ".m4a"))
    c["band-pass 300-3400 Hz"] = (1.0, lambda y, tmp: _bandpass(y))
    c["echo/reverb"] = (1.0, lambda y, tmp: _reverb(y))
    for f in (0.9, 0.95, 1.05, 1.1):
        c[f"speed {f:.2f}"] = (f, lambda y, tmp, f=f: _speed(y, f))
    for st in (-2, -1, 1, 2):
        c[f"pitch {st:+d} st"] = (1.0, lambda y, tmp, st=st: _ffmpeg(
            y, tmp, ["-af", f"rubberband=pitch={2 ** (st / 12):.6f}"], ".wav"))
    for f in (0.9, 0.95, 1.05, 1.1):
        c[f"tempo {f:.2f}"] = (f, lambda y, tmp, f=f: _ffmpeg(
            y, tmp, ["-af", f"atempo={f}"], ".wav"))
    return c


# ------------------------------------------------------------------------------ Chromaprint


def fpcalc(path: Path) -> np.ndarray:
    """Raw Chromaprint fingerprint of a file (fpcalc exits 3 on some valid results)."""
    proc = subprocess.run(["fpcalc", "-raw", "-json", "-length", "0", str(path)],
                          capture_output=True, text=True, check=False)
    try:
        return np.array(json.loads(proc.stdout)["fingerprint"], dtype=np.int64).astype(np.uint32)
    except (ValueError, KeyError):
        return np.zeros(0, dtype=np.uint32)


def slide(query: np.ndarray, refs: dict[int, np.ndarray]) -> tuple[int | None, float, float]:
    """Best (recording, bit error rate, offset in s) of ``query`` slid along every reference."""
    best: tuple[int | None, float, float] = (None, 1.0, 0.0)
    n = len(query)
    if n == 0:
        return best
    for rid, ref in refs.items():
        if len(ref) < n:
            continue
        errors = np.bitwise_count(sliding_window_view(ref, n) ^ query).sum(axis=1)
        o = int(np.argmin(errors))
        ber = float(errors[o]) / (32 * n)
        if ber < best[1]:
            best = (rid, ber, o * FPCALC_ITEM_S)
    return best


# ------------------------------------------------------------------------------- indexing


def _timed_fingerprint(job: tuple[int, str]) -> tuple[Fingerprinted, float, float]:
    """Decode and fingerprint one file in a worker; return it with decode and fingerprint CPU s."""
    rid, path = job
    t0 = time.process_time()
    y, _ = decode(path, fp.SR)
    t1 = time.process_time()
    p = fp.peaks(y)
    tri = fp.triplets(p)
    keys = fp.hash_keys(tri)
    item = Fingerprinted(rid, Path(path).name, len(y) / fp.SR, keys, fp.pack_values(tri, keys),
                         fp.pack_peaks(p))
    return item, t1 - t0, time.process_time() - t1


@dataclass
class IndexStats:
    """Indexing measurements."""

    hours: float
    fingerprint_xrt: float  # audio seconds per CPU second of fingerprinting
    decode_xrt: float  # audio seconds per CPU second of decoding Ogg Vorbis to mono 8 kHz
    end_to_end_xrt: float  # audio seconds per CPU second of index_jobs (workers + writer)
    end_to_end_wall_xrt: float  # audio seconds per (wall second x cores): load-dependent
    bytes_per_hour: float
    fpcalc_xrt: float
    fpcalc_bytes_per_hour: float


def _children_cpu() -> float:
    """CPU seconds of this process's exited children (pool workers, ffmpeg, fpcalc)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def build_index(c: Corpus, where: Path) -> tuple[Index, IndexStats, dict[int, np.ndarray]]:
    """Index the catalog (timed two ways) and fingerprint it with fpcalc."""
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        timed = list(pool.map(_timed_fingerprint, [(i, str(p)) for i, p in c.catalog.items()]))
    seconds = sum(t[0].duration for t in timed)
    decode_cpu = sum(t[1] for t in timed)
    fp_cpu = sum(t[2] for t in timed)
    cores = os.cpu_count() or 1
    ix = Index.create(where)
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    index_jobs(ix, [Job(i, str(p), p.name) for i, p in c.catalog.items()], backend=LocalPool())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + _children_cpu() - k0  # the pool's workers have exited
    k0 = _children_cpu()
    refs = {i: fpcalc(p) for i, p in c.catalog.items()}
    fpcalc_s = _children_cpu() - k0
    stats = IndexStats(seconds / 3600, seconds / fp_cpu, seconds / decode_cpu, seconds / cpu,
                       seconds / (wall * cores),
                       ix.nbytes / (seconds / 3600), seconds / fpcalc_s,
                       sum(r.nbytes for r in refs.values()) / (seconds / 3600))
    return ix, stats, refs


FORMATS = {  # name -> (suffix, ffmpeg encoder options); "Ogg Vorbis" is the shipped file
    "WAV PCM 16-bit": (".wav", ["-c:a", "pcm_s16le"]),
    "FLAC": (".flac", ["-c:a", "flac"]),
    "MP3 320k": (".mp3", ["-c:a", "libmp3lame", "-b:a", "320k"]),
    "Ogg Vorbis": (".ogg", []),
}


def format_speeds(c: Corpus, where: Path, n_files: int) -> list[tuple[str, float, float, float]]:
    """Index the first ``n_files`` catalog recordings once per delivery format.

    Returns (format, hours, decoding x real time per CPU second, indexing end to end x real time
    per CPU second): the codec's share of the cost is what differs between formats.
    """
    files = list(c.catalog.items())[:n_files]
    out = []
    for name, (suffix, options) in FORMATS.items():
        folder = where / suffix.strip(".")
        folder.mkdir(parents=True, exist_ok=True)
        jobs = []
        for rid, src in files:
            path = src if not options else folder / (src.stem + suffix)
            if options and not path.exists():
                subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src),
                                *options, str(path)], check=True)
            jobs.append(Job(rid, str(path), path.name))
        c0 = time.process_time()
        seconds = sum(len(decode(j.path, fp.SR)[0]) for j in jobs) / fp.SR
        decode_cpu = time.process_time() - c0
        ix = Index.create(folder / "index")
        c0, k0 = time.process_time(), _children_cpu()
        index_jobs(ix, jobs, backend=LocalPool())
        cpu = time.process_time() - c0 + _children_cpu() - k0
        out.append((name, seconds / 3600, seconds / decode_cpu, seconds / cpu))
        print(f"  {name}: decode {seconds / decode_cpu:.0f}x, indexing {seconds / cpu:.0f}x",
              file=sys.stderr)
    return out


# -------------------------------------------------------------------------------- queries


@dataclass
class Cell:
    """Results of one condition at one query length."""

    n: int = 0
    top1: int = 0
    offset_err: list[float] = field(default_factory=list)
    fp_right: list[float] = field(default_factory=list)  # fpcalc: BER if the best is right, else 1
    distractor_n: int = 0
    false_pos: int = 0
    fp_distractor: list[float] = field(default_factory=list)  # fpcalc: best BER of distractors
    latency: list[float] = field(default_factory=list)  # wall clock, s
    cpu: list[float] = field(default_factory=list)  # CPU time of the query, s


def _to_file(y: np.ndarray, tmp: Path) -> Path:
    """Write a query for fpcalc."""
    path = tmp / "query.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    return path


def run_queries(ix: Index, refs: dict[int, np.ndarray], c: Corpus, per_cell: int,
                distractors_per_cell: int, seed: int) -> dict[tuple[str, int], Cell]:
    """Every condition x length on catalog and distractor excerpts, both systems."""
    rng = np.random.default_rng(seed)
    conds = conditions()
    cells = {(name, n): Cell() for name in conds for n in LENGTHS}
    durations = {p: duration(p) for p in [*c.catalog.values(), *c.distractors]}
    src_seconds = max(LENGTHS) * 1.1 + 1.0
    long_enough = [rid for rid, p in c.catalog.items() if durations[p] > src_seconds + 1]
    long_distractors = [p for p in c.distractors if durations[p] > src_seconds + 1]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, (factor, transform) in conds.items():
            jobs: list[tuple[int | None, Path]] = [
                (int(rid), c.catalog[rid]) for rid in rng.choice(long_enough, per_cell)]
            jobs += [(None, long_distractors[i])
                     for i in rng.integers(0, len(long_distractors), distractors_per_cell)]
            for rid, path in jobs:
                start = float(rng.uniform(0, durations[path] - src_seconds))
                y = transform(excerpt(path, start, src_seconds), tmp)
                # fpcalc once on the longest query; shorter queries use a prefix of its items
                peer_full = fpcalc(_to_file(y[: max(LENGTHS) * SR], tmp))
                for n in LENGTHS:
                    q = y[: n * SR]
                    q8 = resample(q, SR, fp.SR)
                    t0, c0 = time.perf_counter(), time.process_time()
                    hits = identify(ix, q8)
                    elapsed = time.perf_counter() - t0
                    cpu = time.process_time() - c0
                    best, ber, _ = slide(peer_full[: int(n / FPCALC_ITEM_S) - 2], refs)
                    cell = cells[(name, n)]
                    cell.latency.append(elapsed)
                    cell.cpu.append(cpu)
                    if rid is None:
                        cell.distractor_n += 1
                        cell.false_pos += bool(hits)
                        cell.fp_distractor.append(ber)
                        continue
                    cell.n += 1
                    cell.fp_right.append(ber if best == rid else 1.0)
                    if hits and hits[0].recording_id == rid:
                        cell.top1 += 1
                        h = hits[0]
                        cell.offset_err.append(
                            abs(h.reference_start - (start + factor * h.query_start)))
            done = cells[(name, 10)]
            print(f"  {name:24s} top-1@10s {done.top1}/{done.n}  false positives "
                  f"{done.false_pos}/{done.distractor_n}", file=sys.stderr)
    return cells


def _top_hits(args: tuple[str, list[tuple[str, float, str]]]) -> list[Hit | None]:
    """Run 10 s queries (path, start, condition) on the index at ``args[0]`` in a worker; return
    each query's top hit, or None."""
    where, jobs = args
    ix = Index.open(where)
    conds = conditions()
    out = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for path, start, name in jobs:
            factor, transform = conds[name]
            y = transform(excerpt(Path(path), start, 10 * max(1.0, factor) + 1), Path(tmpdir))
            hits = identify(ix, resample(y[: 10 * SR], SR, fp.SR))
            out.append(hits[0] if hits else None)
    return out


def _in_two_processes(where: Path, jobs: list[tuple[str, float, str]]) -> list[Hit | None]:
    """:func:`_top_hits` of every job, split over 2 processes; results in job order."""
    with ProcessPoolExecutor(2) as pool:
        parts = list(pool.map(_top_hits, [(str(where), jobs[k::2]) for k in range(2)]))
    out: list[Hit | None] = [None] * len(jobs)
    out[0::2], out[1::2] = parts
    return out


def distractor_sweep(where: Path, c: Corpus, n: int, seed: int) -> tuple[int, list[str]]:
    """``n`` more 10 s distractor queries, attune only, conditions in turn, on 2 processes:
    enough queries that none matching bounds the false-positive rate near 0.1%. Returns ``n``
    and a description of each false positive."""
    rng = np.random.default_rng(seed + 1000)
    durations = {p: duration(p) for p in c.distractors}
    usable = [p for p in c.distractors if durations[p] > 14]
    names = list(conditions())
    jobs = [(str(p), float(rng.uniform(0, durations[p] - 13)), names[i % len(names)])
            for i, p in enumerate(usable[j] for j in rng.integers(0, len(usable), n))]
    found = [f"{Path(path).name} at {start:.1f} s, {name}: recording {h.recording_id}, score "
             f"{h.score}, confidence {h.confidence:.3f}"
             for (path, start, name), h in zip(jobs, _in_two_processes(where, jobs), strict=True)
             if h is not None]
    return n, found


def hit_sweep(where: Path, c: Corpus, per_condition: int, seed: int) -> dict[str, tuple[int, int]]:
    """``per_condition`` more 10 s catalog queries per condition, attune only, on 2 processes:
    enough that a 0.98 target is a measured rate, not 16 queries; -> condition: (right, n)."""
    rng = np.random.default_rng(seed + 2000)
    durations = {rid: duration(p) for rid, p in c.catalog.items()}
    usable = [rid for rid, d in durations.items() if d > 14]
    picks, jobs = [], []
    for name in conditions():  # draws in the order of the recorded runs
        for rid in rng.choice(usable, per_condition):
            picks.append((int(rid), name))
            jobs.append((str(c.catalog[rid]), float(rng.uniform(0, durations[rid] - 13)), name))
    counts = {name: (0, 0) for name in conditions()}
    for (rid, name), h in zip(picks, _in_two_processes(where, jobs), strict=True):
        k, n = counts[name]
        counts[name] = (k + (h is not None and h.recording_id == rid), n + 1)
    return counts


def _upper95(k: int, n: int) -> float:
    """One-sided 95% upper bound of a rate with ``k`` events in ``n`` trials (exact for k=0)."""
    if n == 0:
        return 1.0
    if k == 0:
        return 1 - 0.05 ** (1 / n)
    from scipy.stats import beta

    return float(beta.ppf(0.95, k + 1, n - k))


def real_variants(ix: Index, refs: dict[int, np.ndarray], c: Corpus,
                  seed: int) -> dict[str, Cell]:
    """SuperTuxKart's own "_fast" versions: 10 s excerpts and whole files, both systems."""
    rng = np.random.default_rng(seed)
    out = {"10 s excerpts": Cell(), "whole files": Cell()}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for path, rid in c.fast.items():
            for _ in range(5):
                start = float(rng.uniform(0, duration(path) - 11))
                q = excerpt(path, start, 10)
                hits = identify(ix, resample(q, SR, fp.SR))
                _record(out["10 s excerpts"], rid, hits, slide(fpcalc(_to_file(q, tmp)), refs))
            hits = identify(ix, decode(path, fp.SR)[0])
            _record(out["whole files"], rid, hits, slide(fpcalc(path), refs))
    return out


def _record(cell: Cell, rid: int, hits: list[Hit], peer: tuple[int | None, float, float]) -> None:
    """Count one catalog query of both systems."""
    cell.n += 1
    cell.top1 += bool(hits) and hits[0].recording_id == rid
    cell.fp_right.append(peer[1] if peer[0] == rid else 1.0)


# ------------------------------------------------------------------------------ at scale


def synthetic_index(real: Index, where: Path, hours: float, shards: int,
                    seed: int) -> Index:
    """The real catalog plus ``hours`` of synthetic entries in ``shards`` hash-range segments.

    Entries are drawn from the real catalog's entries: each keeps its key and the anchor pitch and
    span packed in its value, so chance entries pass the matcher's plausibility test as often as
    real ones do (about 96%; with random values only ~3% did, which made queries look 30x cheaper
    than they are). Recording ids and anchor times are random; synthetic recordings last 4 minutes.
    The catalog has fewer distinct keys than a large one would: a pessimistic model of collisions.
    """
    rng = np.random.default_rng(seed)
    keys = np.concatenate([np.asarray(s.keys) for s in real._segments])
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    shapes = np.concatenate([np.asarray(s.values) for s in real._segments])[order] & np.uint32(
        0xFFF)  # pitch and span bits
    per_hour = real.entries / real.hours
    total = int(hours * per_hour)
    ix = Index.create(where)
    ix.add([Fingerprinted(rid, e.label, e.duration, *_entries_of(real, rid))
            for rid, e in real.recordings.items()])
    n_rec = int(hours * 15)
    first_id = 1_000_000
    bounds = np.linspace(0, len(keys), shards + 1).astype(np.int64)
    for s in range(shards):
        n = total // shards
        span = keys[bounds[s] : bounds[s + 1]]
        # sorted draws without a sort: how many times each catalog entry is drawn
        counts = rng.multinomial(n, np.full(len(span), 1 / len(span)))
        rids = rng.integers(first_id, first_id + n_rec, n, dtype=np.uint32)
        frames = rng.integers(0, int(240 * fp.SR / fp.HOP), n, dtype=np.uint32)
        values = (frames << np.uint32(12)) | np.repeat(shapes[bounds[s] : bounds[s + 1]], counts)
        name = f"seg-synthetic-{s:03d}"
        for part, arr in (("keys", np.repeat(span, counts)), ("rids", rids), ("values", values)):
            np.save(where / f"{name}-{part}.npy", arr.astype(np.uint32, copy=False))
        manifest = json.loads((where / "index.json").read_text())
        manifest["segments"].append({"name": name, "seq": manifest["next_seq"], "entries": n})
        manifest["next_seq"] += 1
        (where / "index.json").write_text(json.dumps(manifest))
        del counts, rids, frames, values
    manifest = json.loads((where / "index.json").read_text())
    for r in range(n_rec):
        manifest["recordings"][str(first_id + r)] = {"label": "synthetic", "duration": 240.0,
                                                     "hashes": 0, "segment": 0}
    (where / "index.json").write_text(json.dumps(manifest))
    return Index.open(where)


def _entries_of(real: Index, rid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One real recording's keys, values and peaks (to copy it into the synthetic index)."""
    keys, values = [], []
    for seg in real._segments:
        mask = np.asarray(seg.rids) == rid
        keys.append(np.asarray(seg.keys)[mask])
        values.append(np.asarray(seg.values)[mask])
    return np.concatenate(keys), np.concatenate(values), real.peaks(rid)


SCALE_HARD = ("echo/reverb", "pink noise 0 dB")  # conditions whose recall the big index tests


def scale_latency(big: Index, c: Corpus, n: int, seed: int) -> tuple[float, ...]:
    """Clean 10 s queries on the big index: wall p50/p95, CPU p50/p95 (ms) and top-1 rate of
    catalog queries; top-1 rate of as many queries under each SCALE_HARD condition (the lookup
    budget skips common keys, which costs the weakest matches first); then wall p50/p95 and CPU
    p50/p95 of as many distractor queries (no match: every pass runs, the dense one included)
    and their false-positive count.

    The allocator is tuned as a query server would be (``tune_allocator``); this process runs
    only benchmark code, so the setting does not touch anything else.
    """
    tune_allocator()
    rng = np.random.default_rng(seed)
    lat, cpu, ok = [], [], 0
    eligible = [rid for rid, p in c.catalog.items() if duration(p) > 12]
    for rid in rng.choice(eligible, n):
        path = c.catalog[rid]
        start = float(rng.uniform(0, duration(path) - 11))
        q8 = resample(excerpt(path, start, 10), SR, fp.SR)
        t0, c0 = time.perf_counter(), time.process_time()
        hits = identify(big, q8)
        lat.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        ok += bool(hits) and hits[0].recording_id == rid
    hard = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCALE_HARD:
            transform = conditions()[name][1]
            found = 0
            for rid in rng.choice(eligible, n):
                path = c.catalog[rid]
                y = transform(excerpt(path, float(rng.uniform(0, duration(path) - 11)), 10),
                              Path(tmp))
                hits = identify(big, resample(y, SR, fp.SR))
                found += bool(hits) and hits[0].recording_id == rid
            hard.append(found / n)
    d_lat, d_cpu, false_pos = [], [], 0
    others = [p for p in c.distractors if duration(p) > 12]
    for i in rng.integers(0, len(others), n):
        path = others[i]
        q8 = resample(excerpt(path, float(rng.uniform(0, duration(path) - 11)), 10), SR, fp.SR)
        t0, c0 = time.perf_counter(), time.process_time()
        false_pos += bool(identify(big, q8))
        d_lat.append(time.perf_counter() - t0)
        d_cpu.append(time.process_time() - c0)
    ms = lambda x: [float(v) for v in np.percentile(np.array(x) * 1000, [50, 95])]  # noqa: E731
    return (*ms(lat), *ms(cpu), ok / n, *hard, *ms(d_lat), *ms(d_cpu), false_pos)


# -------------------------------------------------------------------------------- report


def machine() -> str:
    """CPU model, cores, memory and date."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = 0.0
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"
            f", {dt.date.today().isoformat()}")


def scale_tables(formats: list[tuple[str, float, float, float]],
                 scale: list[tuple[float, ...]]) -> list[str]:
    """Markdown lines: indexing speed by format, and latency and recall at scale."""
    lines = ["", "### Indexing speed by delivery format (x real time per CPU second; the same "
             f"{formats[0][1] * 60:.0f} min of catalog transcoded with ffmpeg)" if formats else "",
             "", "| format | decoding to mono 8 kHz | indexing end to end |", "|---|---|---|"]
    lines += [f"| {name} | {dec:.0f} | {e2e:.0f} |" for name, _, dec, e2e in formats]
    lines += ["", "### Latency at scale (clean 10 s queries; synthetic entries + the real catalog; "
              "allocator tuned with `tune_allocator()`; as many queries per hard condition, and "
              "as many distractor excerpts for the no-match columns)",
              "",
              "| index hours | segments | index size | wall p50 / p95 | CPU p50 / p95 | top-1 | "
              + "".join(f"top-1 {name} | " for name in SCALE_HARD)
              + "no-match queries: wall p50 / p95 | CPU p50 / p95 | false positives |",
              "|---|---|---|---|---|---|" + "---|" * len(SCALE_HARD) + "---|---|---|"]
    for hours, shards, gb, w50, w95, c50, c95, top1, *rest in scale:
        hard, (dw50, dw95, dc50, dc95, fpos) = rest[: len(SCALE_HARD)], rest[len(SCALE_HARD) :]
        lines.append(f"| {hours:,.0f} | {shards:.0f} | {gb:.1f} GB | {w50:.0f} / {w95:.0f} ms | "
                     f"{c50:.0f} / {c95:.0f} ms | {top1:.2f} | "
                     + "".join(f"{h:.2f} | " for h in hard)
                     + f"{dw50:.0f} / {dw95:.0f} ms | {dc50:.0f} / {dc95:.0f} ms | {fpos:.0f} |")
    return lines


def report(args: argparse.Namespace, stats: IndexStats, cells: dict[tuple[str, int], Cell],
           variants: dict[str, Cell], scale: list[tuple[float, ...]], c: Corpus,
           sweep: tuple[int, list[str]], hits: dict[str, tuple[int, int]],
           formats: list[tuple[str, float, float, float]]) -> str:
    """Markdown tables of everything measured."""
    pct = lambda a, b: f"{a / b:.2f}" if b else "-"  # noqa: E731
    distractor_bers = np.array([b for x in cells.values() for b in x.fp_distractor])
    threshold = float(np.quantile(distractor_bers, FPCALC_FP_TARGET, method="lower"))
    peer = lambda x: pct(sum(b < threshold for b in x.fp_right), x.n)  # noqa: E731
    lines = [SECTION, "",
             f"Run: `.venv/bin/python bench/identify_bench.py{' --quick' if args.quick else ''}`"
             f" on {machine()}.",
             f"Catalog: {len(c.catalog)} recordings, {stats.hours:.2f} h (Debian wesnoth-1.16-music"
             f" + the SuperTuxKart pieces with a `_fast` variant); distractors: "
             f"{len(c.distractors)} other SuperTuxKart pieces, never indexed. Queries start at "
             f"random offsets; {args.per_cell} catalog and {args.distractors} distractor queries "
             "per condition and length. Chromaprint: `fpcalc -raw` of the same 20 s query audio "
             "(its first items for shorter lengths) slid along each catalog file's whole "
             "fingerprint; a match is the lowest bit error rate, "
             f"below {threshold:.3f}, the rate that {FPCALC_FP_TARGET:.1%} of this run's "
             "distractor queries reach (a threshold chosen after the fact, in fpcalc's favour).",
             "",
             "### Top-1 hit rate by condition and query length", "",
             f"The column \"10 s, {args.hit_queries} more\" is attune only: that many further 10 s "
             "catalog queries per condition (other recordings and offsets, 2 processes), so that a "
             "0.98 target is judged on a rate rather than on 16 queries.", "",
             "| condition | 3 s | 5 s | 10 s | 20 s | 10 s, "
             f"{args.hit_queries} more | fpcalc 10 s | fpcalc 20 s | offset error "
             "10 s, median / max (ms) | false positives (all lengths) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in conditions():
        row = [cells[(name, n)] for n in LENGTHS]
        errs = cells[(name, 10)].offset_err
        err = f"{np.median(errs) * 1000:.0f} / {np.max(errs) * 1000:.0f}" if errs else "-"
        fps = sum(r.false_pos for r in row)
        dn = sum(r.distractor_n for r in row)
        k, n = hits.get(name, (0, 0))
        lines.append(f"| {name} | " + " | ".join(pct(r.top1, r.n) for r in row)
                     + f" | {pct(k, n)} ({k}/{n}) | {peer(row[2])} | {peer(row[3])}"
                     f" | {err} | {fps}/{dn} |")
    all_cells = list(cells.values())
    dn = sum(x.distractor_n for x in all_cells)
    fpos = sum(x.false_pos for x in all_cells)
    fp_fpos = int(np.sum(distractor_bers < threshold))
    d10 = sum(x.distractor_n for (_, n), x in cells.items() if n == 10) + sweep[0]
    fp10 = sum(x.false_pos for (_, n), x in cells.items() if n == 10) + len(sweep[1])
    lat = np.array([t for (_, n), x in cells.items() if n == 10 for t in x.latency]) * 1000
    cpu = np.array([t for (_, n), x in cells.items() if n == 10 for t in x.cpu]) * 1000
    lines += ["", "### Real tempo variants (SuperTuxKart `_fast` files against their base piece)",
              "", "| queries | n | attune top-1 | fpcalc top-1 |", "|---|---|---|---|"]
    for k, v in variants.items():
        lines.append(f"| {k} | {v.n} | {pct(v.top1, v.n)} | {peer(v)} |")
    lines += ["", "### Cost and false positives", "",
              "| measure | attune.identify | Chromaprint fpcalc |", "|---|---|---|",
              f"| false positives on distractor queries, all lengths (table above) | {fpos}/{dn} "
              f"({fpos / dn:.2%}) | {fp_fpos}/{dn} ({fp_fpos / dn:.2%}, threshold set on them) |",
              f"| false positives on 10 s distractor queries, with {sweep[0]} more (all "
              f"conditions in turn) | {fp10}/{d10} ({fp10 / d10:.3%}; 95% upper bound "
              f"{_upper95(fp10, d10):.3%}) | - |",
              f"| fingerprinting speed (x real time per core, decoded audio) | "
              f"{stats.fingerprint_xrt:.0f} | - |",
              f"| decoding Ogg Vorbis to mono 8 kHz (x real time per CPU second) | "
              f"{stats.decode_xrt:.0f} | - |",
              f"| indexing end to end (x real time per CPU second: decode, fingerprint, write) | "
              f"{stats.end_to_end_xrt:.0f} | {stats.fpcalc_xrt:.0f} (fpcalc CPU seconds) |",
              f"| indexing end to end (x real time per wall second and core, load-dependent) | "
              f"{stats.end_to_end_wall_xrt:.0f} | - |",
              f"| index bytes per hour of audio | {stats.bytes_per_hour / 1e6:.2f} MB | "
              f"{stats.fpcalc_bytes_per_hour / 1e6:.3f} MB |",
              f"| 10 s query on the catalog index, wall clock p50 / p95 | "
              f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} ms | - |",
              f"| 10 s query on the catalog index, CPU time p50 / p95 | "
              f"{np.percentile(cpu, 50):.0f} / {np.percentile(cpu, 95):.0f} ms | - |"]
    lines += scale_tables(formats, scale)
    if sweep[1]:
        lines += ["", "False positives among the extra distractor queries:", ""]
        lines += [f"- {f}" for f in sweep[1]]
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    """Replace (or append) this benchmark's section of docs/BENCHMARKS.md."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)


def main() -> None:
    """Run everything and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer queries, smaller synthetic index")
    ap.add_argument("--per-cell", type=int, help="catalog queries per condition and length")
    ap.add_argument("--distractors", type=int, help="distractor queries per condition and length")
    ap.add_argument("--fp-queries", type=int,
                    help="extra 10 s distractor queries, attune only [3000, or 300 with --quick]")
    ap.add_argument("--hit-queries", type=int,
                    help="extra 10 s catalog queries per condition, attune only [100, or 10 with "
                    "--quick]")
    ap.add_argument("--format-files", type=int,
                    help="catalog files transcoded per format for indexing speed [12, or 4 with "
                    "--quick]")
    ap.add_argument("--scale-hours", type=float, nargs="*",
                    help="synthetic index sizes in hours [default: 1000, or 100 with --quick]")
    ap.add_argument("--shards", type=int, default=4, help="hash-range segments per synthetic index")
    ap.add_argument("--work", type=Path, help="keep indexes here instead of a temporary folder")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    ap.add_argument("--scale-only", action="store_true",
                    help="only index the catalog, time indexing per format and measure the "
                    "synthetic indexes (prints those tables)")
    args = ap.parse_args()
    args.per_cell = args.per_cell or (6 if args.quick else 16)
    args.distractors = args.distractors or (3 if args.quick else 8)
    args.hit_queries = args.hit_queries or (10 if args.quick else 100)
    args.format_files = args.format_files or (4 if args.quick else 12)
    if args.fp_queries is None:
        args.fp_queries = 300 if args.quick else 3000
    scale_hours = args.scale_hours if args.scale_hours is not None else (
        [100.0] if args.quick else [1000.0])
    ensure_packages()
    c = corpus()
    work = args.work or Path(tempfile.mkdtemp(prefix="identify-bench-"))
    try:
        shutil.rmtree(work / "catalog", ignore_errors=True)
        print("indexing the catalog ...", file=sys.stderr)
        ix, stats, refs = build_index(c, work / "catalog")
        print(f"  {stats}", file=sys.stderr)
        print("indexing speed by format ...", file=sys.stderr)
        formats = format_speeds(c, work / "formats", args.format_files)
        scale = []
        for hours in scale_hours:
            print(f"synthetic index of {hours:,.0f} h ...", file=sys.stderr)
            where = work / f"synthetic-{hours:.0f}"
            shutil.rmtree(where, ignore_errors=True)
            big = synthetic_index(ix, where, hours, args.shards, args.seed)
            measured = scale_latency(big, c, 60 if args.quick else 200, args.seed)
            scale.append((big.hours, len(big._segments), big.nbytes / 1e9, *measured))
            del big
            if args.work is None:
                shutil.rmtree(where, ignore_errors=True)
            print(f"  {scale[-1]}", file=sys.stderr)
        if args.scale_only:
            print("\n".join([f"Run: {machine()}", *scale_tables(formats, scale)]))
            return
        print("querying ...", file=sys.stderr)
        cells = run_queries(ix, refs, c, args.per_cell, args.distractors, args.seed)
        variants = real_variants(ix, refs, c, args.seed)
        print(f"{args.fp_queries} more distractor queries ...", file=sys.stderr)
        sweep = distractor_sweep(work / "catalog", c, args.fp_queries, args.seed)
        print(f"  false positives {len(sweep[1])}/{sweep[0]}", file=sys.stderr)
        print(f"{args.hit_queries} more 10 s catalog queries per condition ...", file=sys.stderr)
        hits = hit_sweep(work / "catalog", c, args.hit_queries, args.seed)
        print(f"  {hits}", file=sys.stderr)
        section = report(args, stats, cells, variants, scale, c, sweep, hits, formats)
        print(section)
        if args.write_docs:
            write_docs(section)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
