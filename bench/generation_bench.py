"""Reference generator benchmark: training time, held-out bits, histogram KL, copy rate, speed.

    .venv/bin/python bench/generation_bench.py             # about 3-5 minutes on 2 cores
    .venv/bin/python bench/generation_bench.py --outputs 40 --orders 3 4    # quicker

Corpus: the 19th-century tune collections of music21 (O'Neill's 1850, Ryan's Mammoth, Aird's
Airs) and the Bach chorales' soprano lines, read with ``load_scores`` (parsed once, then cached);
the Essen folksongs are non-commercial and stay out. A seeded 10% of the works is held out. For
each context order the model is trained on the rest; generated outputs take their keys and
modes from the held-out works in turn (48 notes each, seeds 0..n-1). KL is KL(held-out ||
generated) in nats with half a count per bin (``attune.generate.quality``); the "train" row
scores the training works themselves against the held-out ones, the floor of what sampling
noise and corpus differences allow. Copy rate: share of generated 8-token windows found verbatim
in a training work, with the copy guard on (resample at an 8-token run) and off.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attune.generate.markov import MarkovModel
from attune.generate.quality import copy_rate, interval_kl, pitch_class_kl
from attune.melody.notes import Melody
from attune.melody.scores import ScoreError, corpus_sources, load_score, load_scores

COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "bach")
MIN_NOTES = 8
TARGET_INTERVAL_KL = 0.015
TARGET_PITCH_CLASS_KL = 0.012


def machine() -> str:
    """One line: cores, CPU model, load average, Python and numpy versions."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores (nproc), {model}, load {load}, Python "
            f"{platform.python_version()}, numpy {np.__version__}")


def corpus(collections: Sequence[str] = COLLECTIONS, *, limit: int | None = None,
           held_out: float = 0.1, seed: int = 0) -> tuple[dict[int, Melody], dict[int, Melody],
                                                          float]:
    """Training and held-out works by id (index in the sorted sources), and seconds to load."""
    started = time.perf_counter()
    sources = sorted(s for c in collections for s in corpus_sources(c, limit))
    try:
        melodies = load_scores(sources)
    except ScoreError:  # a few scores do not parse: the rest are cached by now, read one by one
        melodies = {}
        for source in sources:
            try:
                melodies[source] = load_score(source)
            except ScoreError as exc:
                print(f"skipped: {exc}")
    works = {i: melodies[s] for i, s in enumerate(sources)
             if s in melodies and len(melodies[s]) >= MIN_NOTES}
    ids = np.asarray(sorted(works))
    rng = np.random.default_rng(seed)
    test = set(rng.choice(ids, size=round(held_out * len(ids)), replace=False).tolist())
    train = {w: m for w, m in works.items() if w not in test}
    return train, {w: works[w] for w in sorted(test)}, time.perf_counter() - started


def generate(model: MarkovModel, keys: Sequence[Melody], count: int, *, max_verbatim: int,
             length: int = 48) -> tuple[list[Melody], float, int]:
    """``count`` outputs in the keys of ``keys`` (cycled); their melodies, seconds, resamples."""
    started = time.perf_counter()
    made, resamples = [], 0
    for seed in range(count):
        key = keys[seed % len(keys)]
        out = model.generate(seed=seed, length=length, tonic=key.tonic, mode=key.mode,
                             bar_ticks=key.bar_ticks, max_verbatim=max_verbatim)
        made.append(out.melody)
        resamples += out.resamples
    return made, time.perf_counter() - started, resamples


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=int, default=120, help="generated outputs per order")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    parser.add_argument("--collections", nargs="+", default=list(COLLECTIONS))
    parser.add_argument("--limit", type=int, default=None, help="first N sources a collection")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"machine: {machine()}")
    train, test, load_s = corpus(args.collections, limit=args.limit)
    held = list(test.values())
    training = list(train.values())
    notes = sum(len(m) for m in training)
    modes = sum(m.mode == "minor" for m in training)
    print(f"corpus: {', '.join(args.collections)}: {len(train)} training works ({notes} notes, "
          f"{modes} minor), {len(test)} held out ({sum(len(m) for m in held)} notes); "
          f"loaded in {load_s:.1f} s")
    print(f"floor (training works vs held-out): interval KL {interval_kl(training, held):.4f}, "
          f"pitch-class KL {pitch_class_kl(training, held):.4f}")
    print()
    print("| order | train s | held-out bits/note | guard | interval KL | pitch-class KL "
          "| copy rate (8) | resamples/output | notes/s |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for order in args.orders:
        t0 = time.perf_counter()
        model = MarkovModel.train(train, order=order)
        train_s = time.perf_counter() - t0
        bits = model.bits_per_note(held)
        for guard in (8, 0):
            made, gen_s, resamples = generate(model, held, args.outputs, max_verbatim=guard)
            ikl, pkl = interval_kl(made, held), pitch_class_kl(made, held)
            marks = ("" if ikl <= TARGET_INTERVAL_KL else " (miss)",
                     "" if pkl <= TARGET_PITCH_CLASS_KL else " (miss)")
            print(f"| {order} | {train_s:.2f} | {bits:.3f} | {'on' if guard else 'off'} "
                  f"| {ikl:.4f}{marks[0]} | {pkl:.4f}{marks[1]} "
                  f"| {copy_rate(made, training):.1%} | {resamples / len(made):.2f} "
                  f"| {sum(len(m) for m in made) / gen_s:,.0f} |", flush=True)
    print()
    print(f"targets: interval KL <= {TARGET_INTERVAL_KL}, pitch-class KL <= "
          f"{TARGET_PITCH_CLASS_KL}; {args.outputs} outputs of 48 notes per row")
    print(f"runtime {time.perf_counter() - started:.0f} s; load at the end: "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
