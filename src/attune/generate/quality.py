"""How good and how original the generator's output is: histogram KL and the copy rate.

KL is taken as KL(reference || generated) in nats: the held-out works are the truth, and the
generator is charged for the mass it fails to put where they have it. Both histograms get half a
count per bin (Jeffreys smoothing) so that an empty bin does not make the divergence infinite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from attune.generate.markov import _token_ids
from attune.melody.notes import Melody

MAX_INTERVAL = 12
"""Intervals are histogrammed over -12..12 semitones; wider leaps fall in the end bins."""


def _kl(reference: NDArray[np.float64], generated: NDArray[np.float64]) -> float:
    """KL(reference || generated) in nats of two count vectors, half a count added per bin."""
    p = (reference + 0.5) / (reference.sum() + 0.5 * len(reference))
    q = (generated + 0.5) / (generated.sum() + 0.5 * len(generated))
    return float(np.sum(p * np.log(p / q)))


def _interval_counts(melodies: Iterable[Melody]) -> NDArray[np.float64]:
    """Counts of melodic intervals (clipped to +-MAX_INTERVAL) over melodies."""
    counts = np.zeros(2 * MAX_INTERVAL + 1)
    for melody in melodies:
        steps = np.clip(melody.intervals(), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
        counts += np.bincount(steps, minlength=len(counts))
    return counts


def _pitch_class_counts(melodies: Iterable[Melody]) -> NDArray[np.float64]:
    """Counts of pitch classes relative to each melody's tonic."""
    counts = np.zeros(12)
    for melody in melodies:
        counts += np.bincount((melody.pitches() - melody.tonic) % 12, minlength=12)
    return counts


def interval_kl(generated: Sequence[Melody], reference: Sequence[Melody]) -> float:
    """KL(reference || generated), nats, of melodic interval histograms (-12..12, clipped)."""
    return _kl(_interval_counts(reference), _interval_counts(generated))


def pitch_class_kl(generated: Sequence[Melody], reference: Sequence[Melody]) -> float:
    """KL(reference || generated), nats, of pitch-class histograms relative to the tonic."""
    return _kl(_pitch_class_counts(reference), _pitch_class_counts(generated))


def copy_rate(generated: Sequence[Melody], training: Sequence[Melody], *,
              window: int = 8) -> float:
    """Share of the generated ``window``-token runs found verbatim in a training work.

    Runs are compared as the model's tokens (pitch relative to the tonic, and duration), so a
    transposed copy counts as a copy.
    """
    seen: set[bytes] = set()
    for melody in training:
        ids = _token_ids(melody)
        if len(ids) >= window:
            view = np.lib.stride_tricks.sliding_window_view(ids, window)
            seen.update(row.tobytes() for row in np.ascontiguousarray(view))
    hits = total = 0
    for melody in generated:
        ids = _token_ids(melody)
        if len(ids) >= window:
            view = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(ids, window))
            hits += sum(row.tobytes() in seen for row in view)
            total += len(view)
    return hits / total if total else 0.0
