"""Find indexed recordings inside a query: vote on time offsets, fit a line, score it.

Every query triplet probes the index; each entry found proposes a recording, a time factor
(reference span / query span), a pitch shift and hence an offset. Votes are counted per recording,
per 10 s query window and per 16-frame offset bin. The best cells are refined by fitting
``t_ref = time_factor * t_query + offset`` to their entries and keeping those within 3 frames and
within a semitone of the median pitch shift. A hit's score is the number of query triplets that
agree; its confidence is the probability that no cell of a random (unrelated) index would reach
that score by chance, from a Poisson model of coincidental agreement.
"""

from __future__ import annotations

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
MIN_VOTES = 8  # a cell needs this many votes to be refined (no fewer than MIN_SCORE)
MIN_SCORE = 8  # a hit needs this many agreeing triplets ...
MIN_CONFIDENCE = 0.5  # ... and this confidence
MAX_QUERY_SECONDS = 3600.0
EARLY_CONFIDENCE = 0.999  # the first pass ends the search with hits this sure ...
EARLY_COVERAGE = 0.5  # ... covering this fraction of the query

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


def _candidates(index: Index, tri: fp.Triplets, keys: fp.KeyArray, which: I64) -> _Votes:
    """Look up probe keys and keep entries with a plausible time factor and pitch shift.

    A coarse test on the packed fields (before removing the dither, so with one more unit of
    tolerance) discards most chance entries before exact values are computed for the rest.
    """
    found = index.lookup(keys)
    qi = which[found.probe]
    v = found.values
    span_q = tri.span[qi]
    span_raw = (v & np.uint32(63)).astype(np.float32)
    shift_raw = ((v >> np.uint32(6)) & np.uint32(63)).astype(np.float32) - tri.pitch[qi]
    lo, hi = math.exp(-fp.MAX_LOG_TIME - 0.15), math.exp(fp.MAX_LOG_TIME + 0.15)
    coarse = np.flatnonzero((span_raw + 1 >= lo * span_q) & (span_raw - 1 <= hi * span_q)
                            & (np.abs(shift_raw) <= fp.MAX_PITCH_SHIFT + 1.5))
    qi = qi[coarse]
    t_ref, pitch_ref, span_ref = fp.unpack_values(v[coarse], keys[found.probe[coarse]])
    span_q64 = tri.span[qi].astype(np.float64)
    scale = span_ref / span_q64
    shift = pitch_ref - tri.pitch[qi]
    ok = (np.abs(np.log(np.maximum(scale, 1e-3))) <= fp.MAX_LOG_TIME + 0.15) & (
        np.abs(shift) <= fp.MAX_PITCH_SHIFT + 0.5
    )
    return _Votes(found.rids[coarse[ok]], qi[ok], tri.frame[qi[ok]].astype(np.float64),
                  span_q64[ok], t_ref[ok], scale[ok], shift[ok])


class _Fit(NamedTuple):
    """One fitted alignment of a recording in the query."""

    rid: int
    members: I64  # indices into _Votes of the agreeing entries
    slope: float
    offset: float
    shift: float
    score: int
    rivals: int  # candidates of this recording and window, for the chance model


