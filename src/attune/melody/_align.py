"""Weighted local alignment of melodies over pitch intervals and duration ratios.

The kernel behind :mod:`attune.melody.similarity`. A melody becomes a sequence of intervals, each
with the semitone step and the log2 ratio of the inter-onset intervals (IOI) of its two notes, so
transposition and tempo drop out. Alignment is Smith-Waterman with Mongeau-Sankoff-style
consolidation and fragmentation: two or three intervals of one melody may match one interval of the
other (their sum), which is exactly what an inserted, deleted or ornamental note does. One query is
aligned against many references at once: their intervals are concatenated into one row, each
dynamic-programming row is a handful of numpy operations, and the in-row gap recursion is a
segmented running maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# The scores below were tuned on a development seed of bench/melody_bench.py (seed 7), not on
# the seed it reports (1).

MAX_MERGE = 3
"""Most intervals of one melody that may match a single interval of the other."""

GAP = -1.5
"""Score of an interval left unmatched on either side."""

MERGE_COST = (0.0, 0.4, 0.8)
"""Penalty for matching 1, 2 or 3 intervals against one (consolidation / fragmentation)."""

RHYTHM_WEIGHT = 0.5
"""Penalty per octave of duration-ratio difference (capped at RHYTHM_CAP octaves)."""

RHYTHM_CAP = 1.0
"""Largest duration-ratio difference (octaves) that counts: a changed rhythm costs at most 0.5."""

_PITCH_TABLE_SIZE = 1001
_INVALID = 10_000  # interval value of a merge that does not exist (crosses a melody boundary)
_NEG = -1e9
_MAX_CELLS = 1 << 20  # dynamic-programming cells per batch (each matrix 8 MiB)


def _pitch_table() -> NDArray[np.float64]:
    """Score of two intervals by their absolute difference in semitones (0, 1, 2, more).

    Only an exact step scores positive: folk melodies move mostly by steps, so a lenient table
    lets unrelated material align at a profit and the local alignment no longer stays local.
    An interval off by one or two semitones (an enlarged or compressed step, the commonest
    variant) costs less than a real mismatch.
    """
    table = np.full(_PITCH_TABLE_SIZE, -1.5)
    table[:3] = (1.0, -0.3, -0.6)
    table[-1] = _NEG
    return table


PITCH_SCORE = _pitch_table()


@dataclass(frozen=True, slots=True)
class Features:
    """Alignment features of one melody: row m-1 describes m intervals merged, ending at each one.

    ``iv[m-1, t]`` is the semitone step from note t-m+1 to note t+1 and ``rr[m-1, t]`` the log2
    ratio of the arrival note's IOI to the (merged) departure IOI; merges that would start before
    the first note hold ``_INVALID``.
    """

    iv: NDArray[np.int64]
    rr: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.iv.shape[1])


def features(pitches: NDArray[np.int64], onsets: NDArray[np.int64],
             durations: NDArray[np.int64]) -> Features:
    """Intervals and duration ratios of a melody (at least two notes), merged 1..MAX_MERGE deep."""
    n = len(pitches)
    if n < 2:
        raise ValueError(f"notes: need at least 2 notes to have an interval, got {n}")
    ioi = np.empty(n, dtype=np.float64)
    ioi[:-1] = np.diff(onsets)
    ioi[-1] = durations[-1]
    ioi = np.maximum(ioi, 1.0)  # simultaneous onsets: count as the shortest tick
    lioi = np.log2(ioi)
    cum = np.concatenate(([0.0], np.cumsum(ioi)))
    iv = np.full((MAX_MERGE, n - 1), _INVALID, dtype=np.int64)
    rr = np.zeros((MAX_MERGE, n - 1), dtype=np.float64)
    for m in range(1, MAX_MERGE + 1):
        if n - 1 < m:
            break
        start = np.arange(n - m)  # first note of the merged step; arrival is start + m
        iv[m - 1, m - 1:] = pitches[start + m] - pitches[start]
        rr[m - 1, m - 1:] = lioi[start + m] - np.log2(cum[start + m] - cum[start])
    return Features(iv, rr)


@dataclass(frozen=True, slots=True)
class Alignment:
    """Best local alignment of a query against one reference."""

    score: float                 # sum of operation scores; never more than either side's intervals
    pairs: NDArray[np.int64]     # (matched notes, 2): aligned (query note, reference note) indices
    running: NDArray[np.float64]  # score accumulated up to each pair (0 at the first, then rising)


def _scores(q_iv: NDArray[np.int64], q_rr: NDArray[np.float64], r_iv: NDArray[np.int64],
            r_rr: NDArray[np.float64], cost: float) -> NDArray[np.float64]:
    """Operation scores for every (query row, reference column) pair."""
    diff = np.minimum(np.abs(q_iv[:, None] - r_iv[None, :]), _PITCH_TABLE_SIZE - 1)
    rhythm = np.minimum(np.abs(q_rr[:, None] - r_rr[None, :]), RHYTHM_CAP)
    out: NDArray[np.float64] = PITCH_SCORE[diff] - RHYTHM_WEIGHT * rhythm - cost
    return out


def align_many(query: Features, refs: Sequence[Features]) -> list[Alignment | None]:
    """Best local alignment of ``query`` against each reference (None where nothing scores > 0).

    References go through in batches of at most about ``_MAX_CELLS`` matrix cells, so a long
    query against long works stays within tens of megabytes.
    """
    out: list[Alignment | None] = []
    batch: list[Features] = []
    cells = 0
    for ref in refs:
        width = (len(query) + 1) * (len(ref) + MAX_MERGE)
        if batch and cells + width > _MAX_CELLS:
            out += _align_batch(query, batch)
            batch, cells = [], 0
        batch.append(ref)
        cells += width
    if batch:
        out += _align_batch(query, batch)
    return out


def _align_batch(query: Features, refs: Sequence[Features]) -> list[Alignment | None]:
    """Align ``query`` against every reference at once (their columns side by side)."""
    nq = len(query)
    pad = MAX_MERGE  # separator columns before each reference: merges never cross them
    widths = np.array([len(r) + pad for r in refs])
    starts = np.concatenate(([0], np.cumsum(widths)[:-1]))
    total = int(widths.sum())
    sep_iv = np.full((MAX_MERGE, pad), _INVALID, dtype=np.int64)
    sep_rr = np.zeros((MAX_MERGE, pad))
    r_iv = np.concatenate([a for r in refs for a in (sep_iv, r.iv)], axis=1)
    r_rr = np.concatenate([a for r in refs for a in (sep_rr, r.rr)], axis=1)
    # ops[(a, b)]: a query intervals against b reference intervals, scored at the last of each
    ops: dict[tuple[int, int], NDArray[np.float64]] = {}
    for m in range(1, MAX_MERGE + 1):
        ops[(m, 1)] = _scores(query.iv[m - 1], query.rr[m - 1], r_iv[0], r_rr[0], MERGE_COST[m - 1])
        if m > 1:
            ops[(1, m)] = _scores(query.iv[0], query.rr[0], r_iv[m - 1], r_rr[m - 1],
                                  MERGE_COST[m - 1])
    # Each reference's offset exceeds any score (at most nq), so the running maximum of the gap
    # recursion never carries a score from one reference into the next.
    offset = np.repeat(np.arange(len(refs), dtype=np.float64) * 2.0 * (nq + 1), widths)
    # column c + 1 of h holds reference column c; column 0 is a permanent zero
    ramp = np.arange(total + 1, dtype=np.float64) * -GAP + np.concatenate(([0.0], offset))
    h = np.zeros((nq + 1, total + 1))
    row = np.empty(total + 1)
    for i in range(1, nq + 1):
        prev = h[i - 1]
        row.fill(0.0)
        np.maximum(row, prev + GAP, out=row)
        for (a, b), score in ops.items():
            if a <= i:
                np.maximum(row[b:], h[i - a, :total + 1 - b] + score[i - 1, b - 1:], out=row[b:])
        row += ramp
        np.maximum.accumulate(row, out=row)
        h[i] = row - ramp
    return [_trace(h, ops, int(s), int(w), pad) for s, w in zip(starts, widths, strict=True)]


def _trace(h: NDArray[np.float64], ops: dict[tuple[int, int], NDArray[np.float64]],
           start: int, width: int, pad: int) -> Alignment | None:
    """Walk back from the best cell of one reference's columns to where its score began."""
    block = h[:, start + 1:start + width + 1]
    flat = int(np.argmax(block))
    i, j = divmod(flat, width)
    best = float(block[i, j])
    if best <= 1e-9:
        return None
    j += start + 1
    pairs: list[tuple[int, int]] = []
    while h[i, j] > 1e-9:
        here = h[i, j]
        for (a, b), score in ops.items():
            if a <= i and b <= j and abs(h[i - a, j - b] + score[i - 1, j - 1] - here) < 1e-6:
                pairs.append((i, j))
                i, j = i - a, j - b
                break
        else:  # a gap: query interval i-1 or reference column j-1 unmatched
            if abs(h[i - 1, j] + GAP - here) < 1e-6:
                i -= 1
            else:
                j -= 1
    pairs.append((i, j))
    first = start + 1 + pad  # h column of the reference's first interval
    # h row i ends at query note i; h column c ends at reference note c - first + 1
    cells = np.array(pairs[::-1], dtype=np.int64)
    running = np.maximum(h[cells[:, 0], cells[:, 1]], 0.0)
    cells[:, 1] -= first - 1
    return Alignment(score=best, pairs=cells, running=running)
