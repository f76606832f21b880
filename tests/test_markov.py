"""The reference melody model and harmoniser: exact probabilities, provenance, copying, files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from attune.generate.harmony import QUALITIES, RANGES, Harmoniser, chord_for
from attune.generate.markov import (
    DURATIONS,
    PRIOR,
    START,
    VOCAB,
    CountTable,
    MarkovModel,
    tokens_of,
    tonic_pitch,
)
from attune.generate.quality import copy_rate, interval_kl, pitch_class_kl
from attune.melody.notes import Melody, Note

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


def tune(seed: int, length: int = 40, *, mode: str = "major", tonic: int = 0,
         bass: bool = False) -> Melody:
    """A random stepwise scale tune with a work-specific rhythm.

    With ``bass`` it is a part-song: the tune an octave up, over a bass a third or sixth below.
    """
    rng = np.random.default_rng(seed)
    scale = MAJOR if mode == "major" else MINOR
    rhythm = [int(d) for d in rng.choice([6, 12, 12, 24], size=4)]
    step = int(rng.integers(7, 12))
    notes, basses, onset = [], [], 0
    for i in range(length):
        step = int(np.clip(step + rng.choice([-2, -1, -1, 1, 1, 2, 0, 3]), 3, 15))
        octave, degree = divmod(step, 7)
        pitch = tonic_pitch(tonic) + 12 * (octave - 1 + bass) + scale[degree]
        duration = rhythm[i % 4]
        notes.append(Note(pitch, onset, duration, onset // 48 + 1))
        basses.append(Note(pitch - 12 - (3 if degree % 2 else 8), onset, duration,
                           onset // 48 + 1))
        onset += duration
    return Melody(tuple(notes), tonic, mode, 48, bass=tuple(basses) if bass else ())


@pytest.fixture(scope="module")
def world() -> dict[int, Melody]:
    """Thirty works, a fifth of them minor, with ids that are not 0..n-1."""
    return {100 + 7 * i: tune(i, mode="minor" if i % 5 == 0 else "major", tonic=i % 12)
            for i in range(30)}


@pytest.fixture(scope="module")
def model(world: dict[int, Melody]) -> MarkovModel:
    """An order-3 model of the world."""
    return MarkovModel.train(world, order=3)


def test_tokens_relative_to_tonic_quantised_and_rests_joined() -> None:
    notes = (Note(62, 0, 12, 1), Note(64, 18, 5, 1), Note(100, 24, 12, 1))
    melody = Melody(notes, tonic=2, mode="major", bar_ticks=48)
    # 62 is the tonic D; the rest after the second note joins it (18 -> 24 is 6 ticks);
    # 100 is 38 semitones up, clipped to 30; 5 ticks snaps to 6 (nearest in log2).
    assert tokens_of(melody) == [(0, 18), (2, 6), (30, 12)]
    assert tokens_of(Melody((Note(60, 0, 5, 1),), 0, "major", 48)) == [(0, 6)]


def test_every_context_distribution_sums_to_one(model: MarkovModel,
                                                world: dict[int, Melody]) -> None:
    table: CountTable = model._table
    rng = np.random.default_rng(1)
    for _ in range(50):
        history = [START, *rng.choice(VOCAB, size=int(rng.integers(0, 5))).tolist()]
        known = tokens_of(world[100])[:3]
        for keys in (_keys(model, history), _keys(model, [START, *map(_id, known)])):
            dist = table.distribution(keys)
            assert dist.min() > 0
            assert math.isclose(dist.sum(), 1.0, rel_tol=1e-12)


def _id(token: tuple[int, int]) -> int:
    """The id of a token (test helper mirroring the model's layout)."""
    return (token[0] + 18) * len(DURATIONS) + DURATIONS.index(token[1])


def _keys(model: MarkovModel, history: list[int]) -> list[int]:
    from attune.generate.markov import _history_keys

    return _history_keys(history, model.order)


def test_public_probabilities_of_all_continuations_sum_to_one(model: MarkovModel,
                                                              world: dict[int, Melody]) -> None:
    prefix = Melody(world[107].notes[:5], 1, "major", 48)
    base = model.log2_prob(prefix)
    end = prefix.notes[-1].onset + prefix.notes[-1].duration
    total = 0.0
    for token in range(VOCAB):
        pitch_index, duration_index = divmod(token, len(DURATIONS))
        pitch = tonic_pitch(1) + pitch_index - 18
        # The last note's own duration is its token's duration, so give the prefix's end its IOI.
        longer = Melody((*prefix.notes[:-1], Note(prefix.notes[-1].pitch, prefix.notes[-1].onset,
                                                  end - prefix.notes[-1].onset, 1),
                         Note(pitch, end, DURATIONS[duration_index], 2)), 1, "major", 48)
        total += 2 ** (model.log2_prob(longer) - base)
    assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_provenance_of_each_generated_token_sums_to_its_probability(model: MarkovModel) -> None:
    for seed in range(5):
        made = model.generate(seed=seed, length=30, tonic=seed, mode="minor" if seed % 2 else
                              "major")
        assert len(made.melody) == 30
        per_token = [sum(n.provenance.values()) for n in made.notes]
        assert all(0 < p <= 1 for p in per_token)
        assert math.isclose(sum(math.log2(p) for p in per_token), made.log2_prob, rel_tol=1e-9)
        assert math.isclose(model.log2_prob(made.melody), made.log2_prob, rel_tol=1e-12)
        assert all(n.provenance[PRIOR] > 0 for n in made.notes)
        assert all(w in model.works for n in made.notes for w in n.provenance if w != PRIOR)
        explained = model.explain(made.melody)
        for mine, theirs in zip(made.notes, explained, strict=True):
            assert mine.provenance.keys() == theirs.provenance.keys()
            assert all(math.isclose(mine.provenance[w], theirs.provenance[w], rel_tol=1e-12)
                       for w in mine.provenance)
        assert made.melody.notes[-1].pitch % 12 == seed % 12  # ends on the tonic
        assert made.melody.tonic == seed and [n.pitch for n in made.notes] == list(
            made.melody.pitches())


def test_subset_is_exactly_a_model_trained_on_the_subset(model: MarkovModel,
                                                         world: dict[int, Melody]) -> None:
    rng = np.random.default_rng(3)
    probes = [tune(1000 + i, mode="minor" if i % 2 else "major", tonic=i) for i in range(4)]
    probes.append(model.generate(seed=9).melody)
    for probe in probes:
        assert model.log2_prob(probe, subset=model.works) == model.log2_prob(probe)
    for size in (1, 3, 15, 29):
        keep = sorted(rng.choice(list(world), size=size, replace=False).tolist())
        alone = MarkovModel.train({w: world[w] for w in keep}, order=3)
        for probe in probes:
            exact = alone.log2_prob(probe)
            assert math.isclose(model.log2_prob(probe, subset=keep), exact, rel_tol=1e-12)
        assert model.log2_prob(probes[0], subset=keep) != model.log2_prob(probes[0])
    with pytest.raises(ValueError, match="not in the model"):
        model.log2_prob(probes[0], subset=[1])


def test_one_work_at_high_order_is_copied_without_the_guard_and_not_with_it() -> None:
    work = tune(5, length=24)
    model = MarkovModel.train({1: work}, order=6)
    copied = model.generate(seed=0, length=24, max_verbatim=0, temperature=0.05)
    # All but the last note, which the ending rule puts on the tonic.
    assert tokens_of(copied.melody)[:23] == tokens_of(work)[:23]
    assert copy_rate([copied.melody], [work]) == 16 / 17  # every 8-note window but the last
    for seed in range(5):
        guarded = model.generate(seed=seed, length=24, temperature=0.05)
        assert copy_rate([guarded.melody], [work]) == 0.0
        assert guarded.resamples > 0
        ids = tokens_of(guarded.melody)
        windows = {tuple(tokens_of(work)[i:i + 8]) for i in range(len(work) - 7)}
        assert not any(tuple(ids[i:i + 8]) in windows for i in range(len(ids) - 7))


def test_save_load_round_trip(tmp_path: Path, model: MarkovModel) -> None:
    sha = model.save(tmp_path / "m.npz")
    assert sha == model.save(tmp_path / "again.npz")  # same model, same bytes
    loaded = MarkovModel.load(tmp_path / "m.npz")
    assert loaded.works == model.works and loaded.order == model.order
    for seed in (0, 1):
        a, b = model.generate(seed=seed), loaded.generate(seed=seed)
        assert a == b
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception):  # noqa: B017  (numpy reports a bad zip its own way)
        MarkovModel.load(tmp_path / "bad.npz")


