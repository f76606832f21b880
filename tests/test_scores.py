"""Scores of the music21 corpus read as melodies: real chorales and tunes, ties, keys, the cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from music21 import chord, corpus, harmony, key, meter, note, stream, tempo

from attune.melody import scores
from attune.melody.notes import Melody, Note
from attune.melody.scores import (
    ScoreError,
    corpus_sources,
    default_cache_dir,
    load_score,
    load_scores,
    melody_from_stream,
)

CHORALE = "music21:bach/bwv66.6"
TUNE = "music21:oneills1850/0001-0050.abc#5"


def _reference_line(part: stream.Part) -> list[tuple[int, int, int, int]]:
    """music21's own reading of a single-voice part: ties stripped, (pitch, onset, dur, bar)."""
    merged = part.stripTies()
    return [
        (n.pitch.midi, round(n.getOffsetInHierarchy(merged) * 12),
         round(n.duration.quarterLength * 12), n.measureNumber)
        for n in merged.recurse().notes
    ]


def _rows(line: tuple[Note, ...]) -> list[tuple[int, int, int, int]]:
    """A line as (pitch, onset, duration, bar) rows."""
    return [(n.pitch, n.onset, n.duration, n.bar) for n in line]


def test_chorale_soprano_and_bass_match_music21(tmp_path: Path) -> None:
    melody = load_score(CHORALE, cache_dir=tmp_path)
    score = corpus.parse("bach/bwv66.6")
    soprano, bass = score.parts[0], score.parts[-1]
    assert (soprano.partName, bass.partName) == ("Soprano", "Bass")
    assert _rows(melody.notes) == _reference_line(soprano)
    assert _rows(melody.bass) == _reference_line(bass)
    # The chorale opens with a pickup (bar 0) on C#5 B4, then A4 on the downbeat of bar 1.
    assert _rows(melody.notes)[:3] == [(73, 0, 6, 0), (71, 6, 6, 0), (69, 12, 12, 1)]
    analysed = score.analyze("key")
    assert (melody.tonic, melody.mode) == (analysed.tonic.pitchClass, analysed.mode) == (6, "minor")
    assert melody.bar_ticks == 48
    assert melody.tempo_bpm == 96.0
    assert melody.source == CHORALE


def test_oneills_tune_by_number(tmp_path: Path) -> None:
    melody = load_score(TUNE, cache_dir=tmp_path)
    tune = corpus.parse("oneills1850/0001-0050.abc", number=5)
    written = tune.recurse().getElementsByClass(key.Key).first()
    assert melody.title == tune.metadata.title == "The Fun at Donnybrook"
    assert (melody.tonic, melody.mode) == (written.tonic.pitchClass, written.mode)
    assert melody.bar_ticks == 36  # 6/8
    assert melody.bass == ()
    # K:Gm L:1/8 M:6/8 -- "B/2-A/2 | G>FD C>D^F | G3z2B/2-c/2 | ...": an ABC "tie" joins two
    # different pitches there (music21's stripTies would merge them; they stay two notes).
    assert _rows(melody.notes)[:11] == [
        (70, 0, 3, 0), (69, 3, 3, 0),
        (67, 6, 9, 1), (65, 15, 3, 1), (62, 18, 6, 1), (60, 24, 9, 1), (62, 33, 3, 1),
        (66, 36, 6, 1),
        (67, 42, 18, 2), (70, 72, 3, 2), (72, 75, 3, 2),  # the rest z2 leaves a gap
    ]
    assert _rows(melody.notes)[-1][::2] == (67, 30)  # "G3-G2": a real tie, one note
    assert len(melody) == len(tune.recurse().notes) - 1  # no graces or chords here
    other = load_score("music21:oneills1850/0001-0050.abc#6", cache_dir=tmp_path)
    assert other.title == "The Dark Woman of the Glen"
    assert other.pitches().tolist() != melody.pitches().tolist()


def _tune_with_ties() -> stream.Score:
    """Two 4/4 bars in D dorian: C4 tied over the bar line, a rest, a chord, a grace note."""
    bar1 = stream.Measure(number=1)
    bar1.append([key.Key("d", "dorian"), meter.TimeSignature("4/4"),
                 tempo.MetronomeMark(number=120)])
    held = note.Note("C4", quarterLength=2.0)
    held.tie = note.tie.Tie("start")
    bar1.append([note.Rest(quarterLength=2.0), harmony.ChordSymbol("C"), held])
    bar2 = stream.Measure(number=2)
    rest_of_it = note.Note("C4", quarterLength=1.0)
    rest_of_it.tie = note.tie.Tie("stop")
    grace = note.Note("A4").getGrace()
    bar2.append([rest_of_it, chord.Chord(["E4", "G4"], quarterLength=1.0), grace,
                 note.Note("D4", quarterLength=1.0), note.Rest(quarterLength=1.0)])
    part = stream.Part([bar1, bar2])
    return stream.Score([part])


