"""Chorale-style harmoniser: a bass line learned from the chorales' soprano and bass, per work.

On every beat the soprano sounds, the bass scale degree is drawn from a Witten-Bell model over
the contexts (soprano degree, previous bass degree, previous soprano degree), backed off to
shorter ones; its counts are kept per training work, as in the melody model, so every bass note
splits exactly over the works that taught it. The chord is the most idiomatic triad holding the
soprano and bass degrees (so the bass is its root, third or fifth), and alto and tenor take its
other tones by the smoothest voice leading in their ranges, without crossing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from attune.generate.markov import (
    PRIOR,
    CountTable,
    IntArray,
    _meta_array,
    _read_npz,
    _write_npz,
)
from attune.melody.notes import TICKS_PER_QUARTER, Melody, Note

BEAT = TICKS_PER_QUARTER
"""One chord per quarter note."""
NONE = 12
"""The 'no previous degree' symbol (start of a phrase, after a rest)."""
RANGES = {"alto": (55, 74), "tenor": (48, 67), "bass": (40, 62)}
"""MIDI ranges of the lower voices (G3-D5, C3-G4, E2-D4)."""
CENTRE = 50
"""The bass stays near D3: a step away from it weighs half a step of voice leading."""
QUALITIES = {"major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6)}
DIATONIC = {
    "major": ((0, "major"), (7, "major"), (5, "major"), (9, "minor"), (2, "minor"),
              (4, "minor"), (11, "diminished")),
    "minor": ((0, "minor"), (7, "major"), (5, "minor"), (8, "major"), (3, "major"),
              (10, "major"), (2, "diminished"), (11, "diminished"), (7, "minor")),
}
"""Triads (root degree, quality) of each mode, most idiomatic first."""
FORMAT = "attune-markov-harmony/1"
_COLUMNS = ("soprano", "bass", "prev_bass", "prev_soprano")


def _triads(mode: str) -> list[tuple[int, str]]:
    """Every major, minor and diminished triad, the mode's own first (in order of preference)."""
    own = list(DIATONIC[mode])
    return own + [(root, quality) for quality in QUALITIES for root in range(12)
                  if (root, quality) not in own]


def chord_for(soprano: int, bass: int, mode: str) -> tuple[int, ...] | None:
    """The preferred triad's degrees (root first) holding both degrees, or None if none does."""
    for root, quality in _triads(mode):
        tones = tuple((root + step) % 12 for step in QUALITIES[quality])
        if soprano in tones and bass in tones:
            return tones
    return None


def _sounding(notes: Sequence[Note], times: IntArray) -> IntArray:
    """The pitch sounding at each time (-1 where the line rests)."""
    if not notes:
        return np.full(len(times), -1, dtype=np.int64)
    onsets = np.asarray([n.onset for n in notes], dtype=np.int64)
    ends = onsets + np.asarray([n.duration for n in notes], dtype=np.int64)
    pitches = np.asarray([n.pitch for n in notes], dtype=np.int64)
    at = np.searchsorted(onsets, times, side="right") - 1
    ok = (at >= 0) & (times < ends[np.maximum(at, 0)])
    return np.where(ok, pitches[np.maximum(at, 0)], -1)


