"""Attribution benchmark: LDS of provenance credit vs a similarity baseline, and a counterfactual.

    .venv/bin/python bench/attribution_bench.py            # a few minutes on 2 cores
    .venv/bin/python bench/attribution_bench.py --outputs 20 --subsets 50     # quicker

Protocol (the computational-copyright one of TRAK, Park et al. 2023): the order-4 reference
model is trained on the corpus of bench/generation_bench.py (10% held out); ``--subsets`` random
halves of the training works (alpha 0.5) are "retrained" exactly by summing their counts, and each
test item's log2-likelihood on every half is the ground truth. LDS is Spearman's correlation,
across the halves, of that likelihood against the sum of the item's attribution scores over the
half's works, per item, then averaged. Test items: generated outputs (48 notes, copy guard on)
and held-out tunes (their first 48 notes). Attributions, all scored on the same halves:
provenance (``work_weights`` of the per-token provenance: which works supplied each token's
probability), interval 4-gram overlap (distinct 4-interval sequences the item shares with a
work, plainly or idf-weighted: similarity only), and random scores. Counterfactual: the drop in
log2 p of an item when the k works with the top scores are removed, against k random works.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attune.attribute.lds import counterfactual, score_lds, subset_likelihoods
from attune.attribute.shares import work_weights
from attune.generate.markov import MarkovModel
from attune.melody.notes import Melody
from generation_bench import corpus, machine

GRAM = 4
TARGET_GENERATED = 0.85
TARGET_HELD_OUT = 0.75

Scores = list[dict[int, float]]


def grams(melody: Melody) -> set[tuple[int, ...]]:
    """The distinct interval 4-grams of a melody."""
    steps = melody.intervals().tolist()
    return {tuple(steps[i:i + GRAM]) for i in range(len(steps) - GRAM + 1)}


def similarity(items: Sequence[Melody], works: Mapping[int, Melody], *,
               idf: bool = False) -> Scores:
    """Per item, the distinct interval 4-grams each training work shares with it.

    Counted plainly, or weighted by inverse document frequency, log(works / works with it),
    so that a rare shared figure says more than a scale run.
    """
    postings: dict[tuple[int, ...], list[int]] = {}
    for work, melody in works.items():
        for gram in grams(melody):
            postings.setdefault(gram, []).append(work)
    scores = []
    for item in items:
        score: dict[int, float] = {}
        for gram in grams(item):
            having = postings.get(gram, [])
            weight = math.log(len(works) / len(having)) if idf and having else 1.0
            for work in having:
                score[work] = score.get(work, 0.0) + weight
        scores.append(score)
    return scores


def first(melody: Melody, count: int) -> Melody:
    """The melody cut to its first ``count`` notes."""
    return Melody(melody.notes[:count], melody.tonic, melody.mode, melody.bar_ticks,
                  source=melody.source)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=int, default=50, help="generated and held-out items")
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--k", type=int, default=10, help="works removed in the counterfactual")
    parser.add_argument("--trials", type=int, default=10, help="random k-sets per item")
    parser.add_argument("--counterfactual-items", type=int, default=10)
    parser.add_argument("--collections", nargs="+", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N sources a collection")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"machine: {machine()}")
    train, test, load_s = (corpus(args.collections, limit=args.limit) if args.collections
                           else corpus(limit=args.limit))
    t0 = time.perf_counter()
    model = MarkovModel.train(train, order=args.order)
    print(f"corpus: {len(train)} training works, {len(test)} held out (loaded in {load_s:.1f} s); "
          f"order {args.order} trained in {time.perf_counter() - t0:.2f} s")
    held = list(test.values())
    made = [model.generate(seed=s, length=48, tonic=held[s % len(held)].tonic,
                           mode=held[s % len(held)].mode) for s in range(args.outputs)]
    rng = np.random.default_rng(1)
    tunes = [first(held[i], 48) for i in sorted(rng.choice(len(held), size=args.outputs,
                                                           replace=False))]
    sets = {
        "generated outputs": ([g.melody for g in made], [work_weights(g.notes) for g in made]),
        "held-out tunes": (tunes, [work_weights(model.explain(t)) for t in tunes]),
    }
    results: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for name, (items, provenance) in sets.items():
        t0 = time.perf_counter()
        chosen, f = subset_likelihoods(model, items, subsets=args.subsets, alpha=args.alpha,
                                       seed=0)
        timings[name] = time.perf_counter() - t0
        methods = {
            "provenance (by construction)": provenance,
            "interval 4-gram overlap (similarity)": similarity(items, train),
            "interval 4-gram overlap, idf-weighted": similarity(items, train, idf=True),
            "random": [{w: float(x) for w, x in zip(model.works, rng.random(len(model.works)),
                                                    strict=True)} for _ in items],
        }
        for method, scores in methods.items():
            result = score_lds(model.works, chosen, f, scores, args.alpha)
            results.setdefault(method, {})[name] = result.mean
        print(f"{name}: {len(items)} items x {args.subsets} subsets of "
              f"{round(args.alpha * len(model.works))} works scored in {timings[name]:.1f} s",
              flush=True)
    print()
    print("| attribution | LDS generated outputs | LDS held-out tunes |")
    print("|---|---:|---:|")
    for method, by_set in results.items():
        print(f"| {method} | {by_set['generated outputs']:.3f} | {by_set['held-out tunes']:.3f} |")
    print(f"targets (provenance): >= {TARGET_GENERATED} on generated outputs, >= "
          f"{TARGET_HELD_OUT} on held-out tunes")
    print()
    t0 = time.perf_counter()
    print(f"counterfactual: k = {args.k} works removed, {args.trials} random k-sets per item, "
          f"{args.counterfactual_items} items per row; drop in log2 p (bits), mean over items")
    print("| items | attribution | drop without top-k | drop without random k (mean, sd) "
          "| items where top-k beats every random k-set |")
    print("|---|---|---:|---:|---:|")
    for name, (items, provenance) in sets.items():
        count = args.counterfactual_items
        for method, scores in (("provenance", provenance),
                               ("4-gram overlap, idf", similarity(items[:count], train,
                                                                  idf=True))):
            runs = [counterfactual(model, item, score, k=args.k, trials=args.trials, seed=i)
                    for i, (item, score) in enumerate(zip(items[:count], scores, strict=False))]
            top = float(np.mean([r.top_drop for r in runs]))
            randoms = [d for r in runs for d in r.random_drops]
            beats = sum(r.top_drop > max(r.random_drops) for r in runs)
            print(f"| {name} | {method} | {top:.2f} | {np.mean(randoms):.3f}, "
                  f"{np.std(randoms):.3f} | {beats}/{len(runs)} |", flush=True)
    print(f"counterfactual in {time.perf_counter() - t0:.0f} s")
    print(f"runtime {time.perf_counter() - started:.0f} s; machine at the end: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