def test_ties_merged_rests_graces_chords() -> None:
    melody = melody_from_stream(_tune_with_ties(), source="test:ties", title="Tied")
    assert _rows(melody.notes) == [
        (60, 24, 36, 1),  # half + quarter, tied over the bar line, starting after the rest
        (67, 60, 12, 2),  # the chord's highest pitch
        (62, 72, 12, 2),  # the grace note before it is dropped
    ]
    assert (melody.tonic, melody.mode) == (2, "minor")  # dorian reads as minor
    assert melody.tempo_bpm == 120.0
    assert melody.bar_ticks == 48
    assert (melody.source, melody.title) == ("test:ties", "Tied")


def test_stream_without_notes_is_an_error() -> None:
    part = stream.Part([stream.Measure([note.Rest(quarterLength=4.0)])])
    with pytest.raises(ScoreError, match=r"^test:empty: .*no notes"):
        melody_from_stream(stream.Score([part]), source="test:empty")


def test_cache_hit_does_not_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_score(TUNE, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    assert json.loads(files[0].read_text())["source"] == TUNE

    def no_parsing(source: str) -> Melody:
        raise AssertionError(f"parsed {source} again")

    monkeypatch.setattr(scores, "_parse", no_parsing)
    assert load_score(TUNE, cache_dir=tmp_path) == first
    assert load_scores([TUNE], cache_dir=tmp_path, workers=2) == {TUNE: first}


def test_corrupt_cache_file_is_parsed_again(tmp_path: Path) -> None:
    first = load_score(TUNE, cache_dir=tmp_path)
    [cached] = tmp_path.iterdir()
    cached.write_text("{not json")
    assert load_score(TUNE, cache_dir=tmp_path) == first
    assert json.loads(cached.read_text())["source"] == TUNE


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("music21:nope/missing.abc", "music21 cannot read it"),
        ("music21:oneills1850/0001-0050.abc#9999", "cannot find requested reference number"),
        ("music21:oneills1850/0001-0050.abc", "holds 50 tunes"),
        ("bach/bwv66.6", "not a source"),
    ],
)
def test_bad_source_names_itself(tmp_path: Path, source: str, cause: str) -> None:
    with pytest.raises(ScoreError) as caught:
        load_score(source, cache_dir=tmp_path)
    assert str(caught.value).startswith(f"{source}: ")
    assert cause in caught.value.cause


def test_one_bad_source_fails_the_batch_after_caching_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ScoreError, match=re.escape("music21:nope/missing.abc: ")):
        load_scores([TUNE, "music21:nope/missing.abc"], cache_dir=tmp_path, workers=1)
    monkeypatch.setattr(scores, "_parse", lambda source: pytest.fail(f"parsed {source}"))
    assert load_score(TUNE, cache_dir=tmp_path).title == "The Fun at Donnybrook"


def test_pool_equals_sequential(tmp_path: Path) -> None:
    sources = [CHORALE, TUNE, "music21:ryansMammoth/AcaciaReel.abc",
               "music21:airdsAirs/book1.abc#3"]
    calls: list[tuple[int, int]] = []
    pooled = load_scores(sources, cache_dir=tmp_path / "a", workers=2,
                         progress=lambda done, total: calls.append((done, total)))
    sequential = load_scores(sources, cache_dir=tmp_path / "b", workers=1)
    assert pooled == sequential
    assert list(pooled) == sources
    assert calls[-1] == (4, 4) and len(calls) == 4
    assert len(list((tmp_path / "a").glob("*.json"))) == 4


def test_corpus_sources() -> None:
    bach = corpus_sources("bach")
    assert "music21:bach/bwv10.7.mxl" in bach
    assert "music21:bach/bwv66.6.mxl" not in bach  # not in music21's chorale list
    assert all(s.startswith("music21:bach/bwv") and s.endswith(".mxl") for s in bach)
    assert bach == sorted(bach) and len(set(bach)) == len(bach)
    tunes = corpus_sources("oneills1850", limit=12)
    assert tunes[:2] == ["music21:oneills1850/0001-0050.abc#1",
                         "music21:oneills1850/0001-0050.abc#2"]
    assert tunes[9:12] == [f"music21:oneills1850/0001-0050.abc#{n}" for n in (10, 11, 12)]
    assert corpus_sources("oneills1850", limit=12) == tunes
    with pytest.raises(ScoreError, match="no such collection"):
        corpus_sources("no-such-collection")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "scores"
    monkeypatch.delenv("ATTUNE_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "attune" / "scores"
