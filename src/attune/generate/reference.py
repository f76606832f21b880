"""The generator protocol and Attune's reference generator, trained only on a manifest's scores.

``Generator.train(manifest) -> Model`` and ``Model.generate(prompt, seed) -> Piece``. The
reference generator reads the included works' scores, trains a variable-order Markov melody
model per texture (part-song sopranos, and tunes) and, when the manifest holds part-songs, a
chorale harmoniser from their bass lines. It credits every piece to the works that supplied
its notes: shares over works, then over each work's included recordings, each summing to
exactly 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from attune.attribute.shares import split_over, to_shares, work_weights
from attune.generate.dataset import canonical
from attune.generate.harmony import Harmonisation, Harmoniser
from attune.generate.markov import Generation, MarkovModel
from attune.generate.render import to_midi
from attune.melody.notes import TICKS_PER_QUARTER, Melody, Note
from attune.melody.scores import load_scores

KIND = "attune-markov/1"
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
KEY_IN_PROMPT = re.compile(r"\bin\s+([a-g])\s*(#|sharp|b|flat)?\s*(major|minor)?\b", re.IGNORECASE)
BARS_IN_PROMPT = re.compile(r"\b(\d{1,2})\s+bars?\b", re.IGNORECASE)
CHORALE_WORDS = re.compile(r"\b(chorale|hymn|choir|four[- ]part|satb|harmon)", re.IGNORECASE)
# GM programs: a chorale is sung by a choir with organ bass; a tune is played on flute with cello.
CHORALE_PROGRAMS = (52, 52, 52, 19)
TUNE_PROGRAMS = (73, 42)


class ModelError(ValueError):
    """A model cannot be trained or loaded: an empty manifest, unreadable scores, a bad file."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a prompt asks for: texture, key and length (everything else is the model's)."""

    chorale: bool
    tonic: int
    mode: str
    bars: int
    tempo_bpm: float


def parse_prompt(prompt: str) -> Request:
    """Read texture ('chorale'/'hymn' -> four parts), key ('in D minor') and length ('16 bars')."""
    chorale = bool(CHORALE_WORDS.search(prompt))
    tonic, mode = (7, "major") if chorale else (2, "major")
    key = KEY_IN_PROMPT.search(prompt)
    if key:
        tonic = PITCH_CLASS[key.group(1).lower()]
        accidental = (key.group(2) or "").lower()
        tonic = (tonic + (1 if accidental in ("#", "sharp") else -1 if accidental in ("b", "flat")
                          else 0)) % 12
        mode = (key.group(3) or "major").lower()
    bars = BARS_IN_PROMPT.search(prompt)
    count = min(max(int(bars.group(1)), 2), 64) if bars else 8
    tempo = 72.0 if chorale else 112.0
    if re.search(r"\b(slow|gentle|lament|air)\b", prompt, re.IGNORECASE):
        tempo = 66.0
    elif re.search(r"\b(fast|lively|reel|jig|dance)\b", prompt, re.IGNORECASE):
        tempo = 132.0
    return Request(chorale, tonic, mode, count, tempo)


@dataclass(frozen=True, slots=True)
class Piece:
    """One generated piece: its notes, its parts for rendering, and who shaped it.

    ``work_shares`` and ``recording_shares`` are Decimal fractions summing to exactly 1.
    """

    model_id: str
    prompt: str
    seed: int
    melody: Melody
    parts: tuple[tuple[Note, ...], ...]
    programs: tuple[int, ...]
    work_shares: Mapping[int, Decimal]
    recording_shares: Mapping[int, Decimal]
    log2_prob: float
    resamples: int

    def midi(self) -> bytes:
        """The piece as a Standard MIDI File."""
        return to_midi(self.parts, tempo_bpm=self.melody.tempo_bpm, programs=self.programs)

    def describe(self) -> str:
        """One line: texture, key, length."""
        key = f"{NAMES[self.melody.tonic]} {self.melody.mode}"
        texture = "four-part chorale" if len(self.parts) == 4 else "tune"
        return f"{texture} in {key}, {len(self.melody)} melody notes"


class Model(Protocol):
    """A trained generator: it knows its manifest and makes pieces from prompts."""

    id: str
    manifest_sha256: str

    def generate(self, prompt: str, seed: int) -> Piece:
        """A piece for this prompt; the same prompt and seed give the same piece."""
        ...


class Generator(Protocol):
    """Something that trains a Model from a signed dataset manifest, and nothing else."""

    kind: str

    def train(self, manifest: Mapping[str, Any]) -> Model:
        """Train on the manifest's included items only."""
        ...


