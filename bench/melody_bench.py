"""Melodic plagiarism benchmark: attune.melody.similarity against three baselines, one command.

    .venv/bin/python bench/melody_bench.py                 # about 12 minutes on 2 cores (cached)
    .venv/bin/python bench/melody_bench.py --tunes 500 --held-out 300 --queries 30 --negatives 200

Corpus: a seeded sample of the Essen folksongs shipped with music21, read with ``load_scores``
(parsed once, about 90 ms a tune on 2 cores, then cached). Essen holds the same song in several
collections and many tunes quote others, so exact duplicates are dropped and then every tune
linked to an earlier kept one (see ``distinct_tunes``: a verbatim 12-note run, or either
baseline's whole-tune similarity) is dropped too. ``--tunes`` of the rest are indexed; up to
``--held-out`` more are never indexed and serve as unrelated material and negatives.

Queries start from indexed tunes, MIREX symbolic-melodic-similarity style: note deletion,
insertion, interval enlarged and compressed (``--edits`` edits each), plus transposition, tempo
(x2 or x0.5), ornamentation (passing / neighbour notes splitting a note), re-rhythming (not in the
issue: a quarter of the uneven note pairs evened out), and a 4-16-bar fragment (grown bar by bar
to at least 12 notes, transposed) between bars of two held-out tunes. Each query has one relevant
work, so MAP equals MRR; ranks past 10 count as 0 for every method.

Copy decision: the score of a query is its best hit with at least 12 matched notes (the policy of
``check_copy``), or the best similarity for a baseline. Negatives: whole held-out tunes, medleys
built like the fragment queries from held-out tunes only, and random walks with the corpus'
interval and duration statistics. Queries and negatives are split at random into a calibration
half, which fixes each method's threshold (the lowest score at which the 95% Clopper-Pearson upper
bound on the calibration negatives' FPR is <= 1%), and a test half for TPR, FPR and ROC-AUC.
Baselines, full scans over the whole index: plain Levenshtein distance of interval strings
(normalised by the longer string), and interval n-gram TF-IDF cosine for n = 3 and n = 8.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import sparse
from scipy.stats import beta

from attune.melody.notes import Melody, Note
from attune.melody.scores import ScoreError, corpus_sources, load_score, load_scores
from attune.melody.similarity import COPY_THRESHOLD, MelodyIndex
from generation_bench import machine

MUTATIONS = ("deletion", "insertion", "enlarged", "compressed", "transposition", "tempo",
             "ornament", "rhythm", "fragment")
MIN_NOTES = 12  # the check_copy default: fewer matched notes never block
MIN_FRAGMENT_NOTES = 12
TARGET_MRR = 0.95
TARGET_TPR = 0.90
TARGET_FPR = 0.01
CONFIDENCE = 0.95  # the calibrated threshold bounds FPR at TARGET_FPR with this confidence
TOP = 10
TFIDF_NS = (3, 8)  # the classic interval trigrams, and the n that did best on a dev seed
FAMILY_COSINE = 0.6
FAMILY_EDIT = 0.7
FAMILY_VERBATIM = MIN_NOTES - 1  # intervals: a verbatim run of MIN_NOTES notes

Arrays = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]


# ---------------------------------------------------------------------------------- corpus


def load_corpus(count: int, seed: int) -> tuple[list[Melody], float]:
    """A seeded sample of ``count`` Essen tunes (failures skipped), and seconds spent loading."""
    started = time.perf_counter()
    sources = corpus_sources("essenFolksong")
    order = np.random.default_rng(seed).permutation(len(sources))[:count]
    picked = [sources[i] for i in sorted(order)]

    def progress(done: int, total: int) -> None:
        """Print a progress line now and then."""
        if done == total or done % 250 == 0:
            print(f"  scores {done}/{total}", file=sys.stderr)

    try:
        melodies = list(load_scores(picked, progress=progress).values())
    except ScoreError:  # some failed; every other one is cached now
        melodies = []
        for source in picked:
            try:
                melodies.append(load_score(source))
            except ScoreError as exc:
                print(f"  skipped {exc}", file=sys.stderr)
    return melodies, time.perf_counter() - started


def signature(melody: Melody) -> bytes:
    """Interval-and-rhythm fingerprint of a melody, to drop exact duplicates."""
    return np.concatenate((melody.intervals(), np.diff(melody.onsets()))).tobytes()


def arrays(melody: Melody) -> Arrays:
    """Pitches, onsets, durations and bars of a melody."""
    return melody.pitches(), melody.onsets(), melody.durations(), melody.bars()


def make(base: Melody, p: NDArray[np.int64], o: NDArray[np.int64], d: NDArray[np.int64],
         b: NDArray[np.int64], title: str = "") -> Melody:
    """A melody from arrays, with the key and metre of ``base``."""
    order = np.argsort(o, kind="stable")
    notes = tuple(Note(int(np.clip(p[i], 0, 127)), int(o[i]), max(1, int(d[i])), int(b[i]))
                  for i in order)
    return Melody(notes=notes, tonic=base.tonic, mode=base.mode, bar_ticks=base.bar_ticks,
                  title=title)


# ------------------------------------------------------------------------------- mutations


def _pick(rng: np.random.Generator, pool: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    """Up to k distinct positions from pool, in decreasing order (safe for in-place edits)."""
    return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))[::-1]


def deletion(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Delete notes; the note before each stretches over its time."""
    p, o, d, b = arrays(m)
    for i in _pick(rng, np.arange(1, len(p)), edits):
        d[i - 1] = o[i] + d[i] - o[i - 1] if i == len(p) - 1 else o[i + 1] - o[i - 1]
        p, o, d, b = (np.delete(a, i) for a in (p, o, d, b))
    return make(m, p, o, d, b)


