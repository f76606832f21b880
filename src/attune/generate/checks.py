"""Output checks before release: no copied melody from any catalog work, no catalog audio inside.

The melodic check searches every work of the catalog that has a score (not only the training
set); the audio check runs content identification on the rendered file when a catalog index
exists. Either one blocks the output, and the verdict names the work or recording and where.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.melody.notes import Melody
from attune.melody.scores import load_scores
from attune.melody.similarity import COPY_THRESHOLD, CopyVerdict, MelodyIndex, check_copy
from attune.rights.models import Work

AUDIO_CONFIDENCE = 0.9
"""An identification hit this sure blocks the output (the matcher's calibrated confidence)."""


@dataclass(frozen=True, slots=True)
class AudioFinding:
    """Catalog audio found in a rendered output: which recording, where, and how sure."""

    recording_id: int
    query_start: float
    query_end: float
    reference_start: float
    confidence: float


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The verdict on one output: blocked or not, with every reason and its evidence."""

    blocked: bool
    melody: CopyVerdict
    audio: tuple[AudioFinding, ...]
    audio_checked: bool
    titles: dict[str, str]

    def reasons(self) -> tuple[str, ...]:
        """One line per finding (or per check passed), naming work/recording, bars and scores."""
        lines: list[str] = []
        if self.melody.blocked:
            for hit in self.melody.hits:
                title = self.titles.get(hit.key, "")
                lines.append(
                    f"melody copies work {hit.key}{f' ({title!r})' if title else ''}: "
                    f"its bars {hit.ref_bars[0]}-{hit.ref_bars[1]} appear at bars "
                    f"{hit.query_bars[0]}-{hit.query_bars[1]} of the output "
                    f"({hit.matched_notes} notes, similarity {hit.score:.2f} >= "
                    f"{self.melody.threshold:.2f}, transposed {hit.transposition:+d})")
        else:
            lines.append(self.melody.reason())
        for f in self.audio:
            lines.append(
                f"audio of recording {f.recording_id} found at {f.query_start:.1f}-"
                f"{f.query_end:.1f} s of the output (from {f.reference_start:.1f} s of the "
                f"recording, confidence {f.confidence:.3f})")
        if not self.audio_checked:
            lines.append("audio identification skipped: no catalog index")
        return tuple(lines)


def _catalog_sources(session: Session) -> dict[str, tuple[str, str]]:
    """Work id (as text) -> (score source, title) for every work with a music21 score."""
    rows = session.execute(select(Work.id, Work.source, Work.title).where(
        Work.source.like("music21:%"))).all()
    return {str(wid): (str(src), str(title)) for wid, src, title in rows}


def catalog_index(session: Session, cache_dir: Path, *,
                  progress: Callable[[int, int], None] | None = None) -> tuple[MelodyIndex,
                                                                                dict[str, str]]:
    """The melody index of every catalog work with a score, built once per catalog and cached.

    The cache file is named by a hash of the (work id, source) list, so a new or changed work
    builds a fresh index. Returns the index and work titles by key.
    """
    catalog = _catalog_sources(session)
    titles = {k: t for k, (_, t) in catalog.items()}
    listing = json.dumps(sorted((k, s) for k, (s, _) in catalog.items()))
    path = cache_dir / f"melody-index-{hashlib.sha256(listing.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        return MelodyIndex.load(path), titles
    sources = sorted({s for s, _ in catalog.values()})
    melodies = load_scores(sources, progress=progress)
    index = MelodyIndex.build({k: melodies[s] for k, (s, _) in catalog.items() if s in melodies})
    cache_dir.mkdir(parents=True, exist_ok=True)
    index.save(path)
    return index, titles


def check_audio(wav: Path, index_path: Path) -> tuple[tuple[AudioFinding, ...], bool]:
    """Catalog recordings identified in the rendered file; (findings, whether an index existed)."""
    from attune.identify import Index, IndexUnavailable, identify_file

    try:
        index = Index.open(index_path)
    except (IndexUnavailable, FileNotFoundError):
        return (), False
    if len(index) == 0:
        return (), False
    hits = identify_file(index, wav)
    return tuple(AudioFinding(h.recording_id, h.query_start, h.query_end, h.reference_start,
                              h.confidence) for h in hits if h.confidence >= AUDIO_CONFIDENCE), True


def check_output(melody: Melody, melody_index: MelodyIndex, titles: dict[str, str], *,
                 wav: Path | None = None, audio_index: Path | None = None,
                 threshold: float = COPY_THRESHOLD) -> CheckReport:
    """Run both checks; the output is blocked when either finds the catalog in it."""
    verdict = check_copy(melody, melody_index, threshold=threshold)
    findings: tuple[AudioFinding, ...] = ()
    checked = False
    if wav is not None and audio_index is not None:
        findings, checked = check_audio(wav, audio_index)
    return CheckReport(verdict.blocked or bool(findings), verdict, findings, checked, titles)