def _beats(notes: Sequence[Note]) -> IntArray:
    """The beat times spanning a line."""
    if not notes:
        return np.zeros(0, dtype=np.int64)
    end = max(n.onset + n.duration for n in notes)
    return np.arange(notes[0].onset // BEAT * BEAT, end, BEAT, dtype=np.int64)


def _events(work: Melody) -> dict[str, IntArray]:
    """The training events of a part-song: soprano and bass degrees on every shared beat."""
    times = _beats(work.notes)
    soprano = _sounding(work.notes, times)
    bass = _sounding(work.bass, times)
    both = (soprano >= 0) & (bass >= 0)
    s = np.where(both, (soprano - work.tonic) % 12, NONE)
    b = np.where(both, (bass - work.tonic) % 12, NONE)
    prev_b = np.concatenate(([NONE], b[:-1]))
    prev_s = np.concatenate(([NONE], s[:-1]))
    return {"soprano": s[both], "bass": b[both], "prev_bass": prev_b[both],
            "prev_soprano": prev_s[both]}


def _keys(s: IntArray, prev_b: IntArray, prev_s: IntArray) -> list[IntArray]:
    """Context keys of the four levels: (), (s), (s, prev bass), (s, prev bass, prev soprano)."""
    level2 = s * 13 + prev_b
    return [np.zeros(len(s), dtype=np.int64), s, level2, level2 * 13 + prev_s]


@dataclass(frozen=True)
class Harmonisation:
    """Four parts (soprano, alto, tenor, bass) and each bass note's provenance.

    ``provenance[i]`` maps work id -> probability mass of bass note i's degree (key -1: the
    prior), summing to its probability under the model; ``log2_prob`` sums their log2.
    """

    parts: tuple[tuple[Note, ...], ...]
    provenance: tuple[dict[int, float], ...]
    log2_prob: float


def _voice(tones: Sequence[int], soprano: int, bass: int, previous: tuple[int, ...] | None,
           slack: int) -> tuple[int, int] | None:
    """Alto and tenor pitches: chord tones, in range (widened by ``slack``), the smoothest."""
    def pitches(lo: int, hi: int) -> list[int]:
        return [p for p in range(lo - slack, hi + slack + 1) if p % 12 in tones]

    best: tuple[float, int, int] | None = None
    for alto, tenor in product(pitches(*RANGES["alto"]), pitches(*RANGES["tenor"])):
        if not bass <= tenor <= alto <= soprano or soprano - alto > 12 or alto - tenor > 12:
            continue
        cost = 6.0 * len(set(tones) - {p % 12 for p in (soprano, alto, tenor, bass)})
        cost += 3.0 * ((alto == soprano) + (tenor == alto) + (tenor == bass))
        if previous is None:
            cost += 0.1 * (abs(alto - 64) + abs(tenor - 57))
        else:
            cost += abs(alto - previous[1]) + abs(tenor - previous[2])
            cost += _parallels(previous, (soprano, alto, tenor, bass))
        if best is None or (cost, alto, tenor) < best:
            best = (cost, alto, tenor)
    return None if best is None else (best[1], best[2])


def _parallels(before: tuple[int, ...], after: tuple[int, ...]) -> float:
    """A penalty for parallel fifths and octaves between two chords (soprano, alto, tenor, bass)."""
    penalty = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            old, new = (before[i] - before[j]) % 12, (after[i] - after[j]) % 12
            moved = before[i] != after[i] and before[j] != after[j]
            if moved and old == new and new in (0, 7):
                penalty += 4.0
    return penalty


class Harmoniser:
    """Learns bass degrees under a soprano from part-songs; harmonises melodies in four parts."""

    def __init__(self, works: Sequence[int], modes: Sequence[str],
                 events: Sequence[Mapping[str, IntArray]]) -> None:
        """Count the events (one mapping of columns per work); use train() rather than this."""
        if any(w < 0 for w in works) or len(set(works)) != len(works):
            raise ValueError("works: ids must be distinct and >= 0 (-1 marks the prior)")
        self.works: tuple[int, ...] = tuple(works)
        self.modes: tuple[str, ...] = tuple(modes)
        self._events = tuple({c: np.asarray(e[c], dtype=np.int64) for c in _COLUMNS}
                             for e in events)
        column = {c: np.concatenate([e[c] for e in self._events]) if self._events
                  else np.zeros(0, dtype=np.int64) for c in _COLUMNS}
        owner = np.repeat(np.arange(len(self._events), dtype=np.int64),
                          [len(e["bass"]) for e in self._events])
        keys = _keys(column["soprano"], column["prev_bass"], column["prev_soprano"])
        self._table = CountTable.build(keys, column["bass"], owner, 12)

    @classmethod
    def train(cls, works: Mapping[int, Melody]) -> Harmoniser:
        """Count each part-song's (soprano, bass) beats; works without a bass line are refused."""
        ids = sorted(works)
        missing = [w for w in ids if not works[w].bass]
        if missing or not ids:
            raise ValueError(f"works: need part-songs with a bass line (none in {missing[:5]})")
        return cls(ids, [works[w].mode for w in ids], [_events(works[w]) for w in ids])

    def _table_for(self, mode: str) -> CountTable:
        """The counts of the works in ``mode`` (all works when none is)."""
        mask = np.asarray(self.modes) == mode
        return self._table if mask.all() or not mask.any() else self._table.restrict(mask)

    def harmonise(self, melody: Melody, *, seed: int) -> Harmonisation:
        """Four-part harmony under ``melody``: one chord per beat the melody sounds on."""
        rng = np.random.default_rng(seed)
        table = self._table_for(melody.mode)
        times = _beats(melody.notes)
        soprano = _sounding(melody.notes, times)
        parts: tuple[list[Note], list[Note], list[Note]] = ([], [], [])
        provenance: list[dict[int, float]] = []
        log2p = 0.0
        prev_b = prev_s = NONE
        previous: tuple[int, ...] | None = None
        end = max((n.onset + n.duration for n in melody.notes), default=0)
        for time, top in zip(times.tolist(), soprano.tolist(), strict=True):
            if top < 0:
                prev_b = prev_s = NONE
                continue
            s = (top - melody.tonic) % 12
            keys = [int(k[0]) for k in _keys(np.asarray([s]), np.asarray([prev_b]),
                                             np.asarray([prev_s]))]
            dist = table.distribution(keys)
            fits = np.asarray([chord_for(s, b, melody.mode) is not None for b in range(12)])
            b = int(rng.choice(12, p=np.where(fits, dist, 0.0) / dist[fits].sum()))
            log2p += math.log2(float(dist[b]))
            provenance.append({(w if w == PRIOR else self.works[w]): m
                               for w, m in table.provenance(keys, b).items()})
            tones = tuple((t + melody.tonic) % 12 for t in chord_for(s, b, melody.mode) or ())
            voices = self._place(tones, top, (b + melody.tonic) % 12, previous)
            bar = time // melody.bar_ticks + 1
            duration = min(BEAT, end - time)
            for part, pitch in zip(parts, voices, strict=True):
                part.append(Note(pitch, time, duration, bar))
            previous = (top, *voices)
            prev_b, prev_s = b, s
        return Harmonisation((melody.notes, *(tuple(p) for p in parts)), tuple(provenance),
                             log2p)

    @staticmethod
    def _place(tones: Sequence[int], soprano: int, bass_class: int,
               previous: tuple[int, ...] | None) -> tuple[int, int, int]:
        """Pitches (alto, tenor, bass) for a chord under the soprano, near the previous chord."""
        for slack in (0, 5, 12, 24):
            lo, hi = RANGES["bass"]
            basses = [p for p in range(lo - slack, min(hi + slack, soprano - 1) + 1)
                      if p % 12 == bass_class]
            if not basses:
                continue
            anchor = previous[3] if previous else CENTRE
            bass = min(basses, key=lambda p: (abs(p - anchor) + 0.5 * abs(p - CENTRE), p))
            inner = _voice(tones, soprano, bass, previous, slack)
            if inner is not None:
                return inner[0], inner[1], bass
        return soprano, soprano, soprano - ((soprano - bass_class) % 12 or 12)

    def save(self, path: Path) -> str:
        """Write the harmoniser (its works' events; counts are rebuilt on load) as .npz."""
        meta = {"format": FORMAT, "works": list(self.works), "modes": list(self.modes)}
        arrays = {c: (np.concatenate([e[c] for e in self._events]) if self._events
                      else np.zeros(0, dtype=np.int64)).astype(np.int8) for c in _COLUMNS}
        lengths = np.asarray([len(e["bass"]) for e in self._events], dtype=np.int64)
        return _write_npz(path, {"meta": _meta_array(meta), "lengths": lengths, **arrays})

    @classmethod
    def load(cls, path: Path) -> Harmoniser:
        """Read a harmoniser written by save() (no pickle)."""
        meta, arrays = _read_npz(path, FORMAT)
        works, modes = meta["works"], meta["modes"]
        if not (isinstance(works, list) and isinstance(modes, list)):
            raise ValueError(f"{path}: bad metadata")
        bounds = np.cumsum(arrays["lengths"])[:-1]
        split = {c: np.split(arrays[c], bounds) for c in _COLUMNS}
        events = [{c: split[c][i] for c in _COLUMNS} for i in range(len(works))]
        return cls([int(w) for w in works], [str(m) for m in modes], events)
