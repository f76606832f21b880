"""A simple psychoacoustic masking model: how much noise each frame of a signal hides.

Used by the watermark to keep its mark under the host's masking threshold, and by its
benchmark to report an objective audibility figure (noise-to-mask ratio, NMR, as in PEAQ)
in place of a listening test.  Deliberately conservative and level-independent:

1. Power spectra of 32 ms frames (16 kHz, 512-point FFT) are summed into partitions 0.5 Bark
   wide (Zwicker's Bark scale).
2. Each partition's energy is spread over the others with Schroeder's spreading function
   (about +25 dB/Bark below a masker, -10 dB/Bark above).
3. The masking threshold is the spread energy lowered by ``14.5 + z`` dB (z in Bark): the
   tone-masking-noise offset of MPEG psychoacoustic model 2, used whatever the tonality, so
   noise-like music (which masks more) is never credited with more than tonal music.
4. It is floored by the absolute threshold of hearing (Terhardt), with a full-scale sine at
   92 dB SPL as in PEAQ; this only matters in near-silence.

No temporal (forward or backward) masking is credited.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.floating[Any]]
Model = Literal["peaq", "tmn"]

FS: Final[int] = 16_000
N_FFT: Final[int] = 512
PARTITION_BARK: Final[float] = 0.5
FULL_SCALE_SPL: Final[float] = 92.0
EPS: Final[float] = 1e-20


def bark(freqs: Floats) -> Floats:
    """Zwicker's critical-band rate in Bark of frequencies in Hz."""
    f = np.asarray(freqs, dtype=np.float64)
    return np.asarray(13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2))


def spreading_db(dz: Floats) -> Floats:
    """Schroeder's spreading function in dB for a maskee ``dz`` Bark above the masker."""
    x = np.asarray(dz, dtype=np.float64) + 0.474
    return np.asarray(15.81 + 7.5 * x - 17.5 * np.sqrt(1.0 + x * x))


def offset_db(z: Floats, model: Model) -> Floats:
    """How far (dB) the masking threshold sits under the spread energy at ``z`` Bark.

    ``"peaq"``: PEAQ's masking offset (ITU-R BS.1387, FFT model), 3 dB up to 12 Bark and
    0.25 dB per Bark above.  ``"tmn"``: MPEG model 2's tone-masking-noise offset, 14.5 + z dB,
    the most conservative textbook figure (right for a pure-tone host and a noise-like probe).
    """
    zz = np.asarray(z, dtype=np.float64)
    if model == "tmn":
        return np.asarray(14.5 + zz)
    return np.asarray(np.where(zz <= 12.0, 3.0, 0.25 * zz))


def hearing_threshold_db(freqs: Floats) -> Floats:
    """Terhardt's absolute threshold of hearing in dB SPL (clamped below 20 Hz)."""
    k = np.maximum(np.asarray(freqs, dtype=np.float64), 20.0) / 1000.0
    return np.asarray(3.64 * k**-0.8 - 6.5 * np.exp(-0.6 * (k - 3.3) ** 2) + 1e-3 * k**4)


@lru_cache(maxsize=8)
def _model(n_bins: int, model: Model) -> tuple[Floats, Floats, Floats]:
    """Bins-to-partitions matrix (bins, parts), partition spreading+offset matrix (parts,
    parts) scaled per bin share, and the partition of each bin, for a ``n_bins`` spectrum."""
    freqs = np.arange(n_bins) * FS / N_FFT
    z = bark(freqs)
    part = np.floor(z / PARTITION_BARK).astype(np.intp)
    n_parts = int(part.max()) + 1
    to_part = np.zeros((n_bins, n_parts))
    to_part[np.arange(n_bins), part] = 1.0
    counts = np.maximum(to_part.sum(axis=0), 1.0)
    centre = (to_part.T @ z) / counts
    spread = 10.0 ** (spreading_db(centre[None, :] - centre[:, None]) / 10.0)
    spread /= spread.sum(axis=0, keepdims=True)  # a flat spectrum spreads to itself
    spread *= 10.0 ** (-offset_db(centre, model)[None, :] / 10.0)
    # a bin's share of its partition's threshold, in proportion to its width (one bin each)
    return to_part, spread, (to_part / counts[None, :])


def threshold(power: Floats, window: Floats, model: Model = "peaq") -> Floats:
    """Masking threshold per frame and bin, in the units of ``power`` (frames, bins).

    ``power`` holds |FFT|^2 of frames taken with ``window`` (length N_FFT), which calibrates
    the absolute threshold: a full-scale sine peaks at FULL_SCALE_SPL dB SPL.
    """
    p = np.asarray(power, dtype=np.float64)
    to_part, spread, share = _model(p.shape[1], model)
    masked = ((p @ to_part) @ spread) @ share.T
    full_scale = (float(np.sum(window)) / 2.0) ** 2
    freqs = np.arange(p.shape[1]) * FS / N_FFT
    quiet = full_scale * 10.0 ** ((hearing_threshold_db(freqs) - FULL_SCALE_SPL) / 10.0)
    return np.asarray(np.maximum(masked, quiet[None, :]))


def _spectra(x: Floats) -> tuple[Floats, Floats]:
    """Hann-windowed power spectra of 32 ms frames at a 16 ms hop (frames, bins), and the
    window."""
    sig = np.asarray(x, dtype=np.float64)
    hop = N_FFT // 2
    window = np.hanning(N_FFT + 1)[:N_FFT]
    count = max(0, 1 + (len(sig) - N_FFT) // hop)
    idx = np.arange(N_FFT)[None, :] + hop * np.arange(count)[:, None]
    spec = np.fft.rfft(sig[idx] * window, axis=1)
    return np.asarray(spec.real**2 + spec.imag**2), window


@dataclass(frozen=True, slots=True)
class NoiseToMask:
    """How far a noise sits under a host's masking threshold (PEAQ-style figures, this model).

    ``total_db``: the mean over frames of each frame's NMR (noise over threshold, averaged
    over partitions) in dB (PEAQ's total NMR); ``frames_over_0db``: the share of frames
    whose NMR is above 0 dB; ``disturbed``: the share of frames in which some partition is
    more than 1.5 dB over the threshold (PEAQ's relative disturbed frames).
    """

    total_db: float
    frames_over_0db: float
    disturbed: float


def noise_to_mask(
    host: Floats,
    noise: Floats,
    band: tuple[float, float] = (0.0, FS / 2),
    model: Model = "peaq",
) -> NoiseToMask:
    """NMR of ``noise`` against the masking threshold of ``host`` (both mono at 16 kHz).

    Only the 0.5-Bark partitions inside ``band`` (Hz) count, and frames with no host energy
    at all are left out.
    """
    host_power, window = _spectra(host)
    noise_power, _ = _spectra(noise)
    to_part, _, _ = _model(host_power.shape[1], model)
    freqs = np.arange(host_power.shape[1]) * FS / N_FFT
    inside = (freqs >= band[0]) & (freqs <= band[1])
    cols = (to_part * inside[:, None])[:, to_part[inside].sum(axis=0) > 0]
    mask = threshold(host_power, window, model) @ cols
    live = host_power.sum(axis=1) > 0
    ratio = ((noise_power @ cols + EPS) / (mask + EPS))[live]
    per_frame = ratio.mean(axis=1)
    return NoiseToMask(
        total_db=10.0 * float(np.log10(np.mean(per_frame))),
        frames_over_0db=float(np.mean(per_frame > 1.0)),
        disturbed=float(np.mean(ratio.max(axis=1) > 10.0**0.15)),
    )
