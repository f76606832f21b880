"""Scores of the music21 corpus read as `Melody` lines, parsed in parallel and cached as JSON.

A source names a score as ``music21:<corpus path>``, or ``music21:<corpus path>#<tune number>``
for one tune of a multi-tune ABC file; this is how a registry Work names its score. Parsing costs
tens of milliseconds a score (plus half a second to import music21), so ``load_scores`` parses
in a process pool and keeps each melody as a small JSON file that later calls read instead.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib.metadata import version
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attune.melody.notes import TICKS_PER_QUARTER, Melody, Note

if TYPE_CHECKING:
    from music21.stream import Part, Score

PARSER_VERSION = 2
"""Bump when the reading of a score changes, so that cached melodies are parsed afresh."""

PREFIX = "music21:"
DEFAULT_TEMPO_BPM = 96.0
DEFAULT_BAR_TICKS = 4 * TICKS_PER_QUARTER
# Modes with a minor third above the tonic read as minor, the others as major (same tonic).
MINOR_MODES = frozenset({"minor", "aeolian", "dorian", "phrygian", "locrian"})
SOURCE = re.compile(r"music21:(?P<path>[^#]+)(?:#(?P<number>\d+))?")
BWV = re.compile(r"bach/bwv(\d+(?:\.\d+)?)\.mxl")


class ScoreError(ValueError):
    """A source that cannot be read as a melody: unknown, unreadable, or without notes."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"{source or 'score'}: {cause}")
        self.source = source
        self.cause = cause


@dataclass(slots=True)
class _Event:
    """A note being read: pitch, onset, duration and bar, and whether a tie carries it on."""

    pitch: int
    onset: int
    duration: int
    bar: int
    tied: bool

    @property
    def end(self) -> int:
        """The tick at which it stops sounding."""
        return self.onset + self.duration


def _ticks(quarters: float | Fraction) -> int:
    """Quarter lengths to the nearest whole tick."""
    return round(Fraction(quarters) * TICKS_PER_QUARTER)


def _bar_ticks(score: Score) -> int:
    """Length of a full bar from the first time signature (4/4 when there is none)."""
    from music21 import meter

    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    if ts is None:
        return DEFAULT_BAR_TICKS
    return max(1, _ticks(ts.barDuration.quarterLength))


def _key(score: Score, *, part_song: bool) -> tuple[int, str]:
    """Tonic pitch class and major/minor: a tune's written key if it names a mode, else analysed.

    A part-song is always analysed: the chorales' written modes follow the key signature, so a
    G minor chorale with the one-flat (Dorian) signature reads as D minor (analysis agrees with
    the final bass note in 94 of 113 chorales, the written key in 87). For ABC tunes the K: field
    is the better guide (O'Neill's: 37 of 40 written keys match the final note, analysed 25).
    """
    from music21 import key

    written = score.recurse().getElementsByClass(key.KeySignature).first()
    found = written if isinstance(written, key.Key) and not part_song else score.analyze("key")
    return found.tonic.pitchClass, "minor" if found.mode in MINOR_MODES else "major"


