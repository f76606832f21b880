"""Find indexed recordings inside a query: vote on time offsets, fit a line, score it.

Every query triplet probes the index; each entry found proposes a recording, a time factor
(reference span / query span), a pitch shift and hence an offset. Votes are counted per recording,
per 10 s query window and per 16-frame offset bin. The best cells are refined by fitting
``t_ref = time_factor * t_query + offset`` to their entries and keeping those within 3 frames and
within a semitone of the median pitch shift. A hit's score is the number of query triplets that
agree; its confidence is the probability that no cell of a random (unrelated) index would reach
that score by chance, from a Poisson model of coincidental agreement.

When the index holds the recording's peaks, a fit is then *verified*: every query peak is mapped
through the fitted line and pitch shift and counted as confirmed if the recording has a peak within
VERIFY_FRAMES and VERIFY_SEMITONES. The same count at deliberately wrong offsets gives the chance
rate; the confidence comes from the Poisson tail of the confirmed count under that rate. Votes only
propose alignments; the whole constellation decides, which separates true matches (even through a
heavy room reverb) from musical coincidences that share a few triplets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from attune.audio import decode
from attune.identify import landmarks as fp
from attune.identify.index import Index

WINDOW = 640  # query window for voting, frames (10.24 s); windows overlap by half
BIN = 16  # offset bin, frames (256 ms)
INLIER_FRAMES = 3.0  # a fitted entry lies within this many frames of the line
INLIER_SEMITONES = 1.0  # ... and within this many semitones of the median pitch shift
PITCH_CONSISTENT_FRACTION = 2 * INLIER_SEMITONES / (2 * fp.MAX_PITCH_SHIFT + 1.0)
MAX_CELLS = 24  # cells refined per query
RELATIVE_VOTES = 0.05  # ... and this fraction of the best cell's votes
MIN_VOTES = 4  # a cell needs this many votes to be refined (no fewer than VERIFY_VOTES)
MIN_SCORE = 8  # a hit needs this many agreeing triplets ...
MIN_CONFIDENCE = 0.5  # ... and this confidence
MAX_QUERY_SECONDS = 3600.0
VERIFY_VOTES = 4  # fits with this many agreeing triplets are verified against the peaks
VERIFY_FRAMES = 2.0  # a mapped query peak is confirmed by a reference peak within this many frames
VERIFY_SEMITONES = 0.5  # ... and semitones
NULL_SHIFTS = np.array([20, 33, 47, 61, 75, 89, 103, 117], dtype=np.float64)  # frames, +-
VERIFY_TRIALS = 1e8  # chance alignments a verified confidence allows for (calibrated)
MIN_CONFIRMED = 6  # a verified hit needs this many confirmed query moments
VOTED_SCORE = 10  # fits with this many votes need only a weaker confirmation ...
VOTED_TRIALS = 1e3  # ... the verified confidence computed with this factor
SURE_SCORE = 24  # fits with this many votes pass on the vote confidence without verification
# Index entries one lookup reads at most, per second of query (and for no less than 2 s): the
# rarest keys are read first and the commonest skipped. Reached only on large indexes: a 10 s
# query (anchors spanning ~9 s) reads ~6,000 entries of a 2 h catalog and ~3 million of 1,000 h.
# There it bounds the work of a query that matches nothing, at the price of the faintest matches;
# the second look, which reverberant copies need, gets the larger share (docs/IDENTIFY.md).
LOOKUP_BUDGET = 8_000
DENSE_BUDGET = 48_000
EARLY_CONFIDENCE = 0.999  # the first pass ends the search with hits this sure ...
EARLY_COVERAGE = 0.5  # ... covering this fraction of the query
DENSE_PEAKS = 30  # a query nothing matched is looked at again with this many peaks per window ...
DENSE_PARTNERS = 7  # ... each paired with this many partners (21 triplets per anchor, not 6) ...
DENSE_CONFIDENCE = 0.99  # ... its hits held to this confidence (the second look doubles the
# chances of a coincidence) and only the triplets' own keys looked up, to bound its cost ...
DENSE_MIN_SECONDS = 4.0  # ... and its hits must match this long (or 40% of a shorter query)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Hit(NamedTuple):
    """A recording found in the query.

    Attributes
    ----------
    recording_id : the indexed recording.
    label : its label in the index (a file name or title).
    query_start, query_end : where the match lies in the query, seconds.
    reference_start, reference_end : where the same audio lies in the recording, seconds.
    duration : matched duration in the query, seconds.
    time_factor : reference seconds per query second (1.10: the query runs 10% fast).
    pitch_shift : semitones the query is shifted relative to the recording.
    score : query triplets that agree with the alignment.
    confidence : probability that the hit is not a coincidence (see the module docstring).
    """

    recording_id: int
    label: str
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    duration: float
    time_factor: float
    pitch_shift: float
    score: int
    confidence: float

    def as_dict(self) -> dict[str, float | int | str]:
        """The hit as JSON-ready values, times rounded to milliseconds."""
        d: dict[str, float | int | str] = {}
        for name, value in self._asdict().items():
            d[name] = round(value, 4) if isinstance(value, float) else value
        return d


class _Votes(NamedTuple):
    """Index candidates joined with the query triplets that found them."""

    rid: NDArray[np.uint32]
    query_triplet: I64
    t_query: F64
    span_query: F64
    t_ref: F64
    scale: F64
    shift: F64


def _candidates(index: Index, tri: fp.Triplets, keys: fp.KeyArray, which: I64,
                budget: int) -> _Votes:
    """Look up probe keys (at most ``budget`` entries, rarest keys first) and keep entries with a
    plausible time factor and pitch shift.

    In real indexes nearly every entry is plausible (the key already holds the anchor's pitch
    band and span bin): about 97% of the entries read pass, so no cheaper pre-test pays for itself.
    """
    found = index.lookup(keys, budget=budget)
    qi = which[found.probe]
    v = found.values
    t_ref, pitch_ref, span_ref = fp.unpack_values(v, keys, found.probe)
    span_q64 = tri.span[qi].astype(np.float64)
    scale = span_ref / span_q64
    shift = pitch_ref - tri.pitch[qi]
    widest = fp.MAX_LOG_TIME + 0.15
    ok = ((scale >= math.exp(-widest)) & (scale <= math.exp(widest))
          & (np.abs(shift) <= fp.MAX_PITCH_SHIFT + 0.5))
    return _Votes(found.rids[ok], qi[ok], tri.frame[qi[ok]].astype(np.float64),
                  span_q64[ok], t_ref[ok], scale[ok], shift[ok])


class _Windows(NamedTuple):
    """The query's voting windows: WINDOW frames each, overlapping by half, the first starting
    at ``origin`` and the last numbered ``last``. A query shorter than a window has one,
    centred on it, so that every vote is projected at most half the query away."""

    origin: float
    last: int

    @classmethod
    def of(cls, tri: fp.Triplets) -> _Windows:
        """The windows that cover the query's anchors."""
        end = float(tri.frame.max()) if len(tri.frame) else 0.0
        if end < WINDOW:
            return cls(end / 2 - WINDOW // 2, 0)
        return cls(0.0, math.ceil((end + 1 - WINDOW) / (WINDOW // 2)))

    def centre(self, w: I64) -> F64:
        """The query frame at the centre of window(s) ``w``."""
        centre: F64 = self.origin + (w * (WINDOW // 2) + WINDOW // 2).astype(np.float64)
        return centre


class _Fit(NamedTuple):
    """One fitted alignment of a recording in the query."""

    rid: int
    members: I64  # indices into _Votes of the agreeing entries
    slope: float
    offset: float
    shift: float
    score: int
    rivals: int  # candidates of this recording and window, for the chance model


def _slope(tq: F64, tr: F64, scale: F64) -> float:
    """Time factor of a cell: Theil-Sen over entries far enough apart in the query, else the
    median of the triplets' own span ratios (which timing jitter, e.g. from reverb, makes noisy)."""
    if len(tq) > 1 and np.ptp(tq) >= 2 * fp.MAX_GAP:
        if len(tq) > 160:  # an even sample in query time: enough pairs for a median
            keep = np.argsort(tq, kind="stable")[np.linspace(0, len(tq) - 1, 160).astype(np.int64)]
            tq, tr = tq[keep], tr[keep]
        i, j = np.triu_indices(len(tq), 1)
        dq = tq[j] - tq[i]
        far = np.abs(dq) >= fp.MAX_GAP
        pair = (tr[j] - tr[i])[far] / dq[far]
        pair = pair[np.abs(np.log(np.maximum(pair, 1e-3))) <= fp.MAX_LOG_TIME + 0.05]
        if len(pair) >= 3:
            return float(np.median(pair))
    return float(np.median(scale))


def _fit(v: _Votes, members: I64) -> tuple[I64, float, float, float]:
    """Fit ``t_ref = slope * t_query + offset`` robustly; return inliers, slope, offset, shift."""
    tq, tr = v.t_query[members], v.t_ref[members]
    slope = float(np.clip(_slope(tq, tr, v.scale[members]), math.exp(-fp.MAX_LOG_TIME),
                          math.exp(fp.MAX_LOG_TIME)))
    offset = float(np.median(tr - slope * tq))
    inl = np.abs(tr - slope * tq - offset) <= 2 * INLIER_FRAMES
    for _ in range(2):
        if inl.sum() >= 4 and np.ptp(tq[inl]) > 4 * fp.MAX_GAP:
            slope, offset = (float(c) for c in np.polyfit(tq[inl], tr[inl], 1))
        else:
            offset = float(np.median(tr[inl] - slope * tq[inl])) if inl.any() else offset
        inl = np.abs(tr - slope * tq - offset) <= INLIER_FRAMES
    shift = float(np.median(v.shift[members][inl])) if inl.any() else 0.0
    inl &= np.abs(v.shift[members] - shift) <= INLIER_SEMITONES
    return members[inl], slope, offset, shift


def _cells(v: _Votes, win: _Windows) -> tuple[I64, I64]:
    """Vote: each candidate in the offset bins of the (at most two) windows holding it; return
    cell keys and candidates."""
    w0 = np.floor((v.t_query - win.origin) / (WINDOW // 2)).astype(np.int64)
    scale = np.clip(v.scale, math.exp(-fp.MAX_LOG_TIME), math.exp(fp.MAX_LOG_TIME))
    keys, owners = [], []
    for w in (w0, w0 - 1):
        held = np.flatnonzero((w >= 0) & (w <= win.last))
        w = w[held]
        centre = win.centre(w)
        b = np.floor((v.t_ref[held] - scale[held] * (v.t_query[held] - centre)) / BIN)
        b = np.clip(b.astype(np.int64) + 2**12, 0, 2**17 - 1)
        keys.append((v.rid[held].astype(np.int64) << 31) | (w << 17) | b)
        owners.append(held)
    return np.concatenate(keys), np.concatenate(owners)


_FIBONACCI = np.uint64(0x9E3779B97F4A7C15).view(np.int64)  # 2^64 / golden ratio, as int64
_MURMUR = np.uint64(0xC2B2AE3D27D4EB4F).view(np.int64)  # another odd multiplier (MurmurHash3)


def _hashed(x: I64, bits: int, multiplier: np.int64 = _FIBONACCI) -> I64:
    """Multiplicative hash of int64 keys into [0, 2**bits): the top bits of a wrapping product."""
    slot: I64 = ((x * multiplier) >> (64 - bits)) & ((1 << bits) - 1)
    return slot


def _crowded(cell: I64, multiplier: np.int64 = _FIBONACCI, spare_bits: int = 1
             ) -> NDArray[np.bool_]:
    """Votes that may belong to a cell pair with MIN_VOTES votes, found in linear time.

    Votes are counted in groups of four offset bins, in a table where a recording's window is
    hashed to a slot and its groups follow in order; a vote is kept when its group and the two
    next to it hold MIN_VOTES votes. Every vote of a cell pair (b, b+1) that reaches MIN_VOTES,
    and of bin b-1, is kept (collisions in the table only keep more), so the cells refined
    below and their members are exactly those a full count would give, for a fraction of the
    sorting: on a large index, chance votes are mostly alone in their cells. The table has
    2**spare_bits slots per vote (rounded up); a second count with another hash, over the votes
    the first kept, drops most of those kept by collisions.
    """
    bits = int(np.clip(math.ceil(math.log2(len(cell))) + spare_bits, 10, 23))
    slot = (_hashed(cell >> 17, bits, multiplier) + ((cell & (2**17 - 1)) >> 2)) & ((1 << bits) - 1)
    counts = np.bincount(slot, minlength=1 << bits).astype(np.int32)
    near = counts.copy()
    near[1:] += counts[:-1]
    near[:-1] += counts[1:]
    near[0] += counts[-1]  # the table wraps around
    near[-1] += counts[0]
    crowded: NDArray[np.bool_] = near[slot] >= MIN_VOTES
    return crowded


def _window_votes(cell: I64, windows: I64) -> dict[int, int]:
    """Votes per (recording, window) of ``cell`` for the given windows, in one linear pass: a
    hashed mark table picks the votes that may be theirs, and only those are counted exactly."""
    marked = np.zeros(1 << 16, dtype=bool)
    marked[_hashed(windows, 16)] = True
    of = cell >> 17
    maybe = of[marked[_hashed(of, 16)]]
    counted = dict(zip(*np.unique(maybe, return_counts=True), strict=True))
    return {int(w): int(counted.get(w, 0)) for w in windows}


def _refine(v: _Votes, win: _Windows) -> list[_Fit]:
    """Fit the best-voted cells."""
    if len(v.rid) == 0:
        return []
    cell, owner = _cells(v, win)
    keep = np.flatnonzero(_crowded(cell, spare_bits=0))  # a small table: fast, loose
    keep = keep[_crowded(cell[keep], _MURMUR)] if len(keep) else keep
    if not len(keep):
        return []
    all_cells, cell, owner = cell, cell[keep], owner[keep]
    order = np.argsort(cell)  # one sort: cells and their counts come from the sorted keys
    sorted_cell = cell[order]
    start = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]])
    uniq, counts = sorted_cell[start], np.diff(np.r_[start, len(cell)])
    with_next = np.r_[uniq[1:] == uniq[:-1] + 1, False]  # the next offset bin has votes too
    paired = counts + np.where(with_next, np.r_[counts[1:], 0], 0)
    strong = np.flatnonzero(paired >= MIN_VOTES)
    best = strong[np.argsort(-paired[strong], kind="stable")[: MAX_CELLS * 4]]
    # cells far weaker than the best one are chance (a second recording mixed in still has a
    # sizeable share of the votes): skipping them saves most of the fitting on a large index
    floor = max(MIN_VOTES, RELATIVE_VOTES * float(paired[best[0]])) if len(best) else MIN_VOTES
    best = best[paired[best] >= floor]
    rivals_in = _window_votes(all_cells, uniq[best] >> 17)
    fits: list[_Fit] = []
    extra: dict[int, tuple[list[I64], int]] = {}  # fit -> members and rivals of cells it predicts
    seen: set[int] = set()
    for i in best:
        key = int(uniq[i])
        if key in seen or (key + 1) in seen or (key - 1) in seen:
            continue
        seen.add(key)
        lo = np.searchsorted(sorted_cell, key - 1)
        hi = np.searchsorted(sorted_cell, key + 2)
        members = np.unique(owner[order[lo:hi]])
        rivals = rivals_in[key >> 17]
        host = _predicting(fits, key, win)
        if host is not None:  # the other window of a match already fitted: refit once, below
            more, more_rivals = extra.get(host, ([], 0))
            extra[host] = ([*more, members], more_rivals + rivals)
            continue
        inliers, slope, offset, shift = _fit(v, members)
        score = len(np.unique(v.query_triplet[inliers]))
        if score == 0:
            continue
        fits.append(_Fit(key >> 31, inliers, slope, offset, shift, score, rivals))
        if len(fits) >= MAX_CELLS:
            break
    for j, (more, more_rivals) in extra.items():
        f = fits[j]
        inliers, slope, offset, shift = _fit(v, np.unique(np.concatenate([f.members, *more])))
        score = len(np.unique(v.query_triplet[inliers]))
        if score >= f.score:
            fits[j] = _Fit(f.rid, inliers, slope, offset, shift, score, f.rivals + more_rivals)
    return fits


def _predicting(fits: list[_Fit], key: int, win: _Windows) -> int | None:
    """The fit of the same recording whose line passes through cell ``key`` (or its neighbour
    bins), if any."""
    rid, w = key >> 31, (key >> 17) & (2**14 - 1)
    b = (key & (2**17 - 1)) - 2**12
    centre = float(win.centre(np.array(w)))
    for j, f in enumerate(fits):
        if f.rid == rid and abs(math.floor((f.slope * centre + f.offset) / BIN) - b) <= 1:
            return j
    return None


def _merge(v: _Votes, fits: list[_Fit]) -> list[_Fit]:
    """Join fits of the same recording along the same line (adjacent windows of one match)."""
    fits = sorted(fits, key=lambda f: -f.score)
    merged: list[_Fit] = []
    for f in fits:
        for j, m in enumerate(merged):
            same_line = abs(f.slope - m.slope) < 0.02 and abs(
                (f.offset + f.slope * v.t_query[f.members].mean())
                - (m.offset + m.slope * v.t_query[f.members].mean())) < 2 * BIN
            if f.rid == m.rid and same_line:
                members = np.union1d(m.members, f.members)
                inliers, slope, offset, shift = _fit(v, members)
                score = len(np.unique(v.query_triplet[inliers]))
                merged[j] = _Fit(m.rid, inliers, slope, offset, shift, score,
                                 m.rivals + f.rivals)
                break
        else:
            merged.append(f)
    return merged


def _unvoted(qpeaks: fp.Peaks, tri: fp.Triplets, triplets: I64) -> NDArray[np.bool_]:
    """Query peaks that are not part of the given triplets (whose agreement is already counted)."""
    qf = qpeaks.frame.astype(np.float64)
    f0 = tri.frame[triplets].astype(np.float64)
    span = tri.span[triplets].astype(np.float64)
    p0 = tri.pitch[triplets].astype(np.float64)
    times = np.concatenate([f0, f0 + tri.ratio[triplets] * span, f0 + span])
    pitches = np.concatenate([p0, p0 + tri.interval1[triplets], p0 + tri.interval2[triplets]])
    lo = np.searchsorted(qf, times - 0.01)
    hi = np.searchsorted(qf, times + 0.01, side="right")
    free = np.ones(len(qf), dtype=bool)
    for d in range(int((hi - lo).max(initial=0))):  # almost always one peak per time
        i = np.minimum(lo + d, len(qf) - 1)
        same = (lo + d < hi) & (np.abs(qpeaks.pitch[i] - pitches) < 0.01)
        free[i[same]] = False
    return free


def _verify(ref: tuple[F64, F64], qpeaks: fp.Peaks, free: NDArray[np.bool_], slope: float,
            offset: float, shift: float, ref_frames: float) -> tuple[int, float]:
    """Query peaks confirmed by the recording's peaks along a fit, and the count chance predicts.

    Only ``free`` query peaks count (not those of the voting triplets). The chance count is
    measured: the same test at offsets NULL_SHIFTS frames away (both signs), scaled to the number
    of free query peaks that fall inside the recording at the true offset.
    """
    rf, rp = ref
    deltas = np.concatenate([[0.0], NULL_SHIFTS, -NULL_SHIFTS])
    qframe, qpitch = qpeaks.frame[free], qpeaks.pitch[free]
    t = slope * qframe.astype(np.float64) + offset
    mapped = t[None, :] + deltas[:, None]
    inside = (mapped >= -VERIFY_FRAMES) & (mapped <= ref_frames + VERIFY_FRAMES)
    row, col = np.nonzero(inside)
    tm = mapped[row, col]
    pm = qpitch[col].astype(np.float64) + shift
    lo = np.searchsorted(rf, tm - VERIFY_FRAMES)
    hi = np.searchsorted(rf, tm + VERIFY_FRAMES, side="right")
    counts = hi - lo
    owner = np.repeat(np.arange(len(tm)), counts)
    pos = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
        counts.sum())
    hit = np.zeros(len(tm), dtype=bool)
    hit[owner[np.abs(rp[pos] - pm[owner]) <= VERIFY_SEMITONES]] = True
    # count distinct query frames, not peaks: the partials of one note are confirmed together
    moment = row.astype(np.int64) * fp.MAX_FRAMES + np.rint(qframe[col]).astype(np.int64)
    confirmed = np.bincount(np.unique(moment[hit]) // fp.MAX_FRAMES, minlength=len(deltas))
    tested = np.bincount(np.unique(moment) // fp.MAX_FRAMES, minlength=len(deltas))
    rate = confirmed[1:].sum() / max(int(tested[1:].sum()), 1)
    return int(confirmed[0]), float(rate * tested[0])


def _verified_confidence(confirmed: int, expected: float, trials: float) -> float:
    """Confidence of a verified fit: exp(-trials * P(Poisson(expected) >= confirmed))."""
    from scipy.stats import poisson

    p = float(poisson.sf(confirmed - 1, max(expected, 1.0)))
    return math.exp(-trials * p)


def _confidence(score: int, rivals: int, ref_frames: float, hypotheses: float) -> float:
    """Chance of no coincidental cell reaching ``score`` among ``hypotheses`` cells."""
    band = 2 * INLIER_FRAMES + 1
    lam = rivals * band / max(ref_frames + WINDOW, band) * PITCH_CONSISTENT_FRACTION
    from scipy.stats import poisson  # imported here: scipy.stats takes ~0.6 s to load

    expected_false = hypotheses * float(poisson.sf(score - 1, lam))
    return math.exp(-expected_false)


def match(
    index: Index,
    tri: fp.Triplets,
    *,
    peaks: fp.Peaks | None = None,
    min_score: int = MIN_SCORE,
    min_confidence: float = MIN_CONFIDENCE,
    own_keys_only: bool = False,
    budget: int | None = None,
) -> list[Hit]:
    """The recordings of ``index`` found in a query's triplets, best first; [] means no match.

    ``peaks`` are the query's peaks (those ``tri`` was made from): with them, fits of recordings
    whose peaks the index holds are verified (see the module docstring) and need only
    VERIFY_VOTES agreeing triplets; without them every hit needs ``min_score`` triplets and the
    vote-count confidence.

    A first pass looks up each triplet's own key only (a fifth of the probes). When it finds sure
    hits covering most of the query (an unchanged or mildly changed copy), the search stops;
    otherwise the remaining probe keys, which reach pitch shifts and time factors across bin
    edges, are looked up and voted on together with the first pass (unless ``own_keys_only``).
    Each lookup reads at most ``budget`` index entries per second of query (default
    LOOKUP_BUDGET), rarest keys first.
    """
    keys, which = fp.probe_keys(tri)
    own = keys == fp.hash_keys(tri)[which]
    seconds = float(np.ptp(tri.frame)) * fp.HOP / fp.SR if len(tri.frame) else 0.0
    entries = int((LOOKUP_BUDGET if budget is None else budget) * max(seconds, 2.0))
    v = _candidates(index, tri, keys[own], which[own], entries)
    refs: dict[int, tuple[F64, F64] | None] = {}
    hits = _hits(index, tri, v, min_score, min_confidence, peaks, refs)
    covered = sum(h.duration for h in hits if h.confidence >= EARLY_CONFIDENCE)
    if own_keys_only or (hits and covered >= EARLY_COVERAGE * seconds):
        return hits
    more = _candidates(index, tri, keys[~own], which[~own], entries)
    both = _Votes(*(np.concatenate([a, b]) for a, b in zip(v, more, strict=True)))
    return _hits(index, tri, both, min_score, min_confidence, peaks, refs)


def _reference(index: Index, rid: int,
               refs: dict[int, tuple[F64, F64] | None]) -> tuple[F64, F64] | None:
    """A recording's unpacked peaks (cached for the query), or None if the index has none."""
    if rid not in refs:
        packed = index.peaks(rid)
        refs[rid] = None if packed is None or len(packed) == 0 else fp.unpack_peaks(packed)
    return refs[rid]


def _hits(index: Index, tri: fp.Triplets, v: _Votes, min_score: int, min_confidence: float,
          peaks: fp.Peaks | None = None,
          refs: dict[int, tuple[F64, F64] | None] | None = None) -> list[Hit]:
    """Vote, fit, merge and score the candidates; keep hits that pass both thresholds."""
    fits = _merge(v, _refine(v, _Windows.of(tri)))
    if not fits:
        return []
    windows = max(1, math.ceil(float(tri.frame.max()) / (WINDOW // 2))) if len(tri.frame) else 1
    band = 2 * INLIER_FRAMES + 1
    hypotheses = windows * index.seconds * fp.SR / fp.HOP / band
    hits = []
    refs = {} if refs is None else refs
    for f in fits:
        entry = index.entry(f.rid)
        if entry is None or f.score < min(min_score, VERIFY_VOTES):
            continue
        ref_frames = entry.duration * fp.SR / fp.HOP
        ref = _reference(index, f.rid, refs) if peaks is not None else None
        if ref is None or peaks is None:  # votes alone
            conf = _confidence(f.score, f.rivals, ref_frames, hypotheses) if (
                f.score >= min_score) else 0.0
        elif f.score >= max(min_score, SURE_SCORE) and (  # so many votes that chance is out
                conf := _confidence(f.score, f.rivals, ref_frames, hypotheses)) >= min_confidence:
            pass
        elif f.score >= VERIFY_VOTES:
            free = _unvoted(peaks, tri, v.query_triplet[f.members])
            confirmed, expected = _verify(ref, peaks, free, f.slope, f.offset, f.shift,
                                          ref_frames)
            trials = VERIFY_TRIALS if f.score < max(min_score, VOTED_SCORE) else VOTED_TRIALS
            conf = (_verified_confidence(confirmed, expected, trials)
                    if confirmed >= MIN_CONFIRMED else 0.0)
        else:
            continue
        if conf < min_confidence:
            continue
        tq = v.t_query[f.members]
        q0, q1 = float(tq.min()), float((tq + v.span_query[f.members]).max())
        sec = fp.HOP / fp.SR
        hits.append(Hit(
            f.rid, entry.label, q0 * sec, q1 * sec,
            max(0.0, (f.slope * q0 + f.offset) * sec), (f.slope * q1 + f.offset) * sec,
            (q1 - q0) * sec, f.slope, -f.shift, f.score, conf))
    hits.sort(key=lambda h: (-h.score, h.query_start))
    return _suppress(hits)


def _suppress(hits: list[Hit]) -> list[Hit]:
    """Drop a weaker hit of the same recording overlapping a stronger one in the query."""
    kept: list[Hit] = []
    for h in hits:
        if not any(k.recording_id == h.recording_id and h.query_start < k.query_end
                   and k.query_start < h.query_end for k in kept):
            kept.append(h)
    return kept


def tune_allocator() -> bool:
    """Let this process keep the memory it frees (glibc malloc); for long-running query servers.

    A 10 s query on a 1,000 h index allocates and frees tens of MB of temporary arrays. By default
    glibc hands large blocks back to the kernel on free and faults them in again on the next
    query: about 7,000 page faults, 15-30 ms of a 50 ms query. With large blocks served from a heap
    that is not trimmed, a warm query takes none. Memory stays at the process's peak instead.
    Returns False where glibc's ``mallopt`` is not available (nothing is changed then).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's largest: blocks below it use the heap
    ok &= mallopt(m_trim_threshold, 2**30)
    ok &= mallopt(m_top_pad, 64 * 2**20)
    return bool(ok)


def identify(index: Index, y: NDArray[np.float32], sr: int = fp.SR) -> list[Hit]:
    """Recordings of ``index`` found in mono audio ``y`` at SR Hz.

    A query with no hit is looked at once more with denser peaks and wider pairing: a heavy
    reverb or noise displaces peaks, so the reference's triplets hide among partners the default
    pairing never forms (on reverberant 10 s queries this found 7-8 of 9 otherwise missed).
    """
    p, dense = fp.peak_sets(y, sr, (fp.PEAKS_PER_WINDOW, DENSE_PEAKS))  # one spectrogram
    hits = match(index, fp.triplets(p), peaks=p)
    if hits:
        return hits
    found = match(index, fp.triplets(dense, partners=DENSE_PARTNERS), peaks=dense,
                  min_confidence=DENSE_CONFIDENCE, own_keys_only=True, budget=DENSE_BUDGET)
    # a degraded copy matches along most of the query; a short phrase found only this way is as
    # often a musical coincidence (a 3 s phrase of an unrelated piece reached confidence 1.0)
    shortest = min(DENSE_MIN_SECONDS, 0.4 * len(y) / sr)
    return [h for h in found if h.duration >= shortest]


def identify_file(
    index: Index, path: str | os.PathLike[str], *, max_seconds: float = MAX_QUERY_SECONDS
) -> list[Hit]:
    """Recordings of ``index`` found in an audio file (AudioError if it cannot be decoded)."""
    y, sr = decode(path, fp.SR, max_seconds=max_seconds)
    return identify(index, y, sr)
