"""Melodic similarity: the alignment kernel, retrieval, evidence, the copy verdict, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attune.melody import _align
from attune.melody.notes import Melody, Note
from attune.melody.similarity import COPY_THRESHOLD, CopyVerdict, Hit, MelodyIndex, check_copy

BAR = 48  # 4/4 at 12 ticks a quarter


def melody(pitches: list[int] | np.ndarray, durations: list[int] | np.ndarray | None = None,
           *, title: str = "") -> Melody:
    """A 4/4 melody from pitches and durations in ticks (quarters when omitted)."""
    durs = [12] * len(pitches) if durations is None else [int(d) for d in durations]
    onsets = np.concatenate(([0], np.cumsum(durs)[:-1])).astype(int)
    notes = tuple(Note(int(p), int(o), d, int(o) // BAR + 1)
                  for p, o, d in zip(pitches, onsets, durs, strict=True))
    return Melody(notes=notes, tonic=0, mode="major", bar_ticks=BAR, title=title)


def walk(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Pitches and durations of a folk-like random melody (steps, some leaps, mixed rhythm)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-5, -3, -2, -1, 0, 1, 2, 3, 4, 7], size=n - 1)
    pitches = 67 + np.concatenate(([0], np.cumsum(steps)))
    pitches = 60 + np.abs((pitches - 60 + 24) % 48 - 24)
    durations = rng.choice([6, 6, 12, 12, 12, 18, 24], size=n)
    return pitches, durations


@pytest.fixture(scope="module")
def catalog() -> dict[str, Melody]:
    """Thirty unrelated random melodies keyed '0'..'29'."""
    return {str(i): melody(*walk(i), title=f"Tune {i}") for i in range(30)}


@pytest.fixture(scope="module")
def index(catalog: dict[str, Melody]) -> MelodyIndex:
    """The catalog, indexed."""
    return MelodyIndex.build(catalog)


def naive_best(q: _align.Features, r: _align.Features) -> float:
    """Best local alignment score by the textbook cell-by-cell recursion."""
    h = np.zeros((len(q) + 1, len(r) + 1))
    ops = [(1, 1), (2, 1), (3, 1), (1, 2), (1, 3)]
    for i in range(1, len(q) + 1):
        for j in range(1, len(r) + 1):
            best = max(0.0, h[i - 1, j] + _align.GAP, h[i, j - 1] + _align.GAP)
            for a, b in ops:
                if a <= i and b <= j and q.iv[a - 1, i - 1] < 1000 and r.iv[b - 1, j - 1] < 1000:
                    diff = abs(int(q.iv[a - 1, i - 1]) - int(r.iv[b - 1, j - 1]))
                    rhythm = min(abs(q.rr[a - 1, i - 1] - r.rr[b - 1, j - 1]), _align.RHYTHM_CAP)
                    score = (_align.PITCH_SCORE[min(diff, 1000)] - _align.RHYTHM_WEIGHT * rhythm
                             - _align.MERGE_COST[max(a, b) - 1])
                    best = max(best, h[i - a, j - b] + score)
            h[i, j] = best
    return float(h.max())


def test_vectorised_kernel_equals_the_plain_recursion() -> None:
    rng = np.random.default_rng(3)
    for trial in range(12):
        q = _align.features(*(np.asarray(a) for a in _triple(rng, int(rng.integers(2, 25)))))
        refs = [_align.features(*_triple(rng, int(rng.integers(2, 25)))) for _ in range(3)]
        for ref, found in zip(refs, _align.align_many(q, refs), strict=True):
            expected = naive_best(q, ref)
            assert (0.0 if found is None else found.score) == pytest.approx(expected, abs=1e-9), \
                trial


def test_batches_of_references_give_the_same_alignments(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    q = _align.features(*_triple(rng, 30))
    refs = [_align.features(*_triple(rng, int(rng.integers(5, 40)))) for _ in range(9)]
    whole = _align.align_many(q, refs)
    monkeypatch.setattr(_align, "_MAX_CELLS", 400)  # about one reference a batch
    for a, b in zip(whole, _align.align_many(q, refs), strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.score == pytest.approx(b.score)
            assert np.array_equal(a.pairs, b.pairs)
            assert np.allclose(a.running, b.running)


def _triple(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pitches, onsets, durations of n random notes drawn from a small alphabet (many ties)."""
    pitches = 60 + np.cumsum(rng.integers(-2, 3, n))
    durations = rng.choice([6, 12], n)
    return pitches, np.concatenate(([0], np.cumsum(durations)[:-1])), durations


def test_transposed_tempo_scaled_copy_is_found_with_its_shift_and_tempo(
        index: MelodyIndex, catalog: dict[str, Melody]) -> None:
    pitches, durations = walk(7)
    hits = index.search(melody(pitches + 5, durations * 2))
    best = hits[0]
    assert best.key == "7"
    assert best.transposition == 5
    assert best.tempo_ratio == pytest.approx(2.0)
    assert best.score == pytest.approx(1.0)
    assert best.matched_notes == len(catalog["7"])
    assert best.query_notes == best.ref_notes == (0, len(catalog["7"]))
    assert best.title == "Tune 7"
    assert all(h.score < 0.5 for h in hits[1:])


