"""Governed generation end to end: train on a verified manifest; generate behind every gate.

``train_model`` trains the reference generator only on a dataset whose signature and hashes
verify, saves it and registers it with its manifest. ``generate_output`` refuses a flagged
model (its manifest holds items since refused), a prompt without the consents it needs, and an
output that copies a catalog melody or contains catalog audio; otherwise it renders the piece,
watermarks it with the output id, signs its content credentials (naming the manifest hash), and
registers the output with its attribution shares for the royalty engine.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from attune.generate.checks import CheckReport, catalog_index, check_output
from attune.generate.dataset import (
    StaleItem,
    get_dataset,
    manifest_of,
    register_model,
    stale_items,
    verify_dataset,
)
from attune.generate.gate import PASSING, GateDecision, check_prompt
from attune.generate.models import Model as ModelRecord
from attune.generate.reference import Piece, ReferenceGenerator, ReferenceModel
from attune.generate.render import render_wav
from attune.provenance import Generation, stamp_output
from attune.provenance.credits import ContributorCredit, RecordingCredits, ReleaseCredits, to_json
from attune.rights.models import Party
from attune.rights.outputs import AttributionIn, OutputIn, add_output
from attune.rights.policy import as_instant
from attune.store import audit

OUTPUT_PREFIX = "gen-"


class GenerationRefused(Exception):
    """A generation that may not happen or may not be released, with every reason."""

    def __init__(self, stage: str, reasons: tuple[str, ...]) -> None:
        super().__init__(f"{stage}: " + "; ".join(reasons))
        self.stage = stage
        self.reasons = reasons


def work_dir(engine: Engine) -> Path:
    """Where models, rendered outputs and caches live: ATTUNE_DATA/generate, else beside SQLite."""
    chosen = os.environ.get("ATTUNE_DATA")
    if chosen:
        return Path(chosen) / "generate"
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(str(url.database))
        return db.with_name(f"{db.stem}.generate")
    return Path(".attune") / f"generate-{url.database or 'default'}"


def train_model(session: Session, base: Path, dataset_id: int, *, actor: str,
                order: int = 4, max_verbatim: int = 8) -> tuple[ReferenceModel, ModelRecord]:
    """Train the reference generator on a verified dataset; save and register the model."""
    check = verify_dataset(session, dataset_id)
    if not check.ok:
        raise GenerationRefused(f"dataset {dataset_id} does not verify", check.problems)
    manifest = manifest_of(get_dataset(session, dataset_id))
    if manifest.get("use") != "train":
        raise GenerationRefused("training", (f"dataset {dataset_id} was built for use "
                                             f"{manifest.get('use')!r}, not 'train'",))
    model = ReferenceGenerator(order=order, max_verbatim=max_verbatim).train(manifest)
    existing = session.get(ModelRecord, model.id)
    if existing is not None:
        return ReferenceModel.load(Path(existing.artifact_path)), existing
    directory = base / "models" / model.id
    sha = model.save(directory)
    record = register_model(
        session, model_id=model.id, dataset_id=dataset_id, kind="attune-markov/1",
        params={"order": order, "max_verbatim": max_verbatim, "works": len(model.works),
                "harmoniser": model.harmoniser is not None},
        artifact_sha256=sha, artifact_path=str(directory.resolve()), actor=actor)
    return model, record


def load_model(record: ModelRecord) -> ReferenceModel:
    """Load a registered model, refusing files that changed since it was registered."""
    directory = Path(record.artifact_path)
    model = ReferenceModel.load(directory)
    with tempfile.TemporaryDirectory(prefix="attune-model-check-") as scratch:
        again = model.save(Path(scratch))
    if again != record.artifact_sha256:
        raise GenerationRefused("model", (f"the files of model {record.id} in {directory} "
                                          "changed since it was registered",))
    return model


def _next_output_number(session: Session) -> int:
    """The next generated-output number: one more than the largest ``gen-N`` registered."""
    from attune.rights.outputs import Output

    ids = session.scalars(select(Output.id).where(Output.id.like(f"{OUTPUT_PREFIX}%"))).all()
    numbers = [int(m.group(1)) for i in ids if (m := re.fullmatch(r"gen-(\d+)", i))]
    return max(numbers, default=0) + 1


def _credits(output_id: str, title: str, model_id: str) -> ReleaseCredits:
    """DDEX AI disclosure of a generated piece: composed and played by a generative model.

    References follow ERN 4.3.2's patterns: resources ``A...``, releases ``R...``, parties ``P...``.
    """
    party = "P-" + re.sub(r"[^0-9A-Za-z_-]", "-", model_id)
    recording = RecordingCredits(
        reference=f"A-{output_id}", title=title, isrc=None, contains_ai="All",
        facets={"composition": "All", "instrumentation": "All", "vocals": "None",
                "lyrics": "None", "post-production": "None"},
        contributors=(ContributorCredit(party_reference=party, name=model_id,
                                        roles=("Composer", "Arranger"), ai_contribution="All",
                                        generative_ai=True),))
    return ReleaseCredits(f"R-{output_id}", title, "All", (recording,))


@dataclass(frozen=True, slots=True)
class Published:
    """A released output: its registry id, the piece, files written, and every check passed."""

    output_id: str
    piece: Piece
    gate: GateDecision
    checks: CheckReport
    wav: Path
    midi: Path
    credits: Path
    stale: tuple[StaleItem, ...]


def generate_output(
    session: Session,
    base: Path,
    *,
    model_id: str,
    prompt: str,
    seed: int,
    platform_id: int,
    actor: str,
    at: datetime | None = None,
    territory: str | None = None,
    audio_index: Path | None = None,
    allow_flagged: bool = False,
) -> Published:
    """Generate, check, render, stamp and register one output, or raise GenerationRefused."""
    when = as_instant(at)
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise GenerationRefused("model", (f"no model {model_id!r} is registered",))
    if session.get(Party, platform_id) is None:
        raise GenerationRefused("platform", (f"no party with id {platform_id}",))
    stale = tuple(stale_items(session, record.dataset_id, at=when))
    if stale and not allow_flagged:
        some = "; ".join(f"recording {s.recording_id}: {s.reasons[0]}" for s in stale[:3])
        raise GenerationRefused(
            f"model {model_id} is flagged",
            (f"its dataset {record.dataset_id} holds {len(stale)} item(s) no longer allowed "
             f"for training ({some}); retrain on a new dataset",))
    gate = check_prompt(session, prompt, at=when, territory=territory, licensee_id=platform_id)
    if not gate.allowed:
        raise GenerationRefused("prompt refused", tuple(
            r.message for r in gate.reasons if r.code not in PASSING))
    model = load_model(record)
    piece = model.generate(prompt, seed)
    index, titles = catalog_index(session, base / "cache")
    first = check_output(piece.melody, index, titles)
    if first.blocked:
        raise GenerationRefused("output blocked", first.reasons())
    number = _next_output_number(session)
    output_id = f"{OUTPUT_PREFIX}{number}"
    out_dir = base / "outputs"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="attune-render-") as tmp:
        raw = render_wav(piece.midi(), Path(tmp) / "raw.wav")
        checks = check_output(piece.melody, index, titles, wav=raw, audio_index=audio_index)
        if checks.blocked:
            raise GenerationRefused("output blocked", checks.reasons())
        title = f"{output_id}: {piece.describe()}"
        credits = _credits(output_id, title, model_id)
        dataset = get_dataset(session, record.dataset_id)
        wav = out_dir / f"{output_id}.wav"
        stamp_output(raw, wav, Generation(title=title, output_id=number, model=model_id,
                                          dataset_sha256=dataset.sha256, contains_ai="All",
                                          training="notAllowed", credits=credits),
                     key_dir=base / "c2pa")
    midi = out_dir / f"{output_id}.mid"
    midi.write_bytes(piece.midi())
    credits_path = out_dir / f"{output_id}.credits.json"
    credits_path.write_text(to_json(credits), encoding="utf-8")
    add_output(session, OutputIn(
        id=output_id, model=model_id, platform_id=platform_id, prompt=prompt,
        attributions=tuple(AttributionIn(recording_id=r, share=s)
                           for r, s in sorted(piece.recording_shares.items()))), actor)
    audit.append(session, actor=actor, action="generation.release", entity="output",
                 entity_id=output_id, payload={
                     "model": model_id, "seed": seed, "dataset_id": record.dataset_id,
                     "checks": list(checks.reasons()), "wav": wav.name,
                     "flagged_override": [item.recording_id for item in stale],
                     "work_shares": {str(w): str(s) for w, s in piece.work_shares.items()}})
    return Published(output_id, piece, gate, checks, wav, midi, credits_path, stale)


def record_refusal(session: Session, actor: str, model_id: str, prompt: str, seed: int,
                   refused: GenerationRefused) -> None:
    """Audit a refused prompt or blocked output with its reasons (run in its own transaction,
    since the generation's transaction rolls back)."""
    audit.append(session, actor=actor, action="generation.refuse", entity="model",
                 entity_id=model_id, payload={"prompt": prompt, "seed": seed,
                                              "stage": refused.stage,
                                              "reasons": list(refused.reasons)})
