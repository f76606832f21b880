"""Inaudible audio watermark carrying a 32-bit output id, robust to codecs, noise and speed.

Design (details and the false-accept derivation in docs/PROVENANCE.md):

* The mark is a patchwork of small gains on time-frequency cells of a 16 kHz analysis of the
  mid channel: 64 ms x log-spaced bands between 700 Hz and 6.8 kHz (below the cut-off of
  16 kHz resampling and of MP3 at 64 kbit/s).  Each cell's amplitude is scaled by ``1 + g``
  with ``g`` a small signed gain; the detector reads its sign from log cell energies, which
  neither volume nor a smooth equaliser changes.
* One codeword fills a period of 48 cells (3.07 s) x 32 bands and repeats for the whole
  file, so every excerpt carries it; a detector soft-combines all periods it sees.
* The payload is 64 bits: the 32-bit output id and 32 check bits (a keyed BLAKE2b of the id),
  whitened and protected by a tail-biting convolutional code (K=7, rate 1/3); 10 % of the
  cells are pilots used to find the time offset.
* Strength is set per file so that the mark's SNR equals ``target_snr_db`` (>= 30 dB).  Per
  cell it leans towards quieter cells of each frame (log-domain evidence costs less energy
  there) and towards frames quieter than the file's loud ones (so that noise set against the
  whole recording does not swamp quiet passages), and it is capped twice: under the host's
  masking threshold (``masking``: 0.5-Bark partitions, spreading, PEAQ's offset, 3 dB margin)
  and so that no cell's amplitude changes by more than ``max_gain`` (0.7).  A file whose band
  cannot hide the full budget under those caps gets a weaker mark (higher SNR).
* The detector's statistic per cell is its log energy minus a linear prediction of the host
  from the neighbouring cells in time and frequency and the frame levels (fitted on unmarked
  music), weighted by the gain the embedder gives such a cell over the local variance of the
  residual.  Most of what the old time-only difference left was the host itself.
* The detector analyses the clip once, then tries every speed (time and pitch together),
  tempo (time only) and pitch (frequency only) factor over +-5 % in 0.25 % steps by warping
  the cell grid, keeps the best few candidates by pilot correlation and accepts a candidate
  only if its decoded check bits match: one speed estimate is never trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import fft

from attune.provenance import masking
from attune.provenance._audio_io import read_audio, write_audio

__all__ = [
    "DEFAULT_KEY",
    "Detection",
    "Embedding",
    "WatermarkError",
    "detect",
    "detect_file",
    "embed",
    "embed_file",
    "mark_snr_db",
]

Audio = npt.NDArray[np.float32]
Floats = npt.NDArray[np.floating[Any]]
Axis = Literal["speed", "tempo", "pitch"]

DEFAULT_KEY: Final[bytes] = b"attune-watermark-v1"
FS: Final[int] = 16_000
N_FFT: Final[int] = 512
HOP: Final[int] = 256
FINE: Final[int] = 128
CELL: Final[int] = 1024
F_LO: Final[float] = 700.0
F_HI: Final[float] = 6800.0
N_BANDS: Final[int] = 32
PERIOD: Final[int] = 48
PILOT_FRACTION: Final[float] = 0.1
ID_BITS: Final[int] = 32
CHECK_BITS: Final[int] = 32
N_INFO: Final[int] = ID_BITS + CHECK_BITS
GENERATORS: Final[tuple[int, ...]] = (0o133, 0o171, 0o165)
K_CONSTRAINT: Final[int] = 7
N_CODED: Final[int] = N_INFO * len(GENERATORS)
SCALE_STEP: Final[float] = 0.0025
SCALE_SPAN: Final[float] = 0.05
CANDIDATES: Final[int] = 12
EPS: Final[float] = 1e-10
RESAMPLE_HALF_LENGTH: Final[int] = 3
SHAPE_EXP: Final[float] = 0.75
SHAPE_LO: Final[float] = 0.1
SHAPE_HI: Final[float] = 10.0
G_MAX: Final[float] = 0.7
LIFT_EXP: Final[float] = 1.0
LIFT_PERCENTILE: Final[float] = 75.0
LIFT_MAX: Final[float] = 10.0
MASK_MARGIN: Final[float] = 0.7
MAX_CORRECTION: Final[float] = 1.3
PREDICT_TIME: Final[float] = 0.48
PREDICT_FREQ: Final[float] = 0.30
PREDICT_DIAG: Final[float] = -0.145
PREDICT_LEVEL: Final[tuple[float, float]] = (0.40, -0.19)
WEIGHT_GAIN: Final[float] = 0.6
WEIGHT_SPAN: Final[tuple[int, int]] = (9, 3)
WEIGHT_FLOOR: Final[float] = 0.5


class WatermarkError(ValueError):
    """The audio cannot be marked or read (too short, silent, bad id)."""


@dataclass(frozen=True, slots=True)
class Embedding:
    """A marked signal: ``snr_db`` is the mark's SNR over the whole file, ``strength`` the
    relative amplitude change of a cell at its frame's level (quieter cells change more)."""

    audio: Audio
    sample_rate: int
    output_id: int
    snr_db: float
    strength: float


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's answer; ``output_id`` is None unless the check bits matched.

    ``axis`` and ``scale`` say which time/frequency warp decoded (``speed`` 1.0 = none),
    ``score`` is the pilot correlation in standard deviations, ``candidates`` how many
    warps were decoded before the answer.
    """

    output_id: int | None
    axis: Axis | None
    scale: float | None
    score: float
    candidates: int


# --------------------------------------------------------------------------------------------
# Layout: which cell carries which coded bit, with which chip
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    """The keyed codeword layout over one period (PERIOD cells x N_BANDS bands)."""

    chips: npt.NDArray[np.float64]
    pilot: npt.NDArray[np.bool_]
    bit: npt.NDArray[np.intp]
    whitening: npt.NDArray[np.uint8]
    rolled_pilots: npt.NDArray[np.float64]
    n_pilot: int


@lru_cache(maxsize=8)
def _layout(key: bytes) -> _Layout:
    """Derive chips, pilot cells and the cell-to-bit map from the key (same for every file)."""
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"layout").digest(), "big")
    rng = np.random.default_rng(seed)
    chips = rng.choice(np.array([-1.0, 1.0]), size=(PERIOD, N_BANDS))
    cells = PERIOD * N_BANDS
    order = rng.permutation(cells)
    n_pilot = round(cells * PILOT_FRACTION)
    pilot = np.zeros(cells, dtype=np.bool_)
    pilot[order[:n_pilot]] = True
    bit = np.full(cells, -1, dtype=np.intp)
    bit[order[n_pilot:]] = np.arange(cells - n_pilot) % N_CODED
    whitening = rng.integers(0, 2, size=N_INFO, dtype=np.uint8)
    pilot_chips = np.where(pilot.reshape(PERIOD, N_BANDS), chips, 0.0)
    shifts = np.arange(PERIOD)
    rows = (np.arange(PERIOD)[None, :] + shifts[:, None]) % PERIOD
    return _Layout(
        chips=chips,
        pilot=pilot.reshape(PERIOD, N_BANDS),
        bit=bit.reshape(PERIOD, N_BANDS),
        whitening=whitening,
        rolled_pilots=pilot_chips[rows],
        n_pilot=n_pilot,
    )


def _band_edges() -> Floats:
    """Band edges in Hz, log-spaced from F_LO to F_HI."""
    return np.geomspace(F_LO, F_HI, N_BANDS + 1)


# --------------------------------------------------------------------------------------------
# Payload and channel code
# --------------------------------------------------------------------------------------------


def _check(output_id: int, key: bytes) -> int:
    """The 32 check bits of an id: a keyed hash, so no structured decode passes by chance."""
    digest = hashlib.blake2b(output_id.to_bytes(4, "big"), key=key[:64], digest_size=4)
    return int.from_bytes(digest.digest(), "big")


def _payload_bits(output_id: int, key: bytes) -> npt.NDArray[np.uint8]:
    """The 64 whitened info bits of an id."""
    word = (output_id << CHECK_BITS) | _check(output_id, key)
    bits = np.array([(word >> (N_INFO - 1 - i)) & 1 for i in range(N_INFO)], dtype=np.uint8)
    return bits ^ _layout(key).whitening


def _parse_bits(bits: npt.NDArray[np.uint8], key: bytes) -> int | None:
    """The id carried by 64 decoded info bits, or None if the check bits do not match."""
    plain = bits ^ _layout(key).whitening
    word = int("".join("1" if b else "0" for b in plain), 2)
    output_id, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    return output_id if _check(output_id, key) == check else None


@lru_cache(maxsize=1)
def _trellis() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Predecessor states (64, 2) and branch output signs (64, 2, 3) of the K=7 code."""
    states = np.arange(1 << (K_CONSTRAINT - 1))
    newest = states >> (K_CONSTRAINT - 2)
    preds = ((states & ((1 << (K_CONSTRAINT - 2)) - 1)) << 1)[:, None] | np.array([0, 1])
    regs = (newest[:, None] << (K_CONSTRAINT - 1)) | preds
    gens = np.array(GENERATORS)
    parity = np.array([[[bin(r & g).count("1") & 1 for g in gens] for r in row] for row in regs])
    return preds, 2.0 * parity - 1.0