def test_fragment_in_new_material_is_located_in_bars() -> None:
    pitches, _ = walk(11)
    durations = np.full(len(pitches), 12)  # four notes a bar: bars 3-8 are notes 8-31
    source = melody(pitches, durations)
    index_local = MelodyIndex.build({"src": source, "other": melody(*walk(99))})
    filler = [100, 111, 102, 113, 104, 115, 106, 117]  # far above: no step into the fragment fits
    query = melody([*filler, *(pitches[8:32] - 3), *filler])
    best = index_local.search(query)[0]
    assert best.key == "src"
    assert best.ref_notes == (8, 32)
    assert best.ref_bars == (3, 8)
    assert best.query_notes == (8, 32)
    assert best.query_bars == (3, 8)
    assert best.transposition == -3
    assert best.score == pytest.approx(1.0)


def test_inserted_deleted_and_altered_notes_still_rank_first(index: MelodyIndex) -> None:
    pitches, durations = walk(21)
    p, d = list(pitches), list(durations)
    for at in (30, 20, 10):  # deletions: the previous note absorbs the time
        d[at - 1] += d[at]
        del p[at], d[at]
    for at in (5, 15, 25):  # insertions: a neighbour note splitting a note in two
        half = d[at] // 2
        d[at] -= half
        p.insert(at + 1, p[at] + 1)
        d.insert(at + 1, half)
    p[35] += 2  # an altered note
    hits = index.search(melody(p, d))
    assert hits[0].key == "21"
    assert hits[0].score > 0.7  # seven edits in 40 notes
    assert hits[0].score > 2 * hits[1].score
    assert hits[0].matched_notes >= 16  # its best stretch: a passage, not necessarily all 40


def test_copy_is_blocked_with_a_reason_and_unrelated_melody_is_not(
        index: MelodyIndex) -> None:
    pitches, durations = walk(4)
    verdict = check_copy(melody(pitches + 2, durations), index)
    assert verdict.blocked
    assert verdict.hits[0].key == "4"
    assert "of work 4 ('Tune 4')" in verdict.reason()
    assert "transposed +2" in verdict.reason()
    assert "bars 1-" in verdict.reason()

    unrelated = check_copy(melody(*walk(1234)), index)
    assert not unrelated.blocked
    assert unrelated.hits == ()
    assert unrelated.reason() == f"no catalog work above {COPY_THRESHOLD:.2f}"


def test_copy_with_a_cut_passage_is_blocked_on_its_verbatim_run() -> None:
    pitches, durations = walk(15, 60)
    local = MelodyIndex.build({"cut": melody(pitches, durations), "other": melody(*walk(98, 60))})
    keep = np.r_[0:22, 32:54]  # two verbatim runs of 22 notes, 10 notes cut between them
    hit = local.search(melody(pitches[keep], durations[keep]))[0]
    assert hit.key == "cut"
    assert hit.score > 0.99  # the whole alignment, across the cut, scores 0.69
    assert hit.matched_notes >= 21
    assert hit.query_notes[1] - hit.query_notes[0] >= 21
    assert check_copy(melody(pitches[keep], durations[keep]), local).blocked


def test_short_shared_cell_is_not_blocked(index: MelodyIndex) -> None:
    pitches, durations = walk(9)
    query = melody([*pitches[:8], 40, 80, 41, 79, 42, 78, 43, 77],
                   [*durations[:8], *[12] * 8])
    verdict = check_copy(query, index)  # 8 identical notes: under the 12-note minimum
    assert not verdict.blocked
    assert check_copy(query, index, min_notes=8, threshold=0.3).blocked


def test_verdict_reason_lists_extra_works() -> None:
    hit = Hit("42", 0.93, 16, (0, 16), (8, 24), (1, 4), (3, 10), 2, 1.0, "Title")
    verdict = CopyVerdict(True, 0.6, (hit, hit))
    assert verdict.reason() == ("copies bars 3-10 of work 42 ('Title') at bars 1-4 (score 0.93, "
                                "transposed +2); 1 more work(s) above 0.60")


def test_save_and_load_give_identical_results(index: MelodyIndex, tmp_path: Path) -> None:
    path = tmp_path / "melodies.npz"
    index.save(path)
    loaded = MelodyIndex.load(path)
    assert len(loaded) == len(index)
    assert loaded.n == index.n
    for seed in (3, 17, 500):
        pitches, durations = walk(seed)
        query = melody(pitches[5:30] + 1, durations[5:30])
        assert loaded.search(query) == index.search(query)
    (tmp_path / "bad.npz").write_bytes(b"not an index")
    with pytest.raises(ValueError):
        MelodyIndex.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    np.save(tmp_path / "array.npy", np.arange(3))
    for other in ("other.npz", "array.npy"):
        with pytest.raises(ValueError, match="not a melody index"):
            MelodyIndex.load(tmp_path / other)


