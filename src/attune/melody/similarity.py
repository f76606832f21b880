"""Melodic plagiarism check: find which catalog works a melody copies, and where.

Transposition and tempo drop out because everything is read as pitch intervals and ratios of
inter-onset intervals. :class:`MelodyIndex` retrieves candidates with IDF-weighted interval n-grams
(exact steps plus a coarse contour, so an altered interval still leaves grams to find) from a sparse
postings matrix, then re-ranks them by weighted local alignment (:mod:`attune.melody._align`), which
tolerates inserted, deleted, altered and ornamental notes and returns the copied span in both
melodies. :func:`check_copy` blocks a query when a work explains at least ``min_notes`` notes of it
at or above :data:`COPY_THRESHOLD`. Measured in ``bench/melody_bench.py`` and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy import sparse

from attune.melody._align import Alignment, Features, align_many, features
from attune.melody.notes import Melody

COPY_THRESHOLD = 0.80
"""Hit score at which :func:`check_copy` blocks.

Calibrated by ``bench/melody_bench.py`` (seed 1, 2,000 indexed Essen tunes): the lowest score at
which the false-positive rate on the calibration half of the negatives (held-out tunes, medleys of
them, random walks: 759 in all) stays <= 1% at 95% confidence (Clopper-Pearson), i.e. above all
but 2 of them (0.795), rounded up. On the test half it blocked 0.2% of negatives, 98.7% of copies.
"""

FULL_SPAN = 16
"""Intervals a match must cover to reach score 1 (fewer only when a whole melody is shorter).

Length is evidence: unrelated folk tunes share exact 8-10-note cells, rarely 16 notes.
"""

_FORMAT = "attune-melody-index/1"
_MAX_N = 8
_MAX_PAIRS = 400  # aligned pairs considered as stretch ends (evenly spaced beyond this)
_CONTOUR_BUCKETS = np.array([0, 1, 1, 2, 2, 3, 3, 3])  # |step| 0, 1-2, 3-4, 5-7; 8 and more -> 4


@dataclass(frozen=True, slots=True)
class Hit:
    """One catalog work a query resembles, with the evidence: which notes and bars on each side.

    The spans describe the best stretch of the local alignment of the query with the work.
    ``score`` is what that stretch accumulates divided by the longer of its shorter side (in
    intervals) and FULL_SPAN (or the whole shorter melody, when that is shorter): 1.0 is an exact
    copy of at least FULL_SPAN + 1 notes or of a whole melody, and each altered, inserted or
    deleted note, and each rhythm change, inside it costs a fraction.
    """

    key: str                        # the catalog key the melody was added under
    score: float                    # alignment similarity in [0, 1]
    matched_notes: int              # notes aligned one to one (ornaments and insertions excluded)
    query_notes: tuple[int, int]    # [start, end) note indices of the segment in the query
    ref_notes: tuple[int, int]      # [start, end) note indices of the segment in the work
    query_bars: tuple[int, int]     # first and last bar of the segment in the query
    ref_bars: tuple[int, int]       # first and last bar of the segment in the work
    transposition: int              # semitones query - work (the commonest over aligned notes)
    tempo_ratio: float              # query / work duration between the first and last aligned note
    title: str = ""                 # the work's title, as indexed


@dataclass(frozen=True, slots=True)
class CopyVerdict:
    """Whether a query is blocked as a copy, and the catalog hits that decided it."""

    blocked: bool
    threshold: float
    hits: tuple[Hit, ...]

    def reason(self) -> str:
        """One sentence for a person: the best copied work and bars, or that none came close."""
        if not self.hits:
            return f"no catalog work above {self.threshold:.2f}"
        best = self.hits[0]
        title = f" ({best.title!r})" if best.title else ""
        details = [f"score {best.score:.2f}"]
        if best.transposition:
            details.append(f"transposed {best.transposition:+d}")
        if abs(best.tempo_ratio - 1.0) > 0.05:
            details.append(f"tempo x{best.tempo_ratio:.2f}")
        text = (f"copies bars {_bars(best.ref_bars)} of work {best.key}{title} at bars "
                f"{_bars(best.query_bars)} ({', '.join(details)})")
        if len(self.hits) > 1:
            text += f"; {len(self.hits) - 1} more work(s) above {self.threshold:.2f}"
        return text


def _bars(span: tuple[int, int]) -> str:
    """Bar range as text: '3-10', or '4' for a single bar."""
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the index keeps of one catalog melody."""

    pitches: NDArray[np.int64]
    onsets: NDArray[np.int64]
    durations: NDArray[np.int64]
    bars: NDArray[np.int64]
    title: str
    features: Features
    grams: NDArray[np.int64]