def insertion(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Insert notes of a random nearby pitch and a duration from the tune, shifting the rest."""
    p, o, d, b = arrays(m)
    for i in _pick(rng, np.arange(1, len(p)), edits):
        dur = int(rng.choice(d))
        pitch = int(p[i - 1] + rng.choice([-1, 1]) * rng.integers(1, 8))
        o = np.where(np.arange(len(o)) >= i, o + dur, o)
        p, o, d, b = (np.insert(a, i, v) for a, v in
                      zip((p, o, d, b), (pitch, o[i - 1] + d[i - 1], dur, b[i - 1]), strict=True))
    return make(m, p, o, d, b)


def interval_change(m: Melody, rng: np.random.Generator, edits: int, enlarge: bool) -> Melody:
    """Enlarge or compress intervals by 1-2 semitones; later notes move with them."""
    p, o, d, b = arrays(m)
    steps = np.diff(p)
    pool = np.flatnonzero(np.abs(steps) >= (1 if enlarge else 2))
    for i in _pick(rng, pool, edits):
        size = int(rng.integers(1, 3)) if enlarge else int(rng.integers(1, min(2, abs(steps[i]) - 1)
                                                                        + 1))
        p[i + 1:] += int(np.sign(steps[i])) * (size if enlarge else -size)
    return make(m, p, o, d, b)


def transposition(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Transpose by 1-11 semitones up or down."""
    p, o, d, b = arrays(m)
    return make(m, p + int(rng.choice([-1, 1]) * rng.integers(1, 12)), o, d, b)


def tempo(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Double or halve every onset and duration (halving rounds to whole ticks)."""
    p, o, d, b = arrays(m)
    if rng.random() < 0.5:
        return make(m, p, o * 2, d * 2, b)
    return make(m, p, (o + 1) // 2, np.maximum((d + 1) // 2, 1), b)


def ornament(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Split notes: a passing note towards the next pitch, or a neighbour note and return."""
    p, o, d, b = arrays(m)
    for i in _pick(rng, np.flatnonzero(d[:-1] >= 4), edits):
        leap = int(p[i + 1] - p[i])
        if abs(leap) >= 3:  # passing note halfway, in the second half of the note
            half = int(d[i]) // 2
            extra_p, extra_o, extra_d = [p[i] + leap // 2], [o[i] + half], [d[i] - half]
            d[i] = half
        else:  # neighbour and back: the note, a step away, the note again
            quarter = int(d[i]) // 4
            step = int(rng.choice([-2, -1, 1, 2]))
            extra_p = [p[i] + step, p[i]]
            extra_o = [o[i] + 2 * quarter, o[i] + 3 * quarter]
            extra_d = [quarter, int(d[i]) - 3 * quarter]
            d[i] = 2 * quarter
        p, o, d = (np.insert(a, i + 1, v) for a, v in ((p, extra_p), (o, extra_o), (d, extra_d)))
        b = np.insert(b, i + 1, [b[i]] * len(extra_p))
    return make(m, p, o, d, b)


def rhythm(m: Melody, rng: np.random.Generator, edits: int) -> Melody:
    """Re-rhythm: even out a quarter of the unequal neighbouring note pairs (dotted -> even)."""
    p, o, d, b = arrays(m)
    ioi = np.diff(o)
    uneven = np.flatnonzero(ioi[:-1] != ioi[1:])
    for i in _pick(rng, uneven, max(1, len(ioi) // 4)):
        o[i + 1] = o[i] + (o[i + 2] - o[i]) // 2
    d[:-1] = np.diff(o)
    return make(m, p, o, d, b)


def bar_span(m: Melody, rng: np.random.Generator, lo: int, hi: int,
             min_notes: int) -> NDArray[np.int64] | None:
    """Note indices of lo-hi consecutive bars (grown to min_notes notes), or None if too short."""
    bars = m.bars()
    distinct = np.unique(bars)
    length = int(rng.integers(lo, hi + 1))
    if len(distinct) < length:
        return None
    first = int(rng.integers(0, len(distinct) - length + 1))
    while True:
        chosen = np.flatnonzero(np.isin(bars, distinct[first:first + length]))
        if len(chosen) >= min_notes:
            return chosen
        if first + length >= len(distinct):
            return None
        length += 1


@dataclass
class Medley:
    """A query built from pieces, and where its middle piece sits."""

    melody: Melody
    middle: tuple[int, int]  # [start, end) note indices of the middle piece in the query


def medley(middle: Melody, span: NDArray[np.int64], fillers: Sequence[Melody],
           rng: np.random.Generator) -> Medley | None:
    """A few bars of one filler tune, then the middle span (transposed), then bars of another."""
    pm, om, dm, bm = (a[span] for a in arrays(middle))
    shift = int(rng.choice([-1, 1]) * rng.integers(0, 6))
    parts: list[Arrays] = [(pm + shift, om, dm, bm)]
    for filler in fillers:
        chosen = bar_span(filler, rng, 2, 8, 4)
        if chosen is None:
            return None
        pf, of, df, bf = (a[chosen] for a in arrays(filler))
        parts.append((pf + round(float(np.mean(pm)) - float(np.mean(pf))) + shift, of, df, bf))
    parts = [parts[1], parts[0], parts[2]]
    cols: list[list[NDArray[np.int64]]] = [[], [], [], []]
    clock, bar, bounds = 0, 0, [0]
    for pp, oo, dd, bb in parts:
        cols[0].append(pp)
        cols[1].append(oo - oo[0] + clock)
        cols[2].append(dd)
        cols[3].append(bb - bb[0] + bar + 1)
        clock += int(oo[-1] - oo[0] + dd[-1])
        bar = int(cols[3][-1][-1])
        bounds.append(bounds[-1] + len(pp))
    p, o, d, b = (np.concatenate(c) for c in cols)
    return Medley(make(middle, p, o, d, b), (bounds[1], bounds[2]))


def random_walk(steps: NDArray[np.int64], iois: NDArray[np.int64], length: int,
                base: Melody, rng: np.random.Generator) -> Melody:
    """A melody whose intervals and durations are drawn from the corpus' own distributions."""
    p = 67 + np.cumsum(np.concatenate(([0], rng.choice(steps, length - 1))))
    p = 60 + np.abs((p - 60 + 24) % 48 - 24)  # fold into two octaves above middle C
    d = rng.choice(iois, length)
    o = np.concatenate(([0], np.cumsum(d)[:-1]))
    return make(base, p, o, d, o // base.bar_ticks + 1)


# ------------------------------------------------------------------------------- baselines


class EditDistance:
    """Plain Levenshtein distance of interval strings, one numpy pass over the whole index."""

    def __init__(self, keys: Sequence[str], melodies: Sequence[Melody]) -> None:
        self.keys = list(keys)
        seqs = [m.intervals() for m in melodies]
        self.lengths = np.array([len(s) for s in seqs])
        widths = self.lengths + 1  # each reference gets a leading column: j = 0
        self.starts = np.concatenate(([0], np.cumsum(widths)[:-1]))
        self.ends = self.starts + self.lengths
        self.cols = np.concatenate([np.concatenate(([10_000], s)) for s in seqs])
        seg = np.repeat(np.arange(len(seqs)), widths)
        self.pos = np.arange(len(self.cols)) - self.starts[seg]
        self.ramp = np.arange(len(self.cols)) + seg * (len(self.cols) + 10**6)

    def scores(self, query: Melody) -> NDArray[np.float64]:
        """Similarity 1 - distance / longer length, for every indexed melody."""
        q = query.intervals()
        row = self.pos.copy()
        for i, step in enumerate(q, start=1):
            diag = np.empty_like(row)
            diag[1:] = row[:-1] + (self.cols[1:] != step)
            new = np.minimum(row + 1, diag)
            new[self.starts] = i
            row = np.minimum.accumulate(new - self.ramp) + self.ramp
        dist = row[self.ends]
        out: NDArray[np.float64] = 1.0 - dist / np.maximum(np.maximum(self.lengths, len(q)), 1)
        return out


class TfIdf:
    """Cosine similarity of TF-IDF vectors of interval n-grams, over the whole index."""

    def __init__(self, keys: Sequence[str], melodies: Sequence[Melody], n: int = 3):
        self.keys, self.n = list(keys), n
        grams = [self._grams(m) for m in melodies]
        vocab, inverse = np.unique(np.concatenate(grams), return_inverse=True)
        rows = np.repeat(np.arange(len(grams)), [len(g) for g in grams])
        counts = sparse.csr_matrix((np.ones(len(rows)), (rows, inverse)),
                                   shape=(len(grams), len(vocab)))
        counts.sum_duplicates()
        df = np.bincount(counts.indices, minlength=len(vocab))
        self.vocab, self.idf = vocab, np.log(len(grams) / df)
        weighted = counts.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        self.docs = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted

    def _grams(self, m: Melody) -> NDArray[np.int64]:
        """Codes of the interval n-grams of a melody (with repeats)."""
        steps = np.clip(m.intervals(), -31, 32) + 31
        if len(steps) < self.n:
            return np.zeros(0, dtype=np.int64)
        codes: NDArray[np.int64] = sliding_window_view(steps, self.n) @ (64 ** np.arange(self.n))
        return codes

    def scores(self, query: Melody) -> NDArray[np.float64]:
        """Cosine similarity of the query to every indexed melody."""
        grams = self._grams(query)
        pos = np.minimum(np.searchsorted(self.vocab, grams), len(self.vocab) - 1)
        vec = np.bincount(pos[self.vocab[pos] == grams], minlength=len(self.vocab)) * self.idf
        norm = np.linalg.norm(vec)
        out: NDArray[np.float64] = self.docs @ (vec / norm) if norm > 0 else np.zeros(
            len(self.keys))
        return out


def distinct_tunes(tunes: Sequence[Melody], cosine: float, edit: float,
                   verbatim: int) -> list[Melody]:
    """Tunes in order, each kept only when it is unlinked to every tune kept before it.

    Essen holds the same song in several collections, under other titles and in other rhythms,
    and some tunes quote others. Two tunes are linked, by criteria independent of attune, when
    they share a verbatim run of ``verbatim`` intervals, when their interval 3-gram TF-IDF cosine
    reaches ``cosine``, or when (among pairs with cosine >= 0.3) their plain edit similarity
    reaches ``edit``. So a "negative" never quotes or varies an indexed tune, and every query has
    exactly one relevant work.
    """
    links: list[set[int]] = [set() for _ in tunes]
    owners: dict[bytes, list[int]] = {}
    for i, tune in enumerate(tunes):
        steps = tune.intervals()
        if len(steps) >= verbatim:
            for window in {w.tobytes() for w in sliding_window_view(steps, verbatim)}:
                owners.setdefault(window, []).append(i)
    for group in owners.values():
        for i in group:
            links[i].update(group)
    docs = TfIdf([str(i) for i in range(len(tunes))], tunes).docs
    sims = (docs @ docs.T).tocoo()
    close: dict[int, list[int]] = {}
    for a, b, value in zip(sims.row, sims.col, sims.data, strict=True):
        if a < b and value >= 0.3:
            close.setdefault(int(a), []).append(int(b))
            if value >= cosine:
                links[a].add(int(b))
                links[b].add(int(a))
    for a, others in close.items():
        scores = EditDistance([str(b) for b in others], [tunes[b] for b in others]).scores(tunes[a])
        for b, value in zip(others, scores, strict=True):
            if value >= edit:
                links[a].add(b)
                links[b].add(a)
    kept: list[int] = []
    taken: set[int] = set()
    for i in range(len(tunes)):
        if i not in taken:
            kept.append(i)
            taken.update(links[i])
    return [tunes[i] for i in kept]


# ------------------------------------------------------------------------------- running


@dataclass
class Query:
    """One query: what it is, which work it copies (None for a negative), where the copy lies."""

    kind: str
    melody: Melody
    relevant: str | None
    calibration: bool
    query_span: tuple[int, int] | None = None
    ref_span: tuple[int, int] | None = None
    results: dict[str, tuple[int, float]] = field(default_factory=dict)  # method: (rank, score)
    iou: tuple[float, float] | None = None  # located-segment overlap (query side, reference side)


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two [start, end) spans."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


def make_queries(index_tunes: dict[str, Melody], held: list[Melody], args: argparse.Namespace,
                 rng: np.random.Generator) -> list[Query]:
    """Mutated copies of indexed tunes (positives) and unrelated melodies (negatives)."""
    mutate: dict[str, Callable[[Melody, np.random.Generator, int], Melody]] = {
        "deletion": deletion, "insertion": insertion,
        "enlarged": lambda m, r, e: interval_change(m, r, e, True),
        "compressed": lambda m, r, e: interval_change(m, r, e, False),
        "transposition": transposition, "tempo": tempo, "ornament": ornament, "rhythm": rhythm}
    keys = [k for k, m in index_tunes.items() if len(m) >= MIN_NOTES]
    queries: list[Query] = []
    for kind in MUTATIONS:
        made = 0
        for key in rng.permutation(keys):
            if made == args.queries:
                break
            tune = index_tunes[str(key)]
            if kind != "fragment":
                queries.append(Query(kind, mutate[kind](tune, rng, args.edits), str(key),
                                     bool(rng.random() < 0.5)))
                made += 1
                continue
            span = bar_span(tune, rng, 4, 16, MIN_FRAGMENT_NOTES)
            fillers = [held[int(i)] for i in rng.choice(len(held), 2, replace=False)]
            built = None if span is None else medley(tune, span, fillers, rng)
            if built is not None and span is not None:
                queries.append(Query(kind, built.melody, str(key), bool(rng.random() < 0.5),
                                     built.middle, (int(span[0]), int(span[-1]) + 1)))
                made += 1
    for tune in held[:args.negatives]:
        queries.append(Query("neg:held-out", tune, None, bool(rng.random() < 0.5)))
    made = 0
    while made < args.negatives // 2:
        a, b, c = (held[int(i)] for i in rng.choice(len(held), 3, replace=False))
        span = bar_span(b, rng, 4, 16, MIN_FRAGMENT_NOTES)
        built = None if span is None else medley(b, span, [a, c], rng)
        if built is not None:
            queries.append(Query("neg:medley", built.melody, None, bool(rng.random() < 0.5)))
            made += 1
    all_steps = np.concatenate([m.intervals() for m in index_tunes.values()])
    all_iois = np.concatenate([np.diff(m.onsets()) for m in index_tunes.values()])
    lengths = [len(m) for m in index_tunes.values()]
    base = next(iter(index_tunes.values()))
    for _ in range(args.negatives // 2):
        walk = random_walk(all_steps, all_iois[all_iois > 0], int(rng.choice(lengths)), base, rng)
        queries.append(Query("neg:random-walk", walk, None, bool(rng.random() < 0.5)))
    return queries


def rank_of(ranked: Sequence[str], relevant: str | None) -> int:
    """1-based rank of the relevant key within the top list, 0 when absent."""
    return ranked.index(relevant) + 1 if relevant in ranked else 0


def run_attune(index: MelodyIndex, queries: list[Query], candidates: int) -> float:
    """Search every query; record rank, copy score and located spans. Returns seconds spent."""
    started = time.perf_counter()
    for q in queries:
        hits = index.search(q.melody, k=TOP, candidates=candidates)
        score = max((h.score for h in hits if h.matched_notes >= MIN_NOTES), default=0.0)
        q.results["attune"] = (rank_of([h.key for h in hits], q.relevant), score)
        mine = [h for h in hits if h.key == q.relevant]
        if q.query_span is not None and q.ref_span is not None and mine:
            q.iou = (iou(mine[0].query_notes, q.query_span), iou(mine[0].ref_notes, q.ref_span))
        elif q.query_span is not None:
            q.iou = (0.0, 0.0)
    return time.perf_counter() - started


def run_baseline(name: str, method: EditDistance | TfIdf, queries: list[Query]) -> float:
    """Full-scan scores for every query; rank of the relevant work and best score."""
    started = time.perf_counter()
    for q in queries:
        scores = method.scores(q.melody)
        top = np.argsort(-scores, kind="stable")[:TOP]
        q.results[name] = (rank_of([method.keys[i] for i in top], q.relevant),
                           float(scores[top[0]]))
    return time.perf_counter() - started


# ------------------------------------------------------------------------------- metrics


def auc(pos: NDArray[np.float64], neg: NDArray[np.float64]) -> float:
    """ROC-AUC: chance a positive outscores a negative (ties count half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    both = np.concatenate((pos, neg))
    order = np.argsort(both, kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks over ties
        tie = both == value
        ranks[tie] = ranks[tie].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def calibrate(neg: NDArray[np.float64], fpr: float, confidence: float | None = None) -> float:
    """Lowest threshold (just above a negative's score) whose false-positive rate is <= ``fpr``.

    With ``confidence``, the rate bounded is the Clopper-Pearson upper bound at that confidence
    rather than the observed share, so the threshold keeps a margin for the negatives not seen.
    """
    ordered = np.sort(neg)[::-1]
    n = len(ordered)
    allowed = int(np.floor(fpr * n))
    if confidence is not None:
        allowed = -1
        while allowed + 1 < n and beta.ppf(confidence, allowed + 2, n - allowed - 1) <= fpr:
            allowed += 1
        if allowed < 0:
            return float(np.nextafter(ordered[0], np.inf)) if n else 1.0
    return float(np.nextafter(ordered[allowed], np.inf)) if n > allowed else 0.0


def fmt(x: float) -> str:
    """Three decimals, or '-' for a missing value."""
    return "-" if np.isnan(x) else f"{x:.3f}"


def report(queries: list[Query], methods: Sequence[str], speed: dict[str, float],
           facts: list[str]) -> str:
    """The plain-text tables: retrieval by mutation, copy decision, location, speed."""
    lines = [*facts, "", "Retrieval: rank of the copied work among the top 10 (MAP = MRR with one "
             "relevant work per query)", ""]
    head = f"{'':<14} {'':>4} | " + " | ".join(f"{m:<17}" for m in methods)
    sub = f"{'mutation':<14} {'n':>4} | " + " | ".join(
        f"{'MRR':>5} {'R@1':>5} {'R@10':>5}" for _ in methods)
    lines += [head, sub, "-" * len(sub)]
    positives = [q for q in queries if q.relevant is not None]
    for kind in [*MUTATIONS, "overall"]:
        group = [q for q in positives if kind in ("overall", q.kind)]
        cells = []
        for m in methods:
            ranks = np.array([q.results[m][0] for q in group])
            rr = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
            cells.append(f"{rr.mean():>5.3f} {np.mean(ranks == 1):>5.3f} "
                         f"{np.mean(ranks > 0):>5.3f}")
        lines.append(f"{kind:<14} {len(group):>4} | " + " | ".join(cells))
    mrr = {m: np.mean([1.0 / q.results[m][0] if q.results[m][0] else 0.0 for q in positives])
           for m in methods}
    missed = {m: sum(q.results[m][0] != 1 for q in positives) for m in methods}
    lines += ["", "MRR attune / baseline: " + ", ".join(
        f"{m} {mrr['attune'] / mrr[m]:.3f}x" for m in methods if m != "attune" and mrr[m] > 0)
        + f"; queries not at rank 1 (of {len(positives)}): "
        + ", ".join(f"{m} {missed[m]}" for m in methods)]
    lines += ["", f"Copy decision (score = best hit with >= {MIN_NOTES} matched notes for attune; "
              "best similarity for baselines); threshold from the calibration half: lowest score "
              f"with FPR <= {TARGET_FPR:.0%} at {CONFIDENCE:.0%} confidence (Clopper-Pearson)", ""]
    head = (f"{'method':<10} {'threshold':>9} {'TPR test':>9} {'FPR test':>9} {'AUC test':>9} "
            f"{'TPR at 1% FPR of the test ROC':>30}")
    lines += [head, "-" * len(head)]
    thresholds: dict[str, float] = {}
    tpr: dict[str, float] = {}
    negatives = [q for q in queries if q.relevant is None]
    for m in methods:
        t = calibrate(np.array([q.results[m][1] for q in negatives if q.calibration]), TARGET_FPR,
                      CONFIDENCE)
        thresholds[m] = t
        pos = np.array([q.results[m][1] for q in positives if not q.calibration])
        neg = np.array([q.results[m][1] for q in negatives if not q.calibration])
        tpr[m] = float(np.mean(pos >= t))
        oracle = float(np.mean(pos >= calibrate(neg, TARGET_FPR)))
        lines.append(f"{m:<10} {t:>9.3f} {tpr[m]:>9.3f} {np.mean(neg >= t):>9.3f} "
                     f"{auc(pos, neg):>9.3f} {oracle:>30.3f}")
    cal = np.array([q.results["attune"][1] for q in negatives if q.calibration])
    lines += ["", f"{len(cal)} calibration negatives; the attune threshold lets "
              f"{int(np.sum(cal >= thresholds['attune']))} of them pass. Test half: "
              f"{len(positives) - sum(q.calibration for q in positives)} copies, "
              f"{len(negatives) - len(cal)} negatives."]
    lines += ["", "Blocked at each method's calibrated threshold, test half, by kind (TPR for "
              "copies, FPR for negatives); last column: attune at the library's COPY_THRESHOLD "
              f"{COPY_THRESHOLD:.2f}", ""]
    head = f"{'kind':<16} {'n':>4} | " + " ".join(f"{m:>10}" for m in methods) + " | library"
    lines += [head, "-" * len(head)]
    for kind in [*MUTATIONS, "neg:held-out", "neg:medley", "neg:random-walk"]:
        group = [q for q in queries if q.kind == kind and not q.calibration]
        if group:
            rates = [np.mean([q.results[m][1] >= thresholds[m] for q in group]) for m in methods]
            lib = np.mean([q.results["attune"][1] >= COPY_THRESHOLD for q in group])
            lines.append(f"{kind:<16} {len(group):>4} | " + " ".join(f"{r:>10.3f}" for r in rates)
                         + f" | {lib:>7.3f}")
    test_frags = [q for q in positives if q.kind == "fragment" and not q.calibration
                  and q.ref_span is not None]
    buckets = ((12, 15), (16, 23), (24, 10**6))
    lines += ["", "attune on test-half fragments by copied length: " + ", ".join(
        f"{lo}-{hi if hi < 10**6 else ''} notes {np.mean(blocked):.3f} blocked (n={len(blocked)})"
        for lo, hi in buckets if (blocked := [
            q.results["attune"][1] >= thresholds["attune"] for q in test_frags
            if q.ref_span is not None and lo <= q.ref_span[1] - q.ref_span[0] <= hi]))]
    frags = [q for q in queries if q.iou is not None]
    if frags:
        qi = np.array([q.iou[0] for q in frags if q.iou is not None])
        ri = np.array([q.iou[1] for q in frags if q.iou is not None])
        lines += ["", f"Located segment of embedded fragments (n={len(frags)}; IoU of note spans, "
                  "0 when the work is not in the top 10): query side mean "
                  f"{qi.mean():.3f} (median {np.median(qi):.3f}, >=0.5: {np.mean(qi >= 0.5):.3f}); "
                  f"reference side mean {ri.mean():.3f} (median {np.median(ri):.3f}, >=0.5: "
                  f"{np.mean(ri >= 0.5):.3f})"]
    lines += ["", "Speed (one process, all queries): " + ", ".join(
        f"{m} {speed[m]:.1f} queries/s" for m in methods) + "; attune vs baselines " + ", ".join(
        f"{m} {speed['attune'] / speed[m]:.1f}x" for m in methods if m != "attune")]
    lines += ["", f"Targets: MRR >= {TARGET_MRR}: attune {mrr['attune']:.3f} "
              f"({'met' if mrr['attune'] >= TARGET_MRR else 'NOT met'}); TPR >= {TARGET_TPR} at "
              f"{TARGET_FPR:.0%} FPR: attune {tpr['attune']:.3f} on the test half at the "
              f"calibrated threshold ({'met' if tpr['attune'] >= TARGET_TPR else 'NOT met'}); "
              "TPR attune / baseline: " + ", ".join(
                  f"{m} {tpr['attune'] / tpr[m]:.2f}x" for m in methods if m != "attune"
                  and tpr[m] > 0)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the corpus, build the queries, run the three methods, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tunes", type=int, default=2000, help="indexed Essen tunes")
    ap.add_argument("--held-out", type=int, default=800, help="Essen tunes never indexed")
    ap.add_argument("--queries", type=int, default=150, help="queries per mutation")
    ap.add_argument("--negatives", type=int, default=800,
                    help="held-out tunes used as negatives (plus half as many medleys and walks)")
    ap.add_argument("--edits", type=int, default=3, help="edits per MIREX-style mutated query")
    ap.add_argument("--candidates", type=int, default=50, help="n-gram candidates to align")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    facts = [f"Machine: {machine()}"]
    print("loading scores ...", file=sys.stderr)
    melodies, load_s = load_corpus(int((args.tunes + args.held_out) * 1.25) + 20, args.seed)
    seen: set[bytes] = set()
    unique = []
    for m in melodies:
        if len(m) >= 2 and signature(m) not in seen:
            seen.add(signature(m))
            unique.append(m)
    exact = len(unique)
    unique = distinct_tunes([unique[i] for i in rng.permutation(len(unique))], FAMILY_COSINE,
                            FAMILY_EDIT, FAMILY_VERBATIM)
    if len(unique) < args.tunes + args.held_out // 2:
        sys.exit(f"melody_bench: only {len(unique)} distinct tunes loaded")
    order = rng.permutation(len(unique))
    index_tunes = {unique[i].source: unique[i] for i in order[:args.tunes]}
    held = [unique[i] for i in order[args.tunes:args.tunes + args.held_out]]
    facts.append(f"Corpus: {len(melodies)} Essen tunes loaded in {load_s:.0f} s, "
                 f"{len(melodies) - exact} exact duplicates and {exact - len(unique)} variants "
                 f"(a verbatim {FAMILY_VERBATIM + 1}-note run, cosine >= {FAMILY_COSINE} or edit "
                 f"similarity >= {FAMILY_EDIT} to a kept tune) dropped; "
                 f"{len(index_tunes)} indexed ({sum(len(m) for m in index_tunes.values())} notes), "
                 f"{len(held)} held out")
    queries = make_queries(index_tunes, held, args, rng)
    facts.append(f"Queries: {sum(q.relevant is not None for q in queries)} copies "
                 f"({args.queries} per mutation, {args.edits} edits each for the MIREX four), "
                 f"{sum(q.relevant is None for q in queries)} negatives; seed {args.seed}; "
                 f"{sum(q.calibration for q in queries)} in the calibration half")
    started = time.perf_counter()
    index = MelodyIndex.build(index_tunes)
    built_s = time.perf_counter() - started
    keys = list(index_tunes)
    tunes = list(index_tunes.values())
    speed = {}
    print("attune ...", file=sys.stderr)
    speed["attune"] = len(queries) / run_attune(index, queries, args.candidates)
    print("edit distance ...", file=sys.stderr)
    speed["edit-dist"] = len(queries) / run_baseline("edit-dist", EditDistance(keys, tunes),
                                                     queries)
    for n in TFIDF_NS:
        print(f"tf-idf n={n} ...", file=sys.stderr)
        speed[f"tf-idf-{n}"] = len(queries) / run_baseline(f"tf-idf-{n}", TfIdf(keys, tunes, n),
                                                           queries)
    facts.append(f"Index build: {built_s:.2f} s for {len(index)} tunes (n=4); "
                 f"{args.candidates} alignment candidates per query")
    print(report(queries, list(speed), speed, facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
