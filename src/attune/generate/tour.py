"""The demo's governed-generation tour: dataset -> model -> three outputs, credited and stamped.

Run after the demo world is built: it builds the signed training dataset for one platform and
territory, trains the reference generator on it, generates three outputs behind every gate, and
reads back the first one's credits, content credentials and watermark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, select

from attune.generate.dataset import build_dataset
from attune.generate.gate import check_prompt
from attune.generate.pipeline import GenerationRefused, generate_output, train_model
from attune.provenance import read_manifest, watermark_key
from attune.provenance.watermark import detect_file
from attune.rights.models import Party, PartyRole, Work
from attune.store.db import transaction

ACTOR = "demo"
PLATFORM = "Chordwell AI"
TERRITORY = "US"
PROMPTS = (
    ("a four-part chorale in G major, 8 bars", 11),
    ("a lively reel in D, 8 bars", 12),
    ("a slow air in A minor, 8 bars", 13),
)


@dataclass(frozen=True, slots=True)
class Credited:
    """One output of the tour: id, what it is, its top credited works, and any refusal."""

    prompt: str
    output_id: str | None
    description: str
    top_works: tuple[tuple[str, Decimal], ...]
    works_credited: int
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Tour:
    """What the tour did: the dataset and model, the outputs, and the first output's provenance."""

    dataset_id: int
    included: int
    excluded: int
    model_id: str
    outputs: tuple[Credited, ...]
    wav: Path | None
    credentials: str
    watermark: str
    refused_prompt: str


def run_tour(engine: Engine, base: Path, at: datetime,
             progress: Callable[[str], None] | None = None) -> Tour:
    """Dataset, model and three outputs for the demo platform; returns what to print."""
    say = progress or (lambda _: None)
    with transaction(engine) as s:
        platform = s.scalars(select(Party).where(Party.name == PLATFORM)).one()
        say("Building the signed training dataset")
        dataset = build_dataset(s, use="train", at=at, territory=TERRITORY,
                                licensee_id=platform.id, name=f"{PLATFORM} training {TERRITORY}",
                                actor=ACTOR)
        dataset_id, counts = dataset.id, manifest_counts(dataset.manifest)
    with transaction(engine) as s:
        say("Training the reference generator on the dataset's scores")
        model, _ = train_model(s, base, dataset_id, actor=ACTOR)
    outputs: list[Credited] = []
    first_wav: Path | None = None
    for prompt, seed in PROMPTS:
        say(f"Generating: {prompt}")
        try:
            with transaction(engine) as s:
                done = generate_output(s, base, model_id=model.id, prompt=prompt, seed=seed,
                                       platform_id=platform.id, actor=ACTOR, at=at,
                                       territory=TERRITORY)
                titles = dict(s.execute(select(Work.id, Work.title).where(
                    Work.id.in_(list(done.piece.work_shares)))).all())
        except GenerationRefused as exc:
            outputs.append(Credited(prompt, None, "", (), 0, "; ".join(exc.reasons)))
            continue
        ranked = sorted(done.piece.work_shares.items(), key=lambda kv: (-kv[1], kv[0]))
        outputs.append(Credited(prompt, done.output_id, done.piece.describe(),
                                tuple((titles.get(w, str(w)), v) for w, v in ranked[:3]),
                                len(ranked)))
        first_wav = first_wav or done.wav
    credentials = watermark = "no output was released"
    if first_wav is not None:
        report = read_manifest(first_wav, key_dir=base / "c2pa")
        credentials = f"C2PA manifest {report.state}" + (
            "" if report.ok else f" ({'; '.join(report.problems)})")
        found = detect_file(first_wav, key=watermark_key())
        watermark = (f"watermark decodes output id {found.output_id}" if found.output_id
                     else "watermark not found")
    refused = _refused_prompt(engine, at)
    return Tour(dataset_id, counts[0], counts[1], model.id, tuple(outputs), first_wav,
                credentials, watermark, refused)


def manifest_counts(manifest: str) -> tuple[int, int]:
    """(included, excluded) counts of a stored manifest."""
    import json

    data = json.loads(manifest)
    return len(data["included"]), len(data["excluded"])


def _refused_prompt(engine: Engine, at: datetime) -> str:
    """The prompt gate's answer to a style prompt naming the first artist who has not opted in."""
    with transaction(engine) as s:
        platform = s.scalars(select(Party).where(Party.name == PLATFORM)).one()
        artists = s.scalars(select(Party).join(PartyRole).where(PartyRole.role == "artist")
                            .order_by(Party.id)).all()
        for artist in artists:
            prompt = f"a tune in the style of {artist.name}"
            gate = check_prompt(s, prompt, at=at, territory=TERRITORY, licensee_id=platform.id)
            if not gate.allowed:
                return f"{prompt!r} refused: {gate.refusal()}"
    return "every demo artist allows style prompts"