def _fit(v: _Votes, members: I64) -> tuple[I64, float, float, float]:
    """Fit ``t_ref = slope * t_query + offset`` robustly; return inliers, slope, offset, shift."""
    tq, tr = v.t_query[members], v.t_ref[members]
    slope = float(np.clip(np.median(v.scale[members]), math.exp(-fp.MAX_LOG_TIME),
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


def _cells(v: _Votes) -> tuple[I64, I64]:
    """Vote: each candidate in its two windows' offset bins; return cell keys and candidates."""
    w0 = np.floor(v.t_query / (WINDOW // 2)).astype(np.int64)
    scale = np.clip(v.scale, math.exp(-fp.MAX_LOG_TIME), math.exp(fp.MAX_LOG_TIME))
    keys, owners = [], []
    for w in (w0, w0 - 1):
        centre = w * (WINDOW // 2) + WINDOW // 2
        b = np.floor((v.t_ref - scale * (v.t_query - centre)) / BIN).astype(np.int64)
        b = np.clip(b + 2**12, 0, 2**17 - 1)
        keys.append((v.rid.astype(np.int64) << 31) | (np.maximum(w, 0) << 17) | b)
        owners.append(np.arange(len(w0)))
    return np.concatenate(keys), np.concatenate(owners)


def _refine(v: _Votes) -> list[_Fit]:
    """Fit the best-voted cells."""
    if len(v.rid) == 0:
        return []
    cell, owner = _cells(v)
    uniq, counts = np.unique(cell, return_counts=True)
    nb = np.minimum(np.searchsorted(uniq, uniq + 1), len(uniq) - 1)  # the next offset bin
    paired = counts + np.where(uniq[nb] == uniq + 1, counts[nb], 0)
    best = np.argsort(-paired, kind="stable")[: MAX_CELLS * 4]
    best = best[paired[best] >= MIN_VOTES]
    order = np.argsort(cell, kind="stable")
    sorted_cell = cell[order]
    fits: list[_Fit] = []
    seen: set[int] = set()
    for i in best:
        key = int(uniq[i])
        if key in seen or (key + 1) in seen or (key - 1) in seen:
            continue
        seen.add(key)
        lo = np.searchsorted(sorted_cell, key - 1)
        hi = np.searchsorted(sorted_cell, key + 2)
        members = np.unique(owner[order[lo:hi]])
        inliers, slope, offset, shift = _fit(v, members)
        window = key >> 17
        rivals = int(np.searchsorted(sorted_cell, (window + 1) << 17)
                     - np.searchsorted(sorted_cell, window << 17))
        score = len(np.unique(v.query_triplet[inliers]))
        if score == 0:
            continue
        fits.append(_Fit(key >> 31, inliers, slope, offset, shift, score, rivals))
        if len(fits) >= MAX_CELLS:
            break
    return fits


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
    min_score: int = MIN_SCORE,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[Hit]:
    """The recordings of ``index`` found in a query's triplets, best first; [] means no match.

    A first pass looks up each triplet's own key only (a fifth of the probes). When it finds sure
    hits covering most of the query (an unchanged or mildly changed copy), the search stops;
    otherwise the remaining probe keys, which reach pitch shifts and time factors across bin
    edges, are looked up and voted on together with the first pass.
    """
    keys, which = fp.probe_keys(tri)
    own = keys == fp.hash_keys(tri)[which]
    v = _candidates(index, tri, keys[own], which[own])
    hits = _hits(index, tri, v, min_score, min_confidence)
    covered = sum(h.duration for h in hits if h.confidence >= EARLY_CONFIDENCE)
    query_seconds = float(tri.frame.max() - tri.frame.min()) * fp.HOP / fp.SR if hits else 0.0
    if hits and covered >= EARLY_COVERAGE * query_seconds:
        return hits
    more = _candidates(index, tri, keys[~own], which[~own])
    both = _Votes(*(np.concatenate([a, b]) for a, b in zip(v, more, strict=True)))
    return _hits(index, tri, both, min_score, min_confidence)


def _hits(index: Index, tri: fp.Triplets, v: _Votes, min_score: int,
          min_confidence: float) -> list[Hit]:
    """Vote, fit, merge and score the candidates; keep hits that pass both thresholds."""
    fits = _merge(v, _refine(v))
    if not fits:
        return []
    windows = max(1, math.ceil(float(tri.frame.max()) / (WINDOW // 2))) if len(tri.frame) else 1
    band = 2 * INLIER_FRAMES + 1
    hypotheses = windows * index.seconds * fp.SR / fp.HOP / band
    hits = []
    for f in fits:
        entry = index.entry(f.rid)
        if entry is None or f.score < min_score:
            continue
        ref_frames = entry.duration * fp.SR / fp.HOP
        conf = _confidence(f.score, f.rivals, ref_frames, hypotheses)
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


def identify(index: Index, y: NDArray[np.float32], sr: int = fp.SR) -> list[Hit]:
    """Recordings of ``index`` found in mono audio ``y`` at SR Hz."""
    return match(index, fp.fingerprint(y, sr))


def identify_file(
    index: Index, path: str | os.PathLike[str], *, max_seconds: float = MAX_QUERY_SECONDS
) -> list[Hit]:
    """Recordings of ``index`` found in an audio file (AudioError if it cannot be decoded)."""
    y, sr = decode(path, fp.SR, max_seconds=max_seconds)
    return identify(index, y, sr)