def test_bits_per_note_beat_the_uniform_prior(model: MarkovModel,
                                              world: dict[int, Melody]) -> None:
    own = model.bits_per_note(world.values())
    held_out = model.bits_per_note([tune(500 + i) for i in range(5)])
    assert 0 < own < held_out < math.log2(VOCAB)


def test_quality_metrics_tell_similar_from_different(world: dict[int, Melody]) -> None:
    tunes = list(world.values())
    same = [tune(200 + i, mode=m.mode, tonic=m.tonic) for i, m in enumerate(tunes)]
    leaps = [Melody(tuple(Note(60 + (i % 2) * 11 + (i % 3), i * 12, 12, i // 4 + 1)
                          for i in range(40)), 0, "major", 48)]
    assert interval_kl(same, tunes) < 0.05 < interval_kl(leaps, tunes)
    assert pitch_class_kl(same, tunes) < 0.05 < pitch_class_kl(leaps, tunes)
    assert copy_rate(tunes[:3], tunes) == 1.0 and copy_rate(leaps, tunes) == 0.0


@pytest.fixture(scope="module")
def chorales() -> dict[int, Melody]:
    """Part-songs with a bass line a third or sixth below the soprano."""
    return {i: tune(300 + i, mode="minor" if i % 3 == 0 else "major", tonic=7, bass=True)
            for i in range(12)}


def test_harmoniser_four_parts_in_range_on_chords(chorales: dict[int, Melody],
                                                  tmp_path: Path) -> None:
    harmoniser = Harmoniser.train(chorales)
    model = MarkovModel.train(chorales, order=3)
    for seed in range(4):
        mode = "minor" if seed % 2 else "major"
        melody = model.generate(seed=seed, length=24, tonic=7, mode=mode).melody
        result = harmoniser.harmonise(melody, seed=seed)
        soprano, alto, tenor, bass = result.parts
        assert soprano == melody.notes
        assert len(alto) == len(tenor) == len(bass) == len(result.provenance) > 0
        for voice, name in ((alto, "alto"), (tenor, "tenor"), (bass, "bass")):
            lo, hi = RANGES[name]
            assert all(lo <= n.pitch <= hi for n in voice), name
        times = [n.onset for n in bass]
        assert times == sorted(times) and all(t % 12 == 0 for t in times)
        probs = []
        for a, t, b, masses in zip(alto, tenor, bass, result.provenance, strict=True):
            top = next(n.pitch for n in soprano if n.onset <= b.onset < n.onset + n.duration)
            assert b.pitch <= t.pitch <= a.pitch <= top  # no crossing
            assert top - a.pitch <= 12 and a.pitch - t.pitch <= 12
            tones = {p % 12 for p in (top, a.pitch, t.pitch, b.pitch)}
            assert _in_a_triad(tones), tones
            chord = chord_for((top - 7) % 12, (b.pitch - 7) % 12, mode)
            assert chord is not None and {(c + 7) % 12 for c in chord} >= tones
            assert all(w in chorales or w == PRIOR for w in masses)
            probs.append(sum(masses.values()))
        assert math.isclose(sum(math.log2(p) for p in probs), result.log2_prob, rel_tol=1e-9)
        assert harmoniser.harmonise(melody, seed=seed) == result
    sha = harmoniser.save(tmp_path / "h.npz")
    assert sha == harmoniser.save(tmp_path / "h2.npz")
    again = Harmoniser.load(tmp_path / "h.npz")
    assert again.harmonise(melody, seed=3) == harmoniser.harmonise(melody, seed=3)
    with pytest.raises(ValueError, match="bass"):
        Harmoniser.train({1: tune(1)})


def _in_a_triad(tones: set[int]) -> bool:
    """Whether the pitch classes all belong to one major, minor or diminished triad."""
    return any(tones <= {(root + s) % 12 for s in steps}
               for root in range(12) for steps in QUALITIES.values())


def test_harmoniser_learns_the_bass_it_was_shown(chorales: dict[int, Melody]) -> None:
    harmoniser = Harmoniser.train(chorales)
    melody = chorales[1]
    result = harmoniser.harmonise(Melody(melody.notes, melody.tonic, melody.mode, 48), seed=0)
    shown = {(n.onset, n.pitch % 12) for n in melody.bass}
    made = [(n.onset, n.pitch % 12) for n in result.parts[3]]
    hits = sum(m in shown for m in made)
    assert hits / len(made) > 0.6