@dataclass(frozen=True, slots=True)
class ReferenceModel:
    """The reference generator's trained state: melody model, harmoniser, credit targets."""

    id: str
    manifest_sha256: str
    order: int
    max_verbatim: int
    melody_models: Mapping[str, MarkovModel]
    harmoniser: Harmoniser | None
    recordings_of: Mapping[int, tuple[int, ...]]

    @property
    def works(self) -> tuple[int, ...]:
        """Every training work, in id order."""
        return tuple(sorted({w for m in self.melody_models.values() for w in m.works}))

    def melody_model(self, chorale: bool) -> MarkovModel:
        """The melody model of a texture: part-song sopranos, or tunes (either if one is absent)."""
        wanted = "chorale" if chorale else "tune"
        return self.melody_models.get(wanted) or next(iter(self.melody_models.values()))

    def generate(self, prompt: str, seed: int) -> Piece:
        """Generate a tune (or a harmonised chorale) and credit it to the works behind its notes."""
        request = parse_prompt(prompt)
        bar = 4 * TICKS_PER_QUARTER
        length = max(8, round(request.bars * (4 if request.chorale else 6)))
        made: Generation = self.melody_model(request.chorale).generate(
            seed=seed, length=length, tonic=request.tonic, mode=request.mode, bar_ticks=bar,
            tempo_bpm=request.tempo_bpm, max_verbatim=self.max_verbatim)
        melody = made.melody
        harmony: Harmonisation | None = None
        programs: tuple[int, ...]
        if request.chorale and self.harmoniser is not None:
            harmony = self.harmoniser.harmonise(melody, seed=seed)
            parts = harmony.parts
            programs = CHORALE_PROGRAMS
        else:
            parts = (melody.notes,)
            programs = TUNE_PROGRAMS[:1]
        weights = work_weights(made.notes, harmony=harmony)
        shares = to_shares(weights)
        recording_shares = split_over(shares, {w: self.recordings_of[w] for w in shares})
        log2p = made.log2_prob + (harmony.log2_prob if harmony is not None else 0.0)
        return Piece(self.id, prompt, seed, melody, tuple(parts), tuple(programs), shares,
                     recording_shares, log2p, made.resamples)

    def save(self, directory: Path) -> str:
        """Write the model's files into ``directory``; returns the sha256 over all of them."""
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        for texture, melody_model in sorted(self.melody_models.items()):
            digest.update(melody_model.save(directory / f"melody-{texture}.npz").encode())
        if self.harmoniser is not None:
            digest.update(self.harmoniser.save(directory / "harmony.npz").encode())
        meta = {"kind": KIND, "id": self.id, "manifest_sha256": self.manifest_sha256,
                "order": self.order, "max_verbatim": self.max_verbatim,
                "textures": sorted(self.melody_models),
                "recordings_of": {str(w): list(r) for w, r in self.recordings_of.items()}}
        text = json.dumps(meta, sort_keys=True, indent=1)
        (directory / "model.json").write_text(text, encoding="utf-8")
        digest.update(text.encode())
        return digest.hexdigest()

    @classmethod
    def load(cls, directory: Path) -> ReferenceModel:
        """Read a model written by save()."""
        try:
            meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{directory}: not a saved reference model ({exc})") from exc
        if meta.get("kind") != KIND:
            raise ModelError(f"{directory}: model kind {meta.get('kind')!r} is not {KIND!r}")
        harmony_path = directory / "harmony.npz"
        return cls(
            id=str(meta["id"]),
            manifest_sha256=str(meta["manifest_sha256"]),
            order=int(meta["order"]),
            max_verbatim=int(meta["max_verbatim"]),
            melody_models={t: MarkovModel.load(directory / f"melody-{t}.npz")
                           for t in meta["textures"]},
            harmoniser=Harmoniser.load(harmony_path) if harmony_path.exists() else None,
            recordings_of={int(w): tuple(r) for w, r in meta["recordings_of"].items()},
        )


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """The sha256 of a manifest's canonical bytes (the hash its dataset was signed under)."""
    return hashlib.sha256(canonical(manifest)).hexdigest()


def training_scores(
    manifest: Mapping[str, Any],
) -> tuple[dict[int, str], dict[int, tuple[int, ...]]]:
    """Each included work's score source, and the included recordings that credit flows to."""
    sources: dict[int, str] = {}
    recordings: dict[int, list[int]] = {}
    for item in manifest.get("included", []):
        work_id, source = item.get("work_id"), item.get("source")
        if work_id is None or not source:
            continue
        sources[int(work_id)] = str(source)
        recordings.setdefault(int(work_id), []).append(int(item["recording_id"]))
    return sources, {w: tuple(sorted(set(r))) for w, r in recordings.items()}


@dataclass(frozen=True, slots=True)
class ReferenceGenerator:
    """Trains the reference model: Markov order ``order`` with the copy guard, plus harmoniser.

    ``max_verbatim`` is the copy guard: no run of that many notes is copied from one training
    work (0 turns it off, which only tests of the output checks should do).
    """

    order: int = 4
    max_verbatim: int = 8
    cache_dir: Path | None = None
    kind: str = KIND

    def train(self, manifest: Mapping[str, Any]) -> ReferenceModel:
        """Train on the scores of the manifest's included works, and nothing else."""
        sources, recordings_of = training_scores(manifest)
        if not sources:
            raise ModelError("the manifest includes no work with a score to train on")
        by_source = load_scores(sorted(set(sources.values())), cache_dir=self.cache_dir)
        works = {w: by_source[s] for w, s in sources.items()}
        part_songs = {w: m for w, m in works.items() if m.bass}
        tunes = {w: m for w, m in works.items() if not m.bass}
        melody_models = {texture: MarkovModel.train(chosen, order=self.order)
                         for texture, chosen in (("chorale", part_songs), ("tune", tunes))
                         if chosen}
        harmoniser = Harmoniser.train(part_songs) if part_songs else None
        sha = manifest_sha256(manifest)
        guard = f"-g{self.max_verbatim}" if self.max_verbatim != 8 else ""
        model_id = f"markov-{sha[:10]}-o{self.order}{guard}"
        return ReferenceModel(model_id, sha, self.order, self.max_verbatim, melody_models,
                              harmoniser, recordings_of)
