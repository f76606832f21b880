"""Symbolic melodies: notes on an integer tick grid, with the key and metre they are read in.

Every symbolic part of Attune (scores, the reference generator, melodic similarity) speaks this
one representation. Times are integer ticks (``TICKS_PER_QUARTER`` per quarter note), so triplets
and dotted values are exact and arrays of them vectorise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

TICKS_PER_QUARTER = 12
"""Ticks per quarter note: divisible by 2, 3 and 4, so eighths, triplets, sixteenths are exact."""

MODES = ("major", "minor")


@dataclass(frozen=True, slots=True)
class Note:
    """One sounding note: MIDI pitch, onset and duration in ticks, and its (1-based) bar."""

    pitch: int
    onset: int
    duration: int
    bar: int

    def __post_init__(self) -> None:
        if not 0 <= self.pitch <= 127:
            raise ValueError(f"pitch: {self.pitch} is not a MIDI note number (0-127)")
        if self.onset < 0 or self.duration <= 0:
            raise ValueError(f"onset/duration: need onset >= 0 and duration > 0, got "
                             f"{self.onset}/{self.duration}")


@dataclass(frozen=True, slots=True)
class Melody:
    """A monophonic line (the tune, or a chorale's soprano) with an optional bass line.

    ``tonic`` is the pitch class (0 = C) of the key and ``mode`` its mode; ``bar_ticks`` is the
    length of a full bar. ``bass`` holds the lowest voice of a part-song, empty for a tune.
    ``source`` names where it came from (``music21:<corpus path>[#<tune number>]``, or an id).
    """

    notes: tuple[Note, ...]
    tonic: int
    mode: str
    bar_ticks: int
    bass: tuple[Note, ...] = ()
    source: str = ""
    title: str = ""
    tempo_bpm: float = field(default=96.0)

    def __post_init__(self) -> None:
        if not 0 <= self.tonic <= 11:
            raise ValueError(f"tonic: {self.tonic} is not a pitch class (0-11)")
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.bar_ticks <= 0:
            raise ValueError(f"bar_ticks: {self.bar_ticks} must be positive")
        for line in (self.notes, self.bass):
            for before, after in itertools.pairwise(line):
                if after.onset < before.onset:
                    raise ValueError(f"notes: onset {after.onset} comes before {before.onset}")

    def __len__(self) -> int:
        return len(self.notes)

    def pitches(self) -> NDArray[np.int64]:
        """MIDI pitches of the melody notes, in order."""
        return np.fromiter((n.pitch for n in self.notes), dtype=np.int64, count=len(self.notes))

    def intervals(self) -> NDArray[np.int64]:
        """Semitone steps between consecutive melody notes (one fewer than the notes)."""
        return np.diff(self.pitches())

    def degrees(self) -> NDArray[np.int64]:
        """Pitches relative to the tonic in semitones (the tonic nearest middle C is 0)."""
        return self.pitches() - (60 + self.tonic if self.tonic < 6 else 48 + self.tonic)

    def onsets(self) -> NDArray[np.int64]:
        """Onsets of the melody notes, in ticks."""
        return np.fromiter((n.onset for n in self.notes), dtype=np.int64, count=len(self.notes))

    def durations(self) -> NDArray[np.int64]:
        """Durations of the melody notes, in ticks."""
        return np.fromiter((n.duration for n in self.notes), dtype=np.int64, count=len(self.notes))

    def bars(self) -> NDArray[np.int64]:
        """Bar number of each melody note."""
        return np.fromiter((n.bar for n in self.notes), dtype=np.int64, count=len(self.notes))
