"""Spectral-peak triplet fingerprints that survive speed, pitch and tempo changes.

A recording becomes a list of spectral peaks (time in frames, pitch in semitones). Each peak
(the anchor) is joined with pairs of peaks that follow it into a triplet. A triplet's hash keeps
only what is unchanged when audio is sped up, pitch-shifted or time-stretched by up to ~10%:

- the ratio of the anchor-to-second and anchor-to-third time gaps (time scaling cancels out);
- the pitch intervals from the anchor to the other two peaks, in semitones (a pitch shift adds
  the same number of semitones to every peak, so intervals do not move);
- the anchor's pitch band and the log of the triplet's time span, both coarse. These do move, so a
  query looks up every band and span bin the allowed changes can reach (:func:`probe_keys`).

Each triplet also carries its anchor time, pitch and span (:func:`pack_values`), from which the
matcher estimates the time factor and pitch shift of a match.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy.fft import rfft

from attune.audio import DEFAULT_MAX_SECONDS, stream

SR = 8000  # analysis rate, Hz
N_FFT = 1024  # STFT window, samples (128 ms)
HOP = 128  # STFT hop, samples (16 ms): one "frame" below
FMIN = 200.0  # lowest peak frequency, Hz; pitch 0 semitones
FMAX = 3400.0  # highest peak frequency, Hz
PEAK_FRAMES = 12  # a peak is the largest within +-this many frames ...
PEAK_BINS = 6  # ... and +-this many STFT bins
RANK_FRAMES = 64  # peaks are ranked within windows of this many frames (1.024 s) ...
PEAKS_PER_WINDOW = 20  # ... and the strongest this many kept
PARTNERS = 4  # each anchor pairs with its first this many partners: 6 triplets per anchor
MAX_LOOKAHEAD = 24  # partners are searched among the next this many peaks
MIN_GAP, MAX_GAP = 3.0, 63.0  # anchor-to-partner gap, frames (48 ms .. 1 s)
MAX_INTERVAL = 12.0  # anchor-to-partner pitch interval, semitones
RATIO_LEVELS = 12  # quantisation of the time-gap ratio
INTERVAL_STEP = 0.25  # quantisation of pitch intervals, semitones
BAND = 3.0  # coarse anchor pitch band, semitones
SPAN_STEP = 0.2  # coarse log-span bin (natural log)
MAX_PITCH_SHIFT = 2.2  # largest pitch change a query may carry, semitones (+-2 st, speed +-10%)
MAX_LOG_TIME = 0.11  # largest |ln(time factor)| a query may carry (speed/tempo +-10%)
MIN_STRENGTH = -6.9  # peaks below this log magnitude (about -80 dB full scale) are silence
_MIN_MAGNITUDE = math.exp(MIN_STRENGTH)
MAX_FRAMES = 2**20  # anchor time field: 20 bits of frames (4.66 h)

_N_INTERVAL = int(2 * MAX_INTERVAL / INTERVAL_STEP) + 1  # 97
_N_BAND = math.ceil(12 * math.log2(FMAX / FMIN) / BAND) + 1  # 18
_N_SPAN = math.ceil(math.log(MAX_GAP / MIN_GAP) / SPAN_STEP) + 1  # 17

FloatArray = NDArray[np.float32]
KeyArray = NDArray[np.uint32]


class Peaks(NamedTuple):
    """Spectral peaks in time order: ``frame`` (fractional STFT frame), ``pitch`` (semitones above
    FMIN) and ``strength`` (log magnitude)."""

    frame: FloatArray
    pitch: FloatArray
    strength: FloatArray


class Triplets(NamedTuple):
    """Peak triplets: anchor ``frame`` and ``pitch``, ``span`` (anchor to third peak, frames),
    ``ratio`` (gap to second / span), and pitch ``interval1``/``interval2`` (semitones from the
    anchor to the second and third peaks)."""

    frame: FloatArray
    pitch: FloatArray
    span: FloatArray
    ratio: FloatArray
    interval1: FloatArray
    interval2: FloatArray


def _window_max(x: FloatArray, size: int, axis: int) -> FloatArray:
    """Max of ``x[i : i + size]`` along ``axis`` for every full window, by doubling spans."""
    x = np.moveaxis(x, axis, 0)
    span = 1
    while span * 2 <= size:
        x = np.maximum(x[:-span], x[span:])
        span *= 2
    if span < size:
        x = np.maximum(x[: len(x) - (size - span)], x[size - span :])
    return np.moveaxis(x, 0, axis)


class _Workspace:
    """Buffers reused from chunk to chunk: allocation, not arithmetic, dominates otherwise."""

    def __init__(self, n_frames: int) -> None:
        self.bin0, self.bin1 = int(FMIN * N_FFT / SR), int(FMAX * N_FFT / SR) + 1
        n_bins = self.bin1 - self.bin0
        self.window = np.hanning(N_FFT).astype(np.float32)
        self.frames = np.empty((n_frames, N_FFT), dtype=np.float32)
        self.mag = np.empty((n_frames, n_bins), dtype=np.float32)
        self.padded = np.full((n_frames + 2 * PEAK_FRAMES, n_bins + 2 * PEAK_BINS), -np.inf,
                              dtype=np.float32)
        self.is_peak = np.empty(self.mag.shape, dtype=bool)

    def magnitudes(self, y: FloatArray) -> FloatArray:
        """STFT magnitudes (frames x FMIN..FMAX bins) of ``y``, which spans exactly the frames."""
        np.multiply(sliding_window_view(y, N_FFT)[::HOP], self.window, out=self.frames)
        np.abs(rfft(self.frames, axis=1, overwrite_x=True)[:, self.bin0 : self.bin1], out=self.mag)
        return self.mag

    def peaks(self, mag: FloatArray, first_frame: int, per_window: int) -> Peaks:
        """The ``per_window`` strongest local maxima of ``mag`` per ranking window (``mag`` is the
        workspace's own array; its frame 0 is ``first_frame``).

        Local maxima do not change under a monotonic map, so the log is taken at peaks only.
        """
        self.padded[PEAK_FRAMES:-PEAK_FRAMES, PEAK_BINS:-PEAK_BINS] = mag
        local_max = _window_max(_window_max(self.padded, 2 * PEAK_FRAMES + 1, 0),
                                2 * PEAK_BINS + 1, 1)
        np.equal(mag, local_max, out=self.is_peak)
        # flatnonzero then divmod: ~10x faster than a 2-D nonzero; the rest tests candidates only
        ti, fi = np.divmod(np.flatnonzero(self.is_peak), mag.shape[1])
        v = mag[ti, fi]
        inner = (v > _MIN_MAGNITUDE) & (ti > 0) & (ti < len(mag) - 1)
        inner &= (fi > 0) & (fi < mag.shape[1] - 1)
        ti, fi, v = ti[inner], fi[inner], v[inner]
        window = (ti + first_frame) // RANK_FRAMES
        order = np.lexsort((-v, window))
        ranked = window[order]
        rank = np.arange(len(order)) - np.searchsorted(ranked, ranked, side="left")
        keep = np.sort(order[rank < per_window])
        ti, fi = ti[keep], fi[keep]
        # parabolic interpolation of the log magnitude in frequency and in time
        v = np.log(mag[ti, fi])
        below, above = np.log(mag[ti, fi - 1] + 1e-9), np.log(mag[ti, fi + 1] + 1e-9)
        d_bin = np.clip(0.5 * (below - above) / (below - 2 * v + above - 1e-9), -0.5, 0.5)
        before, after = np.log(mag[ti - 1, fi] + 1e-9), np.log(mag[ti + 1, fi] + 1e-9)
        d_frame = np.clip(0.5 * (before - after) / (before - 2 * v + after - 1e-9), -0.5, 0.5)
        hz = (fi + self.bin0 + d_bin) * SR / N_FFT
        return Peaks(
            (ti + first_frame + d_frame).astype(np.float32),
            (12 * np.log2(hz / FMIN)).astype(np.float32),
            v.astype(np.float32),
        )


def peaks_stream(
    blocks: Iterable[FloatArray], chunk_frames: int = 64 * RANK_FRAMES,
    per_window: int = PEAKS_PER_WINDOW,
) -> Iterator[Peaks]:
    """Yield the peaks of mono audio at SR Hz given as consecutive blocks, in bounded memory.

    The signal is cut into chunks of ``chunk_frames`` frames (a multiple of RANK_FRAMES) analysed
    with a margin on both sides, so the peaks equal those of the whole signal.
    """
    for (p,) in _peak_sets_stream(blocks, chunk_frames, (per_window,)):
        yield p


def _peak_sets_stream(
    blocks: Iterable[FloatArray], chunk_frames: int, per_windows: tuple[int, ...]
) -> Iterator[tuple[Peaks, ...]]:
    """:func:`peaks_stream` for several ``per_window`` values at once, from one spectrogram:
    per chunk, one set of peaks for each."""
    margin = 2 * RANK_FRAMES  # >= PEAK_FRAMES + 1, and a multiple of RANK_FRAMES
    need = (chunk_frames + 2 * margin - 1) * HOP + N_FFT
    buffer = np.zeros(margin * HOP, dtype=np.float32)
    first = 0  # absolute frame of the first kept frame of the next chunk
    work = _Workspace(chunk_frames + 2 * margin)
    blocks_iter = iter(blocks)
    ended = False
    while True:
        while not ended and len(buffer) < need:
            block = next(blocks_iter, None)
            ended = block is None
            if block is not None:
                buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        n_frames = chunk_frames
        if len(buffer) < need:  # the last chunk: frames that start inside the signal, zero-padded
            n_frames = (len(buffer) - margin * HOP) // HOP
            if n_frames <= 0:
                return
            buffer = np.concatenate([buffer, np.zeros(need - len(buffer), dtype=np.float32)])
        mag = work.magnitudes(buffer[:need])
        sets = []
        for per_window in per_windows:
            p = work.peaks(mag, first - margin, per_window)
            inside = (p.frame >= first) & (p.frame < first + n_frames)
            sets.append(Peaks(p.frame[inside], p.pitch[inside], p.strength[inside]))
        yield tuple(sets)
        buffer = buffer[n_frames * HOP :]
        first += n_frames
        if n_frames < chunk_frames:
            return


def peaks(y: FloatArray, sr: int = SR, per_window: int = PEAKS_PER_WINDOW) -> Peaks:
    """Spectral peaks of mono ``y`` (which must be at SR Hz), in time order: the ``per_window``
    strongest of each RANK_FRAMES window (indexes are made with the default)."""
    return peak_sets(y, sr, (per_window,))[0]


def peak_sets(y: FloatArray, sr: int = SR, per_windows: Sequence[int] = (PEAKS_PER_WINDOW,)
              ) -> list[Peaks]:
    """:func:`peaks` of ``y`` for each of ``per_windows``, from one spectrogram (a query looked
    at twice pays for one)."""
    if sr != SR:
        raise ValueError(f"fingerprints are computed at {SR} Hz, got audio at {sr} Hz")
    n_frames = -(-len(y) // HOP)
    chunk = min(64 * RANK_FRAMES, -(-n_frames // RANK_FRAMES) * RANK_FRAMES)
    chunks = list(_peak_sets_stream([np.asarray(y, dtype=np.float32)],
                                    max(chunk, RANK_FRAMES), tuple(per_windows)))
    return [_joined(c[k] for c in chunks) for k in range(len(per_windows))]


def _joined(parts: Iterable[Peaks]) -> Peaks:
    """Concatenate the peaks of consecutive chunks."""
    chunks = list(parts)
    if not chunks:
        empty = np.zeros(0, dtype=np.float32)
        return Peaks(empty, empty, empty)
    return Peaks(*(np.concatenate(cols) for cols in zip(*chunks, strict=True)))


def triplets(p: Peaks, partners: int = PARTNERS) -> Triplets:
    """Join each peak with pairs among its first ``partners`` partners into triplets (indexes are
    made with the default; a query may pair more widely to find triplets an edit disturbed)."""
    t, q = p.frame.astype(np.float64), p.pitch.astype(np.float64)
    n = len(t)
    if n < 3:
        empty = np.zeros(0, dtype=np.float32)
        return Triplets(empty, empty, empty, empty, empty, empty)
    nxt = np.arange(n)[:, None] + np.arange(1, MAX_LOOKAHEAD + 1)[None, :]
    valid = nxt < n
    nxt = np.minimum(nxt, n - 1)
    gap = t[nxt] - t[:, None]
    valid &= (gap >= MIN_GAP) & (gap <= MAX_GAP) & (np.abs(q[nxt] - q[:, None]) <= MAX_INTERVAL)
    rank = np.cumsum(valid, axis=1)
    valid &= rank <= partners
    partner = np.full((n, partners), -1)
    rows, cols = np.nonzero(valid)
    partner[rows, rank[rows, cols] - 1] = nxt[rows, cols]
    a, b = np.triu_indices(partners, 1)
    i = np.repeat(np.arange(n), len(a))
    j, k = partner[:, a].ravel(), partner[:, b].ravel()
    ok = (j >= 0) & (k >= 0)
    i, j, k = i[ok], j[ok], k[ok]
    ok = t[k] - t[j] >= 1.0
    i, j, k = i[ok], j[ok], k[ok]
    span = t[k] - t[i]
    return Triplets(
        t[i].astype(np.float32),
        q[i].astype(np.float32),
        span.astype(np.float32),
        ((t[j] - t[i]) / span).astype(np.float32),
        (q[j] - q[i]).astype(np.float32),
        (q[k] - q[i]).astype(np.float32),
    )


def _invariant_part(tri: Triplets) -> NDArray[np.int64]:
    """The hash bits that speed, pitch and tempo changes leave alone."""
    r = np.clip((tri.ratio * RATIO_LEVELS).astype(np.int64), 0, RATIO_LEVELS - 1)
    i1 = np.rint((tri.interval1 + MAX_INTERVAL) / INTERVAL_STEP).astype(np.int64)
    i2 = np.rint((tri.interval2 + MAX_INTERVAL) / INTERVAL_STEP).astype(np.int64)
    invariant: NDArray[np.int64] = (r * _N_INTERVAL + i1) * _N_INTERVAL + i2
    return invariant


def _combine(invariant: NDArray[np.int64], band: NDArray[np.int64],
             span_bin: NDArray[np.int64]) -> KeyArray:
    """Pack the hash parts into one 32-bit key."""
    return ((invariant * _N_BAND + band) * _N_SPAN + span_bin).astype(np.uint32)


def _band(pitch: FloatArray | NDArray[np.float64]) -> NDArray[np.int64]:
    return np.clip(np.floor(pitch / BAND), 0, _N_BAND - 1).astype(np.int64)


def _span_bin(span: FloatArray | NDArray[np.float64]) -> NDArray[np.int64]:
    return np.clip(np.floor(np.log(span / MIN_GAP) / SPAN_STEP), 0, _N_SPAN - 1).astype(np.int64)


def hash_keys(tri: Triplets) -> KeyArray:
    """The 32-bit index key of each triplet, as stored for a reference recording."""
    return _combine(_invariant_part(tri), _band(tri.pitch), _span_bin(tri.span))


def probe_keys(tri: Triplets) -> tuple[KeyArray, NDArray[np.int64]]:
    """Every key a reference triplet matching each query triplet can have; and its triplet index.

    The reference anchor's pitch may differ by up to MAX_PITCH_SHIFT semitones and its span by a
    factor up to exp(MAX_LOG_TIME), so each query triplet probes the 2-3 bands and 2-3 span bins
    those ranges reach. The triplet's own key (:func:`hash_keys`) is among them.
    """
    inv = _invariant_part(tri)
    idx = np.arange(len(inv))
    band_lo, band_hi = _band(tri.pitch - MAX_PITCH_SHIFT), _band(tri.pitch + MAX_PITCH_SHIFT)
    span_lo = _span_bin(tri.span * math.exp(-MAX_LOG_TIME))
    span_hi = _span_bin(tri.span * math.exp(MAX_LOG_TIME))
    keys, which = [], []
    for db in range(int(MAX_PITCH_SHIFT * 2 // BAND) + 2):
        for ds in range(int(2 * MAX_LOG_TIME // SPAN_STEP) + 2):
            ok = (band_lo + db <= band_hi) & (span_lo + ds <= span_hi)
            keys.append(_combine(inv[ok], band_lo[ok] + db, span_lo[ok] + ds))
            which.append(idx[ok])
    return np.concatenate(keys), np.concatenate(which)


def _dither(keys: KeyArray, salt: int) -> NDArray[np.float64]:
    """A pseudo-random offset in [-0.5, 0.5) derived from each key, the same at index and query.

    Values are stored as ``rint(x + dither)`` and read back as ``stored - dither``: the rounding
    error is then uniform and independent of ``x``, so medians over many entries are unbiased.
    """
    mixed = (keys.astype(np.uint64) * np.uint64(2654435761) + np.uint64(salt)) & np.uint64(
        0xFFFFFFFF)
    return ((mixed >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float64) / 65536 - 0.5


def pack_values(tri: Triplets, keys: KeyArray) -> KeyArray:
    """Pack anchor frame (20 bits), anchor pitch (6 bits, semitones) and span (6 bits, frames).

    Pitch and span are rounded with a dither taken from the triplet's key (see :func:`_dither`).
    """
    frame = np.clip(np.rint(tri.frame), 0, MAX_FRAMES - 1).astype(np.uint32)
    pitch = np.clip(np.rint(tri.pitch + _dither(keys, 1)), 0, 63).astype(np.uint32)
    span = np.clip(np.rint(tri.span + _dither(keys, 2)), 0, 63).astype(np.uint32)
    return (frame << np.uint32(12)) | (pitch << np.uint32(6)) | span


def unpack_values(v: KeyArray, keys: KeyArray, at: NDArray[np.int64] | None = None
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`pack_values`: anchor frame, pitch and span of entries whose keys are
    ``keys``, or ``keys[at]`` when given (the dither is then computed once per key)."""
    v = v.astype(np.uint32, copy=False)
    pitch_dither, span_dither = _dither(keys, 1), _dither(keys, 2)
    if at is not None:
        pitch_dither, span_dither = pitch_dither[at], span_dither[at]
    return (
        (v >> np.uint32(12)).astype(np.float64),
        ((v >> np.uint32(6)) & np.uint32(63)).astype(np.float64) - pitch_dither,
        (v & np.uint32(63)).astype(np.float64) - span_dither,
    )


PEAK_PITCH_STEPS = 64  # packed peaks: pitch in 1/64 semitone (12 bits), frame in 20 bits


def pack_peaks(p: Peaks) -> KeyArray:
    """Peaks as sorted uint32: frame (20 bits, rounded) and pitch (12 bits, 1/64 semitone).

    Stored beside the triplets (4 bytes a peak, about 0.3 MB per hour) so that a match found by
    triplet votes can be verified against the recording's whole peak constellation.
    """
    frame = np.clip(np.rint(p.frame), 0, MAX_FRAMES - 1).astype(np.uint32)
    pitch = np.clip(np.rint(p.pitch * PEAK_PITCH_STEPS), 0, 4095).astype(np.uint32)
    return np.sort((frame << np.uint32(12)) | pitch)


def unpack_peaks(packed: KeyArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`pack_peaks`: frames and pitches (semitones), in frame order."""
    v = np.asarray(packed, dtype=np.uint32)
    return ((v >> np.uint32(12)).astype(np.float64),
            (v & np.uint32(4095)).astype(np.float64) / PEAK_PITCH_STEPS)


def fingerprint(y: FloatArray, sr: int = SR) -> Triplets:
    """Triplets of mono ``y`` at SR Hz: ``triplets(peaks(y, sr))``."""
    return triplets(peaks(y, sr))


def fingerprint_file(
    path: str | os.PathLike[str], *, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Triplets, float]:
    """Triplets of an audio file, decoded as a stream in bounded memory; and its duration (s).

    Raises AudioError naming the file and the cause when it cannot be decoded.
    """
    p, seconds = peaks_file(path, max_seconds=max_seconds)
    return triplets(p), seconds


def peaks_file(
    path: str | os.PathLike[str], *, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[Peaks, float]:
    """Peaks of an audio file, decoded as a stream in bounded memory; and its duration (s)."""
    n_samples = 0

    def counted(blocks: Iterable[FloatArray]) -> Iterator[FloatArray]:
        nonlocal n_samples
        for block in blocks:
            n_samples += len(block)
            yield block

    p = _joined(peaks_stream(counted(stream(path, SR, max_seconds=max_seconds))))
    return p, n_samples / SR