def _entry(pitches: NDArray[np.int64], onsets: NDArray[np.int64], durations: NDArray[np.int64],
           bars: NDArray[np.int64], title: str, n: int) -> _Entry:
    """Features and n-gram codes of one melody given as arrays."""
    feats = features(pitches, onsets, durations)
    return _Entry(pitches, onsets, durations, bars, title, feats, _grams(np.diff(pitches), n))


def _from_melody(melody: Melody, n: int, what: str) -> _Entry:
    """Entry of a Melody, refusing one too short to have an interval."""
    if not isinstance(melody, Melody):
        raise TypeError(f"{what}: expected a Melody, got {type(melody).__name__}")
    if len(melody) < 2:
        raise ValueError(f"{what}: the melody has {len(melody)} note(s); at least 2 are needed "
                         "to compare intervals")
    return _entry(melody.pitches(), melody.onsets(), melody.durations(), melody.bars(),
                  melody.title, n)


def _grams(steps: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Unique codes of the exact interval n-grams and coarse-contour (n+1)-grams of a melody."""
    codes = []
    exact = np.clip(steps, -31, 32) + 31  # 6 bits a step
    coarse = np.sign(steps) * np.where(np.abs(steps) >= 8, 4, _CONTOUR_BUCKETS[
        np.minimum(np.abs(steps), 7)]) + 4  # 4 bits a step
    for family, (symbols, width, bits) in enumerate(((exact, n, 6), (coarse, n + 1, 4))):
        if len(symbols) >= width:
            weights = np.left_shift(np.int64(1), bits * np.arange(width, dtype=np.int64))
            windows = sliding_window_view(symbols, width)
            codes.append((windows @ weights) | np.int64(family) << 56)
    if not codes:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(codes))


class MelodyIndex:
    """Catalog melodies by key, searchable for copies: n-gram candidates, alignment re-ranking."""

    def __init__(self, *, n: int = 4) -> None:
        """An empty index over interval n-grams of length ``n`` (2-8)."""
        if not 2 <= n <= _MAX_N:
            raise ValueError(f"n: {n} is outside 2-{_MAX_N} intervals per n-gram")
        self.n = n
        self._entries: dict[str, _Entry] = {}
        self._keys: list[str] = []
        self._postings: sparse.csr_matrix | None = None
        self._vocab = np.zeros(0, dtype=np.int64)
        self._idf = np.zeros(0)

    @classmethod
    def build(cls, melodies: Mapping[str, Melody], *, n: int = 4) -> MelodyIndex:
        """An index of every melody in ``melodies``, under its key."""
        index = cls(n=n)
        for key, melody in melodies.items():
            index.add(key, melody)
        return index

    def add(self, key: str, melody: Melody) -> None:
        """Index ``melody`` under ``key`` (a new key; remove() the old one to replace it)."""
        self._insert(key, _from_melody(melody, self.n, "melody"))

    def _insert(self, key: str, entry: _Entry) -> None:
        """Store an entry under a new, non-empty string key."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"key: must be a non-empty string, got {key!r}")
        if key in self._entries:
            raise ValueError(f"key: {key!r} is already in the index; remove() it first")
        self._entries[key] = entry
        self._postings = None

    def remove(self, key: str) -> None:
        """Forget the melody under ``key`` (KeyError when there is none)."""
        if key not in self._entries:
            raise KeyError(f"key: {key!r} is not in the index")
        del self._entries[key]
        self._postings = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _ensure_postings(self) -> sparse.csr_matrix:
        """Binary work-by-gram matrix and gram IDF, rebuilt after the catalog changed."""
        if self._postings is not None:
            return self._postings
        self._keys = list(self._entries)
        grams = [self._entries[k].grams for k in self._keys]
        flat = np.concatenate(grams) if grams else np.zeros(0, dtype=np.int64)
        self._vocab, cols, df = np.unique(flat, return_inverse=True, return_counts=True)
        indptr = np.concatenate(([0], np.cumsum([len(g) for g in grams]))).astype(np.int64)
        self._postings = sparse.csr_matrix(
            (np.ones(len(flat)), cols.astype(np.int64), indptr),
            shape=(len(self._keys), len(self._vocab)))
        self._idf = np.log1p(len(self._keys) / np.maximum(df, 1))
        return self._postings

    def _candidates(self, grams: NDArray[np.int64], count: int) -> list[int]:
        """Rows of the works sharing the most IDF weight of n-grams with the query, best first.

        A query too short to have an n-gram is aligned against every work instead.
        """
        postings = self._ensure_postings()
        if len(self._keys) <= count or not len(grams) or not len(self._vocab):
            return list(range(len(self._keys)))  # few works, or too short a query to retrieve by
        pos = np.minimum(np.searchsorted(self._vocab, grams), len(self._vocab) - 1)
        pos = pos[self._vocab[pos] == grams]
        weights = np.zeros(len(self._vocab))
        weights[pos] = self._idf[pos]
        scores = postings @ weights
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[scores[top] > 0]
        return [int(r) for r in top[np.argsort(-scores[top], kind="stable")]]

    def search(self, query: Melody, *, k: int = 10, candidates: int = 50) -> list[Hit]:
        """The ``k`` catalog works that explain most of the query, best first, with evidence.

        Hits are ordered by raw alignment score (how many query intervals the work accounts for),
        then by :attr:`Hit.score`; works with no positive local alignment are left out.
        """
        if k < 1:
            raise ValueError(f"k: must be at least 1, got {k}")
        if candidates < k:
            raise ValueError(f"candidates: {candidates} is fewer than k={k}")
        q = _from_melody(query, self.n, "query")
        if not self._entries:
            return []
        rows = self._candidates(q.grams, candidates)
        keys = [self._keys[r] for r in rows]
        refs = [self._entries[key] for key in keys]
        found = [(key, ref, al) for key, ref, al in
                 zip(keys, refs, align_many(q.features, [r.features for r in refs]), strict=True)
                 if al is not None]
        hits = [(al.score, _hit(key, q, ref, al)) for key, ref, al in found]
        hits.sort(key=lambda h: (-h[0], -h[1].score, h[1].key))
        return [hit for _, hit in hits[:k]]

    def save(self, path: Path) -> None:
        """Write the index as one .npz of plain arrays (no pickle); load() rebuilds the postings."""
        keys = list(self._entries)
        entries = [self._entries[k] for k in keys]

        def cat(name: str) -> NDArray[np.int64]:
            arrays = [getattr(e, name) for e in entries]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

        meta = {"format": _FORMAT, "n": self.n, "keys": keys, "titles": [e.title for e in entries]}
        with Path(path).open("wb") as fh:
            np.savez_compressed(
                fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                sizes=np.array([len(e.pitches) for e in entries], dtype=np.int64),
                pitches=cat("pitches"), onsets=cat("onsets"), durations=cat("durations"),
                bars=cat("bars"))

    @classmethod
    def load(cls, path: Path) -> MelodyIndex:
        """Read an index written by save() (ValueError for any other file)."""
        names = ("meta", "sizes", "pitches", "onsets", "durations", "bars")
        data = np.load(Path(path), allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a melody index (an .npz with {', '.join(names)})")
        with data:
            if set(names) - set(data.files):
                raise ValueError(f"{path}: not a melody index (an .npz with {', '.join(names)})")
            meta = json.loads(data["meta"].tobytes().decode())
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: not a melody index ({meta.get('format')!r})")
            arrays = {name: data[name].astype(np.int64) for name in names[1:]}
        index = cls(n=int(meta["n"]))
        bounds = np.concatenate(([0], np.cumsum(arrays["sizes"])))
        for i, (key, title) in enumerate(zip(meta["keys"], meta["titles"], strict=True)):
            part = slice(int(bounds[i]), int(bounds[i + 1]))
            index._insert(key, _entry(arrays["pitches"][part], arrays["onsets"][part],
                                      arrays["durations"][part], arrays["bars"][part], title,
                                      index.n))
        return index


def _stretch(al: Alignment, floor: int) -> tuple[int, int, float]:
    """The best-scoring stretch of an alignment: first and last pair, and its normalised score.

    A stretch scores what it accumulates over the longer of its shorter side (in intervals) and
    ``floor``; of equally scoring stretches the one accumulating most wins. So a patchwork that
    re-orders or cuts a work's phrases, which one alignment can follow only through costly gaps,
    is judged by its verbatim runs, and an edited copy by its best passage.
    """
    pick = np.arange(len(al.pairs))
    if len(pick) > _MAX_PAIRS:
        pick = np.unique(np.linspace(0, len(pick) - 1, _MAX_PAIRS).astype(np.int64))
    q, r, run = al.pairs[pick, 0], al.pairs[pick, 1], al.running[pick]
    gained = run[None, :] - run[:, None]
    span = np.maximum(np.minimum(q[None, :] - q[:, None], r[None, :] - r[:, None]), floor)
    density = np.where(pick[None, :] > pick[:, None], gained / np.maximum(span, 1), -np.inf)
    near = density >= density.max() - 1e-9
    a, b = np.unravel_index(int(np.argmax(np.where(near, gained, -np.inf))), density.shape)
    return int(pick[a]), int(pick[b]), float(min(density[a, b], 1.0))


def _hit(key: str, query: _Entry, ref: _Entry, al: Alignment) -> Hit:
    """Evidence of one alignment: note and bar spans, transposition, tempo, normalised score."""
    first, last, score = _stretch(al, min(len(query.pitches) - 1, len(ref.pitches) - 1,
                                          FULL_SPAN))
    pairs = al.pairs[first:last + 1]
    (q0, r0), (q1, r1) = pairs[0], pairs[-1] + 1
    shifts, counts = np.unique(query.pitches[pairs[:, 0]] - ref.pitches[pairs[:, 1]],
                               return_counts=True)
    best = shifts[counts == counts.max()]
    q_time = float(query.onsets[pairs[-1, 0]] - query.onsets[pairs[0, 0]])
    r_time = float(ref.onsets[pairs[-1, 1]] - ref.onsets[pairs[0, 1]])
    return Hit(key=key, score=score, matched_notes=len(pairs),
               query_notes=(int(q0), int(q1)), ref_notes=(int(r0), int(r1)),
               query_bars=(int(query.bars[q0]), int(query.bars[q1 - 1])),
               ref_bars=(int(ref.bars[r0]), int(ref.bars[r1 - 1])),
               transposition=int(best[np.argmin(np.abs(best))]),
               tempo_ratio=q_time / r_time if q_time > 0 and r_time > 0 else 1.0,
               title=ref.title)


def check_copy(query: Melody, index: MelodyIndex, *, threshold: float = COPY_THRESHOLD,
               min_notes: int = 12) -> CopyVerdict:
    """Block ``query`` when a work explains >= ``min_notes`` of its notes at >= ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: {threshold} is outside (0, 1]")
    if min_notes < 2:
        raise ValueError(f"min_notes: {min_notes} must be at least 2")
    hits = tuple(h for h in index.search(query) if h.score >= threshold
                 and h.matched_notes >= min_notes)
    return CopyVerdict(blocked=bool(hits), threshold=threshold, hits=hits)