def test_remove_forgets_a_work(catalog: dict[str, Melody]) -> None:
    local = MelodyIndex.build(catalog)
    query = melody(*walk(12))
    assert local.search(query)[0].key == "12"
    local.remove("12")
    assert len(local) == len(catalog) - 1
    assert "12" not in local
    assert all(h.key != "12" for h in local.search(query))
    with pytest.raises(KeyError, match="'12'"):
        local.remove("12")
    local.add("12", catalog["12"])
    assert local.search(query)[0].key == "12"


def test_query_too_short_for_ngrams_is_aligned_against_every_work(
        index: MelodyIndex, catalog: dict[str, Melody]) -> None:
    pitches, durations = walk(25)
    cell = melody(pitches[10:14], durations[10:14])  # 3 intervals: fewer than n=4
    hits = index.search(cell, k=10, candidates=10)  # fewer candidates than works
    assert "25" in [h.key for h in hits]
    assert all(h.matched_notes <= 4 for h in hits)
    assert not check_copy(cell, index).blocked


def test_empty_index_finds_nothing() -> None:
    assert MelodyIndex().search(melody([60, 62, 64])) == []


def test_inputs_are_validated(index: MelodyIndex) -> None:
    empty = Melody(notes=(), tonic=0, mode="major", bar_ticks=BAR)
    with pytest.raises(ValueError, match="query: the melody has 0 note"):
        index.search(empty)
    with pytest.raises(ValueError, match="query: the melody has 1 note"):
        check_copy(melody([60]), index)
    with pytest.raises(TypeError, match="query: expected a Melody"):
        index.search([60, 62])
    with pytest.raises(ValueError, match="melody: the melody has 0 note"):
        MelodyIndex().add("x", empty)
    with pytest.raises(ValueError, match="already in the index"):
        index.add("3", melody([60, 62, 64]))
    with pytest.raises(ValueError, match="key: must be a non-empty string"):
        MelodyIndex().add("", melody([60, 62]))
    with pytest.raises(ValueError, match="k: must be at least 1"):
        index.search(melody([60, 62, 64]), k=0)
    with pytest.raises(ValueError, match="candidates"):
        index.search(melody([60, 62, 64]), k=10, candidates=5)
    with pytest.raises(ValueError, match="n: 9"):
        MelodyIndex(n=9)
    with pytest.raises(ValueError, match="threshold"):
        check_copy(melody([60, 62, 64]), index, threshold=0.0)
    with pytest.raises(ValueError, match="min_notes"):
        check_copy(melody([60, 62, 64]), index, min_notes=1)


def test_real_tunes_ornamented_and_quoted() -> None:
    """Three Essen tunes through scores.load_score: an ornamented copy and a quoted phrase."""
    scores = pytest.importorskip("attune.melody.scores")
    sources = [f"music21:essenFolksong/han1.abc#{i}" for i in (1, 2, 3)]
    tunes = {s: scores.load_score(s) for s in sources}
    local = MelodyIndex.build({**tunes, **{str(i): melody(*walk(i)) for i in range(10)}})
    target = tunes[sources[1]]
    notes = list(target.notes)
    ornamented = []
    for i, note in enumerate(notes):  # every fourth long note gets an upper neighbour
        if i % 4 == 1 and note.duration >= 4:
            half = note.duration // 2
            ornamented += [Note(note.pitch, note.onset, half, note.bar),
                           Note(note.pitch + 2, note.onset + half, note.duration - half, note.bar)]
        else:
            ornamented.append(note)
    query = Melody(notes=tuple(ornamented), tonic=target.tonic, mode=target.mode,
                   bar_ticks=target.bar_ticks)
    best = local.search(query)[0]
    assert best.key == sources[1]
    assert check_copy(query, local).blocked

    bars = target.bars()
    inside = [n for n in notes if 3 <= n.bar <= 8]
    assert len(inside) >= 12
    start = inside[0].onset
    filler = [Note(p, 12 * i, 12, 1 + i // 4) for i, p in enumerate([110, 99, 112, 101, 114, 103])]
    quoted = tuple(filler) + tuple(
        Note(n.pitch + 1, 72 + n.onset - start, n.duration, n.bar) for n in inside)
    hit = local.search(Melody(notes=quoted, tonic=0, mode="major", bar_ticks=BAR))[0]
    assert hit.key == sources[1]
    assert hit.ref_bars == (3, 8)
    assert hit.query_notes == (6, 6 + len(inside))
    assert hit.ref_notes == (int(np.argmax(bars >= 3)), int(np.argmax(bars >= 3)) + len(inside))
    assert hit.transposition == 1