def _tempo(score: Score) -> float:
    """Quarter-note tempo of the first metronome mark with a number, else the default."""
    from music21 import tempo

    for mark in score.recurse().getElementsByClass(tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm is not None and bpm > 0:
            return float(bpm)
    return DEFAULT_TEMPO_BPM


def _events(part: Part, bar_ticks: int, *, top: bool) -> list[_Event]:
    """Every sounding note of a part (of a chord its highest or lowest pitch), graces left out."""
    from music21 import chord, harmony, note, stream

    measures = list(part.getElementsByClass(stream.Measure))
    # music21 numbers a tune's first measure 0 even when it is a full bar: count that one as 1.
    shift = 0
    if measures and measures[0].number == 0:
        first = measures[0]
        if first.paddingLeft == 0 and _ticks(first.duration.quarterLength) >= bar_ticks:
            shift = 1
    groups: list[tuple[float | Fraction, int | None, Iterable[Any]]] = [
        (m.offset, m.number + shift, m.flatten().notes) for m in measures
    ] or [(0.0, None, part.flatten().notes)]
    events: list[_Event] = []
    for base, number, elements in groups:
        for el in elements:
            if el.duration.isGrace or isinstance(el, harmony.Harmony):
                continue
            if isinstance(el, chord.Chord):
                if not el.notes:
                    continue
                chosen = (max if top else min)(el.notes, key=lambda n: n.pitch.ps)
                tie = chosen.tie or el.tie
            elif isinstance(el, note.Note):
                chosen, tie = el, el.tie
            else:
                continue
            onset = _ticks(base + el.offset)
            events.append(_Event(
                pitch=min(127, max(0, chosen.pitch.midi)),
                onset=onset,
                duration=max(1, _ticks(el.duration.quarterLength)),
                bar=number if number is not None else onset // bar_ticks + 1,
                tied=tie is not None and tie.type in ("start", "continue"),
            ))
    return events


def _line(events: Iterable[_Event], *, top: bool) -> tuple[Note, ...]:
    """One monophonic line: tied notes merged, then the highest (or lowest) sounding note kept."""
    order = sorted(events, key=lambda e: (e.onset, -e.pitch if top else e.pitch))
    merged: list[_Event] = []
    open_ties: dict[int, _Event] = {}  # pitch -> a note whose tie continues into the next
    for event in order:
        held = open_ties.pop(event.pitch, None)
        if held is not None and held.end == event.onset:
            held.duration += event.duration
            held.tied = event.tied
            if held.tied:
                open_ties[event.pitch] = held
            continue
        merged.append(event)
        if event.tied:
            open_ties[event.pitch] = event
    kept: list[_Event] = []
    for event in merged:
        if kept:
            last = kept[-1]
            if event.onset == last.onset:
                continue
            if event.onset < last.end:
                if (event.pitch < last.pitch) if top else (event.pitch > last.pitch):
                    continue
                last.duration = event.onset - last.onset
        kept.append(event)
    return tuple(Note(e.pitch, e.onset, e.duration, e.bar) for e in kept)


def _named(parts: Iterable[Part], voice: str) -> Part | None:
    """The first part named for ``voice`` ('Soprano 1', 'Bass Continuo'; not 'Bassoon'), if any."""
    named = re.compile(rf"\s*{voice}\b", re.IGNORECASE)
    return next((p for p in parts if named.match(p.partName or "")), None)


def _mean_pitch(part: Part) -> float:
    """Average MIDI pitch of a part's notes (a part without notes counts as high)."""
    pitches = [p.ps for p in part.pitches]
    return sum(pitches) / len(pitches) if pitches else 128.0


def melody_from_stream(score: Score, *, source: str = "", title: str = "") -> Melody:
    """Read a parsed score as a Melody: its top part, and for a part-song its lowest as the bass."""
    parts = list(score.parts)
    if not parts:
        raise ScoreError(source, "the score has no parts")
    bar_ticks = _bar_ticks(score)
    upper = _named(parts, "soprano") or parts[0]
    notes = _line(_events(upper, bar_ticks, top=True), top=True)
    if not notes:
        raise ScoreError(source, "the score has no notes in its top part")
    bass: tuple[Note, ...] = ()
    others = [p for p in parts if p is not upper]
    if others:
        lower = _named(reversed(others), "bass") or min(others, key=_mean_pitch)
        bass = _line(_events(lower, bar_ticks, top=False), top=False)
    tonic, mode = _key(score, part_song=bool(others))
    # Only a real title: music21 fills a chorale's movementName with its file name.
    name = title or (score.metadata.title if score.metadata is not None else None) or ""
    return Melody(notes=notes, tonic=tonic, mode=mode, bar_ticks=bar_ticks, bass=bass,
                  source=source, title=str(name), tempo_bpm=_tempo(score))


def _parse(source: str) -> Melody:
    """Parse one source from the music21 corpus (no cache)."""
    from music21 import corpus, stream

    match = SOURCE.fullmatch(source)
    if match is None:
        raise ScoreError(source, f"not a source; expected {PREFIX}<corpus path>[#<tune number>]")
    path, number = match["path"], match["number"]
    try:
        parsed = corpus.parse(path, number=int(number) if number else None, forceSource=True)
    except Exception as exc:  # music21's parsers raise more than Music21Exception on bad input
        raise ScoreError(source, f"music21 cannot read it ({type(exc).__name__}: {exc})") from exc
    if isinstance(parsed, stream.Opus):
        tunes = list(parsed.scores)
        if len(tunes) != 1:
            raise ScoreError(source, f"the file holds {len(tunes)} tunes; name one as #<number>")
        parsed = tunes[0]
    if not isinstance(parsed, stream.Score):
        raise ScoreError(source, f"music21 read it as a {type(parsed).__name__}, not a score")
    try:
        return melody_from_stream(parsed, source=source)
    except ScoreError:
        raise
    except Exception as exc:  # a score music21 reads but that breaks an assumption of ours
        raise ScoreError(source, f"cannot read a melody ({type(exc).__name__}: {exc})") from exc


def default_cache_dir() -> Path:
    """Where parsed melodies are cached: ATTUNE_CACHE_DIR/scores, else ~/.cache/attune/scores."""
    base = os.environ.get("ATTUNE_CACHE_DIR")
    return Path(base) / "scores" if base else Path.home() / ".cache" / "attune" / "scores"


@cache
def _music21_version() -> str:
    """music21's installed version, read from package metadata (importing music21 takes 0.5 s)."""
    return version("music21")


def _cache_path(cache_dir: Path, source: str) -> Path:
    """The cache file of a source, named by a hash of it, music21's version and the parser's."""
    key = f"{source}\0{_music21_version()}\0{PARSER_VERSION}"
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _to_json(melody: Melody) -> dict[str, Any]:
    """A melody as plain JSON data (notes as [pitch, onset, duration, bar] rows)."""
    return {
        "parser": PARSER_VERSION,
        "source": melody.source,
        "title": melody.title,
        "tonic": melody.tonic,
        "mode": melody.mode,
        "bar_ticks": melody.bar_ticks,
        "tempo_bpm": melody.tempo_bpm,
        "notes": [[n.pitch, n.onset, n.duration, n.bar] for n in melody.notes],
        "bass": [[n.pitch, n.onset, n.duration, n.bar] for n in melody.bass],
    }


def _from_json(data: dict[str, Any]) -> Melody:
    """The melody written by `_to_json`."""
    return Melody(
        notes=tuple(Note(*row) for row in data["notes"]),
        tonic=data["tonic"],
        mode=data["mode"],
        bar_ticks=data["bar_ticks"],
        bass=tuple(Note(*row) for row in data["bass"]),
        source=data["source"],
        title=data["title"],
        tempo_bpm=data["tempo_bpm"],
    )


def _read_cache(path: Path, source: str) -> Melody | None:
    """The cached melody of a source, or None when absent, unreadable or for another source."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("source") != source or data.get("parser") != PARSER_VERSION:
            return None
        return _from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, melody: Melody) -> None:
    """Write a melody's cache file atomically (a temporary file in the same folder, replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(_to_json(melody), out, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse_in_worker(source: str) -> Melody | str:
    """Parse in a pool worker: the melody, or why it failed (a string pickles simply)."""
    try:
        return _parse(source)
    except ScoreError as exc:
        return exc.cause


def _pool_context() -> BaseContext:
    """Fork while this process has one thread (workers inherit music21), else a safe start method.

    Forking a threaded process (a web server's worker thread) can deadlock the child on a lock
    another thread held; forkserver and spawn cost about a second more per pool.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def load_score(source: str, *, cache_dir: Path | None = None) -> Melody:
    """The melody of one source, from the cache when it holds it, else parsed and cached."""
    return load_scores([source], cache_dir=cache_dir, workers=1)[source]


def load_scores(
    sources: Sequence[str],
    *,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Melody]:
    """Melodies by source: cached ones read, the rest parsed in a process pool and cached.

    ``workers`` defaults to the CPU count; ``progress(done, total)`` is called as each source is
    ready. Every source that parses is cached even when others fail; then a ScoreError names all
    that failed.
    """
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    wanted = list(dict.fromkeys(sources))
    total = len(wanted)
    found: dict[str, Melody] = {}
    missing: list[str] = []
    for source in wanted:
        melody = _read_cache(_cache_path(folder, source), source)
        if melody is None:
            missing.append(source)
        else:
            found[source] = melody
    if progress is not None and found:
        progress(len(found), total)
    failed: dict[str, str] = {}

    def finish(source: str, result: Melody | str) -> None:
        """Keep and cache one parsed source (or note why it failed), then report progress."""
        if isinstance(result, str):
            failed[source] = result
        else:
            _write_cache(_cache_path(folder, source), result)
            found[source] = result
        if progress is not None:
            progress(len(found) + len(failed), total)

    pool_size = min(workers or os.cpu_count() or 1, len(missing))
    if pool_size <= 1:
        for source in missing:
            finish(source, _parse_in_worker(source))
    else:
        with ProcessPoolExecutor(max_workers=pool_size, mp_context=_pool_context()) as pool:
            futures = {pool.submit(_parse_in_worker, s): s for s in missing}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    if len(failed) == 1:
        [(source, cause)] = failed.items()
        raise ScoreError(source, cause)
    if failed:
        shown = "; ".join(f"{s}: {c}" for s, c in sorted(failed.items())[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise ScoreError(f"{len(failed)} of {total} sources", shown + more)
    return {source: found[source] for source in wanted}


@cache
def _corpus_listing() -> tuple[tuple[str, str | None], ...]:
    """(corpus path, tune number) of every entry of music21's metadata bundle (read once)."""
    from music21.corpus.corpora import CoreCorpus

    # A slice copies the entries once; iterating the bundle itself is quadratic (15,000 entries).
    entries = CoreCorpus().metadataBundle[:]
    return tuple(
        (e.sourcePath.as_posix(), None if e.number is None else str(e.number)) for e in entries
    )


def corpus_sources(collection: str, limit: int | None = None) -> list[str]:
    """Sources of one corpus collection, in a stable order, listed from metadata without parsing.

    A multi-tune file gives one source per tune. For 'bach' only the chorales of music21's
    chorale list (bwv*.mxl) are listed.
    """
    listing = [(p, n) for p, n in _corpus_listing() if p.split("/", 1)[0] == collection]
    if not listing:
        raise ScoreError(f"{PREFIX}{collection}", "no such collection in the music21 corpus")
    if collection == "bach":
        from music21.corpus.chorales import ChoraleListRKBWV

        chorales = ChoraleListRKBWV().byBWV  # type: ignore[no-untyped-call]  # unannotated
        listing = [(p, n) for p, n in listing if (m := BWV.fullmatch(p)) and m[1] in chorales]
    numbered = {p for p, n in listing if n is not None}
    kept = sorted(
        ((p, int(n) if n is not None else 0) for p, n in listing
         if n is not None or p not in numbered),
    )
    sources = [f"{PREFIX}{p}#{n}" if p in numbered else f"{PREFIX}{p}" for p, n in kept]
    return sources if limit is None else sources[:limit]