def _encode(bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Tail-biting convolutional encoding: 64 info bits -> 192 coded bits."""
    n = len(bits)
    memory = K_CONSTRAINT - 1
    padded = np.concatenate([bits[n - memory :], bits])
    regs = np.zeros(n, dtype=np.int64)
    for lag in range(K_CONSTRAINT):
        regs |= padded[memory - lag : memory - lag + n].astype(np.int64) << (memory - lag)
    out = np.array([[bin(int(r) & g).count("1") & 1 for g in GENERATORS] for r in regs])
    return out.astype(np.uint8).reshape(-1)


def _viterbi(soft: Floats) -> npt.NDArray[np.uint8]:
    """Wrap-around soft Viterbi decoding of tail-biting codewords, batched: (C, 192) -> (C, 64).

    ``soft`` is positive for a coded 1; the sequence is decoded three times around and the
    middle lap is kept, which approximates the maximum-likelihood tail-biting path.
    """
    preds, signs = _trellis()
    count = soft.shape[0]
    steps = soft.reshape(count, N_INFO, len(GENERATORS))
    laps = np.concatenate([steps, steps, steps], axis=1)
    metric = np.zeros((count, preds.shape[0]))
    choices = np.empty((laps.shape[1], count, preds.shape[0]), dtype=np.intp)
    rows = np.arange(count)[:, None]
    for t in range(laps.shape[1]):
        branch = np.einsum("cg,sxg->csx", laps[:, t], signs)
        total = metric[:, preds] + branch
        pick = np.argmax(total, axis=2)
        choices[t] = pick
        metric = np.take_along_axis(total, pick[..., None], axis=2)[..., 0]
        metric -= metric.max(axis=1, keepdims=True)
    state = np.argmax(metric, axis=1)
    bits = np.empty((laps.shape[1], count), dtype=np.uint8)
    shift = K_CONSTRAINT - 2
    for t in range(laps.shape[1] - 1, -1, -1):
        bits[t] = state >> shift
        state = preds[state, choices[t][rows[:, 0], state]]
    return bits[N_INFO : 2 * N_INFO].T.copy()


# --------------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------------


def _resample(x: npt.NDArray[np.floating], source: int, target: int) -> Audio:
    """Polyphase resampling along axis 0 (exact rational ratio)."""
    if source == target:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(target, source)
    up, down = ratio.numerator, ratio.denominator
    from scipy.signal import resample_poly  # imported here: scipy.signal takes ~1 s to load

    y = resample_poly(x, up, down, axis=0, window=_resampling_filter(up, down))
    return np.asarray(y, dtype=np.float32)


@lru_cache(maxsize=16)
def _resampling_filter(up: int, down: int) -> npt.NDArray[np.float32]:
    """A short Kaiser low-pass for polyphase resampling (the mark lives far below Nyquist)."""
    width = max(up, down)
    from scipy.signal import firwin

    taps = firwin(2 * RESAMPLE_HALF_LENGTH * width + 1, 1.0 / width, window=("kaiser", 5.0))
    return np.asarray(taps, dtype=np.float32)


def _frames(x: Audio, size: int, hop: int) -> Audio:
    """Overlapping frames of a 1-D signal (a strided view, no copy): (n_frames, size)."""
    count = 1 + (len(x) - size) // hop
    return np.lib.stride_tricks.as_strided(
        x, shape=(count, size), strides=(x.strides[0] * hop, x.strides[0]), writeable=False
    )


def _mono(audio: npt.NDArray[np.floating]) -> Audio:
    """Mid channel of (n,) or (n, channels) audio as float32."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        return x
    return np.asarray(x @ np.full(x.shape[1], 1.0 / x.shape[1], np.float32), dtype=np.float32)


def mark_snr_db(original: npt.NDArray[np.floating], marked: npt.NDArray[np.floating]) -> float:
    """SNR of the mark in dB: original energy over the energy of (marked - original)."""
    a = np.asarray(original, dtype=np.float64)
    noise = float(np.sum((np.asarray(marked, dtype=np.float64) - a) ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(float(np.sum(a**2)) / noise)


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------


def _cell_signs(output_id: int, key: bytes) -> npt.NDArray[np.float64]:
    """The +-1 sign of every cell of one period: chip x (1 for pilots, coded bit otherwise)."""
    lay = _layout(key)
    coded = 2.0 * _encode(_payload_bits(output_id, key)).astype(np.float64) - 1.0
    data = np.where(lay.bit >= 0, coded[np.maximum(lay.bit, 0)], 1.0)
    return lay.chips * data


def _watermark_16k(
    mid: Audio, signs: npt.NDArray[np.float64], budget: float, max_gain: float
) -> tuple[Audio, float]:
    """The mark at 16 kHz and its strength: cell gains synthesised in band only.

    Each cell's gain is ``signs x min(strength x shape x lift, mask cap, max_gain)``
    (``_cell_shape``, ``_frame_lift``, ``_mask_cap``); ``strength`` is found by bisection so
    that the mark's energy is ``budget`` times the energy of ``mid``.
    """
    half = HOP // 2
    per_cell = CELL // HOP
    padded = np.concatenate([np.zeros(half, np.float32), mid, np.zeros(N_FFT, np.float32)])
    window = np.sqrt(np.hanning(N_FFT + 1)[:N_FFT]).astype(np.float32)
    frames = _frames(padded, N_FFT, HOP)
    n_cells = -(-len(frames) // per_cell)
    spec = fft.rfft(frames * window, axis=1)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / FS)
    band = np.searchsorted(_band_edges(), freqs, side="right") - 1
    in_band = (band >= 0) & (band < N_BANDS)
    lo, hi = int(np.argmax(in_band)), int(len(in_band) - np.argmax(in_band[::-1]))
    full = spec.real**2 + spec.imag**2
    power = full[:, lo:hi]
    total = float(np.sum(full))
    to_band = (band[lo:hi, None] == np.arange(N_BANDS)[None, :]).astype(np.float32)
    per_frame = np.zeros((n_cells * per_cell, N_BANDS))
    per_frame[: len(frames)] = power.astype(np.float32) @ to_band
    energy = per_frame.reshape(n_cells, per_cell, N_BANDS).sum(axis=1)
    mask = np.full((n_cells * per_cell, N_BANDS), np.inf)
    mask[: len(frames)] = masking.threshold(full, window)[:, lo:hi] @ to_band
    limit = np.minimum(_mask_cap(per_frame, mask), max_gain)
    shape = _cell_shape(energy) * _frame_lift(energy)
    strength = _strength(shape, energy, budget * total, limit)
    gains = signs[np.arange(n_cells) % PERIOD] * np.minimum(strength * shape, limit)
    cell_of_frame = np.arange(len(frames)) // per_cell
    marked = np.zeros_like(spec)
    marked[:, lo:hi] = spec[:, lo:hi] * gains[cell_of_frame][:, band[lo:hi]]
    out_frames = fft.irfft(marked, n=N_FFT, axis=1).astype(np.float32) * window
    out = np.zeros(len(padded), np.float32)
    step = N_FFT // HOP
    for phase in range(step):
        block = out_frames[phase::step].reshape(-1)
        out[phase * HOP : phase * HOP + len(block)] += block
    return out[half : half + len(mid)], strength


def _strength(shape: Floats, energy: Floats, target: float, limit: Floats) -> float:
    """Bisect the strength whose capped cell gains put ``target`` energy into the mark."""
    lo, hi = 0.0, float(limit.max()) / max(float(shape.min()), EPS)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if float(np.sum(np.minimum(mid * shape, limit) ** 2 * energy)) > target:
            hi = mid
        else:
            lo = mid
    return lo


def _cell_shape(energy: Floats) -> Floats:
    """Relative gain per cell: larger in cells quieter than their frame (masked), clipped."""
    frame_level = np.exp(np.mean(np.log(energy + EPS), axis=1, keepdims=True))
    ratio = (frame_level / (energy + EPS)) ** SHAPE_EXP
    return np.asarray(np.clip(ratio, SHAPE_LO, SHAPE_HI), dtype=np.float64)


def _frame_lift(energy: Floats) -> Floats:
    """Relative gain per cell row: larger in frames quieter than the file's loud frames.

    White noise or a codec's noise floor set against a whole recording swamps a mark whose
    relative level is the same in quiet passages as in loud ones.  The lift is ``(reference /
    frame level)^LIFT_EXP`` in energy (frame level: geometric mean of its cells; reference: the
    LIFT_PERCENTILE of frame levels), clipped to 1..LIFT_MAX: with LIFT_EXP = 1 the relative
    gain grows as the inverse of the frame's energy, the best use of an energy budget when the
    detector's noise does not depend on level.  The mask cap decides how much the host hides.
    """
    level = np.mean(np.log(energy + EPS), axis=1, keepdims=True)
    reference = np.percentile(level, LIFT_PERCENTILE)
    return np.asarray(np.clip(np.exp(LIFT_EXP * (reference - level)), 1.0, LIFT_MAX))


def _mask_cap(energy: Floats, mask: Floats) -> Floats:
    """Largest relative gain per cell that keeps the mark under the masking threshold.

    ``energy`` and ``mask`` are per STFT frame and band (frames, bands); a gain ``g`` puts
    ``g^2 x energy`` of mark into a frame, so the cap is the square root of the smallest
    mask-to-energy ratio over the cell's frames, times MASK_MARGIN.
    """
    per_cell = CELL // HOP
    ratio = (mask / (energy + EPS)).reshape(-1, per_cell, energy.shape[1]).min(axis=1)
    return np.asarray(MASK_MARGIN * np.sqrt(ratio))


def embed(
    audio: npt.NDArray[np.floating],
    sample_rate: int,
    output_id: int,
    *,
    key: bytes = DEFAULT_KEY,
    target_snr_db: float = 30.5,
    max_gain: float = G_MAX,
) -> Embedding:
    """Mark ``audio`` ((n,) or (n, channels), any rate) with ``output_id`` at the SNR floor.

    ``max_gain`` caps any cell's relative amplitude change (0.7: -10.5 dB .. +4.6 dB); a lower
    cap is gentler on sparse material and costs little robustness (docs/PROVENANCE.md).
    """
    if not 0 <= output_id < 1 << ID_BITS:
        raise WatermarkError(f"output id must be in 0..{(1 << ID_BITS) - 1}, not {output_id}")
    if target_snr_db < 30.0:
        raise WatermarkError(f"target SNR must be >= 30 dB, not {target_snr_db}")
    x = np.asarray(audio, dtype=np.float32)
    if len(x) < sample_rate:
        raise WatermarkError("audio must be at least 1 s long")
    channels = 1 if x.ndim == 1 else x.shape[1]
    signal_energy = float(np.dot(x.reshape(-1), x.reshape(-1)))
    mid16 = _resample(_mono(x), sample_rate, FS)
    mid_energy = float(np.dot(mid16, mid16)) * sample_rate / FS * channels
    if mid_energy <= 0.0:
        raise WatermarkError("audio is silent")
    budget = signal_energy / mid_energy / 10 ** (target_snr_db / 10)
    if not 0.0 < max_gain < 1.0:
        raise WatermarkError(f"max_gain must be between 0 and 1, not {max_gain}")
    mark16, strength = _watermark_16k(mid16, _cell_signs(output_id, key), budget, max_gain)
    mark = _resample(mark16, FS, sample_rate)[: len(x)]
    mark = np.pad(mark, (0, len(x) - len(mark)))
    mark_energy = float(np.dot(mark, mark)) * channels
    if mark_energy <= 0.0:
        raise WatermarkError("audio is silent in the watermark band (700 Hz - 6.8 kHz)")
    wanted = float(np.sqrt(signal_energy / mark_energy / 10 ** (target_snr_db / 10)))
    correction = min(wanted, MAX_CORRECTION)
    scaled = correction * mark
    marked = x + (scaled if x.ndim == 1 else scaled[:, None])
    return Embedding(
        audio=marked,
        sample_rate=sample_rate,
        output_id=output_id,
        snr_db=10.0 * float(np.log10(signal_energy / (correction**2 * mark_energy))),
        strength=strength * correction,
    )


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _hypotheses() -> list[tuple[Axis, float]]:
    """Warps to try: no warp first, then speed, tempo and pitch over +-5 % in 0.25 % steps."""
    steps = round(SCALE_SPAN / SCALE_STEP)
    scales = [1.0 + SCALE_STEP * i for i in range(-steps, steps + 1) if i != 0]
    axes: tuple[Axis, ...] = ("speed", "tempo", "pitch")
    first: list[tuple[Axis, float]] = [("speed", 1.0)]
    return first + [(axis, s) for axis in axes for s in scales]


def _fine_power(mid16: Audio) -> Audio:
    """Power spectrogram at an 8 ms hop, 32 ms Hann frames: (frames, bins)."""
    padded = np.concatenate([mid16, np.zeros(N_FFT, np.float32)])
    window = np.hanning(N_FFT + 1)[:N_FFT].astype(np.float32)
    spec = fft.rfft(_frames(padded, N_FFT, FINE) * window, axis=1)
    return np.asarray(spec.real**2 + spec.imag**2, dtype=np.float32)


def _band_energy(cum_bins: Floats, power: Audio, freq_scale: float) -> Floats:
    """Band energies per fine frame with band edges scaled by ``freq_scale``: (frames, bands)."""
    pos = _band_edges() * freq_scale / (FS / N_FFT) + 0.5
    idx = np.clip(np.floor(pos).astype(np.intp), 0, power.shape[1] - 1)
    frac = pos - idx
    at_edges = cum_bins[:, idx] + frac * power[:, idx]
    return np.diff(at_edges, axis=1)


def _cells(cum_time: Floats, length: float, phase_step: float) -> Floats:
    """Cell energies, cells ``length`` fine hops long, at phases ``phase_step`` apart.

    Returns (phases, cells, bands) in float32; edges between fine hops are interpolated.
    """
    phases = np.arange(0.0, length, phase_step)
    n_cells = int((cum_time.shape[0] - 1 - phases[-1]) // length)
    edges = phases[:, None] + length * np.arange(n_cells + 1)[None, :]
    idx = np.floor(edges).astype(np.intp)
    frac = (edges - idx)[..., None]
    nxt = np.minimum(idx + 1, cum_time.shape[0] - 1)
    at_edges = cum_time[idx] + frac * (cum_time[nxt] - cum_time[idx])
    return np.asarray(np.diff(at_edges, axis=1), dtype=np.float32)


def _normalise(energy: Floats) -> Floats:
    """The detector's statistic per cell: the host-whitened log energy, weighted by reliability.

    ``energy`` is (phases, cells, bands).  The residual (``_residual``) is weighted by the gain
    the embedder gives the cell (larger in cells quieter than their frame, see ``_cell_shape``)
    over the local variance of the residual (WEIGHT_SPAN cells x bands): a soft-decision
    weighting that lets reliable cells count more.
    """
    logs = np.log(energy + np.float32(EPS))
    z = _residual(logs)
    level = logs.mean(axis=2, keepdims=True)
    shape = np.clip(np.exp(SHAPE_EXP * (level - logs)), SHAPE_LO, SHAPE_HI)
    expected = np.minimum(WEIGHT_GAIN * shape, G_MAX)
    power = z * z
    local = _box(power, *WEIGHT_SPAN) + WEIGHT_FLOOR * power.mean(axis=(1, 2), keepdims=True)
    return np.asarray(z * expected / (local + EPS), dtype=np.float32)


def _box(x: Floats, cells: int, bands: int) -> Floats:
    """Mean over a ``cells`` x ``bands`` box around each cell of (phases, cells, bands), edges
    repeated (both sizes odd)."""
    ht, hf = cells // 2, bands // 2
    n, b = x.shape[1], x.shape[2]
    wide = np.concatenate([x[:, :, :1]] * hf + [x] + [x[:, :, -1:]] * hf, axis=2)
    across = wide[:, :, :b].copy()
    for k in range(1, bands):
        across += wide[:, :, k : k + b]
    zero = np.zeros_like(across[:, :1])
    tall = np.concatenate([zero] + [across[:, :1]] * ht + [across] + [across[:, -1:]] * ht, axis=1)
    c = np.cumsum(tall, axis=1)
    return np.asarray((c[:, cells : cells + n] - c[:, :n]) / (cells * bands), dtype=np.float32)


def _residual(logs: Floats) -> Floats:
    """Log cell energies (phases, cells, bands) minus a linear prediction from their neighbours.

    The prediction (PREDICT_*) was fitted by least squares on unmarked music: the host's log
    energy is close to a level per frame plus a spectrum per band, so it is predicted from the
    cells before and after (time), below and above (frequency), the four diagonals and the
    frame means.  The weights sum to 1, so a volume change does not move the result (a smooth
    equaliser moves it by about 1 % of its range in dB).
    """
    t = np.concatenate([logs[:, :1], logs, logs[:, -1:]], axis=1)
    both = np.concatenate([t[:, :, :1], t, t[:, :, -1:]], axis=2)
    time_sum = both[:, :-2, 1:-1] + both[:, 2:, 1:-1]
    freq_sum = both[:, 1:-1, :-2] + both[:, 1:-1, 2:]
    diag_sum = both[:, :-2, :-2] + both[:, :-2, 2:] + both[:, 2:, :-2] + both[:, 2:, 2:]
    level = t.mean(axis=2, keepdims=True)
    level_pred = PREDICT_LEVEL[0] * level[:, 1:-1]
    level_pred = level_pred + PREDICT_LEVEL[1] * (level[:, :-2] + level[:, 2:])
    predicted = (
        PREDICT_TIME * time_sum + PREDICT_FREQ * freq_sum + PREDICT_DIAG * diag_sum + level_pred
    )
    return np.asarray(logs - predicted, dtype=np.float32)


def _fold(z: Floats) -> Floats:
    """Sum cells at the same codeword position: (ph, cells, bands) -> (ph, PERIOD, bands)."""
    phases, cells, bands = z.shape
    pad = -cells % PERIOD
    padded = np.concatenate([z, np.zeros((phases, pad, bands), z.dtype)], axis=1)
    return np.asarray(padded.reshape(phases, -1, PERIOD, bands).sum(axis=1), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One warp's best alignment: pilot score (in standard deviations), folded cells, shift."""

    score: float
    axis: Axis
    scale: float
    folded: Floats
    shift: int


class _Analysis:
    """A clip's spectrogram, with the cumulative band energies of each frequency warp cached."""

    def __init__(self, mid16: Audio) -> None:
        self.power = _fine_power(mid16)
        self.cum_bins = np.concatenate(
            [np.zeros((self.power.shape[0], 1)), np.cumsum(self.power, axis=1, dtype=np.float64)],
            axis=1,
        )
        self._cum_time: dict[float, Floats] = {}

    def cum_time(self, freq_scale: float) -> Floats:
        """Cumulative (over fine hops) band energies with band edges scaled by ``freq_scale``."""
        if freq_scale not in self._cum_time:
            bands = _band_energy(self.cum_bins, self.power, freq_scale)
            self._cum_time[freq_scale] = np.concatenate(
                [np.zeros((1, N_BANDS)), np.cumsum(bands, axis=0)]
            )
        return self._cum_time[freq_scale]

    def scan(self, axis: Axis, scale: float, lay: _Layout, phase_step: float) -> _Candidate:
        """Best pilot correlation of one warp over cell phases and codeword shifts."""
        time_scale = 1.0 if axis == "pitch" else scale
        freq_scale = 1.0 if axis == "tempo" else scale
        z = _normalise(_cells(self.cum_time(freq_scale), CELL / FINE / time_scale, phase_step))
        folded = _fold(z)
        scores = folded.reshape(len(folded), -1) @ lay.rolled_pilots.reshape(PERIOD, -1).T
        spread = np.sqrt(np.mean(z**2, axis=(1, 2)) * lay.n_pilot * z.shape[1] / PERIOD) + EPS
        scores /= spread[:, None]
        phase, shift = np.unravel_index(int(np.argmax(scores)), scores.shape)
        return _Candidate(float(scores[phase, shift]), axis, scale, folded[phase], int(shift))


def _decode(candidates: list[_Candidate], lay: _Layout, key: bytes) -> tuple[int, int] | None:
    """(index, id) of the first candidate whose decoded check bits match, or None."""
    soft = np.stack([_soft_bits(c.folded, c.shift, lay) for c in candidates])
    for rank, bits in enumerate(_viterbi(soft)):
        output_id = _parse_bits(bits, key)
        if output_id is not None:
            return rank, output_id
    return None


def detect(
    audio: npt.NDArray[np.floating],
    sample_rate: int,
    *,
    key: bytes = DEFAULT_KEY,
    search: bool = True,
) -> Detection:
    """Find the output id in ``audio`` (any excerpt >= about 5 s), or report none.

    The unwarped alignment is decoded first; if its check bits fail, every warp is scanned at
    half the phase resolution, and the best CANDIDATES warps are rescanned at full resolution
    and decoded in order of score.
    """
    mid16 = _resample(_mono(audio), sample_rate, FS)
    if len(mid16) < 3 * CELL:
        raise WatermarkError("audio is too short to carry a watermark (under 0.2 s)")
    lay = _layout(key)
    clip = _Analysis(mid16)
    tried = [clip.scan("speed", 1.0, lay, 1.0)]
    hit = _decode(tried, lay, key)
    if hit is None and search:
        coarse = [clip.scan(axis, scale, lay, 2.0) for axis, scale in _hypotheses()[1:]]
        coarse.sort(key=lambda c: -c.score)
        tried += [clip.scan(c.axis, c.scale, lay, 1.0) for c in coarse[:CANDIDATES]]
        searched = _decode(tried[1:], lay, key)
        hit = None if searched is None else (searched[0] + 1, searched[1])
    if hit is None:
        return Detection(None, None, None, max(c.score for c in tried), len(tried))
    found = tried[hit[0]]
    return Detection(hit[1], found.axis, found.scale, found.score, hit[0] + 1)


def _soft_bits(folded: Floats, shift: int, lay: _Layout) -> Floats:
    """Soft coded bits of a candidate: chip-weighted sums of its cells, per coded bit."""
    aligned = np.roll(folded, shift, axis=0)
    data = lay.bit >= 0
    weights = (aligned * lay.chips)[data]
    return np.bincount(lay.bit[data], weights=weights, minlength=N_CODED).astype(np.float64)


def embed_file(
    source: str | Path, target: str | Path, output_id: int, *, key: bytes = DEFAULT_KEY
) -> Embedding:
    """Mark the audio file ``source`` with ``output_id`` and write it to ``target``."""
    audio, rate = read_audio(source)
    marked = embed(audio, rate, output_id, key=key)
    write_audio(target, marked.audio, rate)
    return marked


def detect_file(path: str | Path, *, key: bytes = DEFAULT_KEY, search: bool = True) -> Detection:
    """Read the output id from the audio file at ``path``, or report none."""
    audio, rate = read_audio(path)
    return detect(audio, rate, key=key, search=search)
