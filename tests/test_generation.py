"""Governed generation end to end, on real corpus scores, real fluidsynth audio and both databases.

A small rights world (a label licensing training to a platform, writers who opt in) is built over
real music21 scores; a signed dataset is built from the consent engine; the reference generator is
trained on it and generates behind the prompt gate and output checks; the output is rendered,
watermarked, signed and registered with shares summing to exactly 1.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from attune.generate.dataset import build_dataset, get_dataset, manifest_of
from attune.generate.markov import MarkovModel
from attune.generate.pipeline import GenerationRefused, generate_output, train_model
from attune.generate.reference import ReferenceModel
from attune.melody.scores import load_score
from attune.melody.similarity import MelodyIndex, check_copy
from attune.provenance import read_manifest, watermark_key
from attune.provenance.watermark import detect_file
from attune.rights import registry
from attune.rights.models import Party
from attune.rights.outputs import get_output
from attune.rights.records import ShareIn, WorkIn
from attune.store import audit
from attune.store.db import transaction
from tests import factory

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")

AT = datetime(2026, 6, 1, tzinfo=UTC)
CHORALES = ("bach/bwv66.6.mxl", "bach/bwv269.mxl", "bach/bwv347.mxl", "bach/bwv153.1.mxl")
TUNES = ("oneills1850/0001-0050.abc#1", "oneills1850/0001-0050.abc#2",
         "oneills1850/0001-0050.abc#3")


@pytest.fixture(autouse=True)
def _keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_SIGNING_KEY_DIR", str(tmp_path / "keys"))


def _world(
    engine: Engine, sources: tuple[str, ...], *, refuse: str | None = None
) -> dict[str, int]:
    """A label licensing training to a platform; one writer and one artist per work, opted in."""
    ids: dict[str, int] = {}
    with transaction(engine) as s:
        label = factory.party(s, "Harbourlight Records", "label", kind="organisation")
        platform = factory.party(s, "Chordwell AI", "platform", kind="organisation")
        ids["platform"] = platform.id
        factory.agreement(s, label, platform, uses=("train",))
        for i, source in enumerate(sources):
            writer = factory.party(s, f"Writer Number{i}", "songwriter")
            artist = factory.party(s, f"Singer Number{i}", "artist")
            w = registry.add_work(s, WorkIn(
                title=f"Work {i}", source=f"music21:{source}",
                shares=(ShareIn(party_id=writer.id, role="writer", share=Decimal(100)),)), "test")
            rec = factory.recording(s, f"Recording {i}", w, [label], [artist])
            ids[f"work{i}"], ids[f"rec{i}"], ids[f"writer{i}"] = w.id, rec.id, writer.id
            decision = "not_allowed" if refuse == f"writer{i}" else "allowed"
            factory.consent(s, writer, decision)
            factory.consent(s, artist, "allowed")
        style_ok = factory.party(s, "Wren Carrow", "artist")
        factory.consent(s, style_ok, "allowed", use="style_reference")
        factory.party(s, "Teodor Santerre", "artist")  # never asked: no style consent
    return ids


def _train(engine: Engine, base: Path, platform: int, *, order: int = 3,
           max_verbatim: int = 8) -> tuple[int, ReferenceModel]:
    with transaction(engine) as s:
        dataset = build_dataset(s, use="train", at=AT, licensee_id=platform, actor="test")
        dataset_id = dataset.id
    with transaction(engine) as s:
        model, _ = train_model(s, base, dataset_id, actor="test", order=order,
                               max_verbatim=max_verbatim)
    return dataset_id, model


def test_train_generate_check_stamp_and_credit(engine: Engine, tmp_path: Path) -> None:
    ids = _world(engine, CHORALES + TUNES, refuse="writer6")
    dataset_id, model = _train(engine, tmp_path, ids["platform"])
    with transaction(engine) as s:
        manifest = manifest_of(get_dataset(s, dataset_id))
    trained = {item["work_id"] for item in manifest["included"]}
    assert trained == {ids[f"work{i}"] for i in range(6)}  # work 6's writer refused
    assert model.manifest_sha256 == get_dataset_sha(engine, dataset_id)
    assert set(model.works) == trained
    assert model.harmoniser is not None  # the chorales have a bass line

    with transaction(engine) as s:
        done = generate_output(s, tmp_path, model_id=model.id, seed=5, actor="test", at=AT,
                               prompt="a four-part chorale in the style of Wren Carrow, G major",
                               platform_id=ids["platform"])
    assert len(done.piece.parts) == 4
    assert sum(done.piece.work_shares.values()) == Decimal(1)
    assert set(done.piece.work_shares) <= trained
    assert set(done.piece.recording_shares) <= {ids[f"rec{i}"] for i in range(6)}
    # The chorale's notes come from the chorales' counts above all.
    chorale_share = sum(v for w, v in done.piece.work_shares.items()
                        if w in {ids[f"work{i}"] for i in range(4)})
    assert chorale_share > Decimal("0.5")

    with transaction(engine) as s:
        out = get_output(s, done.output_id)
        assert sum(a.share for a in out.attributions) == Decimal(1)
        assert out.model == model.id
    assert done.wav.stat().st_size > 100_000
    report = read_manifest(done.wav, key_dir=tmp_path / "c2pa")
    assert report.ok, report.problems
    assert detect_file(done.wav, key=watermark_key()).output_id == int(done.output_id[4:])
    assert "melody" not in done.checks.reasons()[0] or "no catalog work" in done.checks.reasons()[0]

    # Same prompt and seed: the same piece (the model is deterministic given its seed).
    again = model.generate("a four-part chorale in the style of Wren Carrow, G major", 5)
    assert again.melody == done.piece.melody and again.work_shares == done.piece.work_shares


def get_dataset_sha(engine: Engine, dataset_id: int) -> str:
    with transaction(engine) as s:
        return get_dataset(s, dataset_id).sha256


def test_refused_prompt_and_flagged_model_say_why(engine: Engine, tmp_path: Path) -> None:
    ids = _world(engine, TUNES)
    _, model = _train(engine, tmp_path, ids["platform"])
    with transaction(engine) as s, pytest.raises(GenerationRefused) as refused:
        generate_output(s, tmp_path, model_id=model.id, seed=1, actor="test", at=AT,
                        prompt="a reel like Teodor Santerre", platform_id=ids["platform"])
    assert refused.value.stage == "prompt refused"
    assert "'Teodor Santerre'" in refused.value.reasons[0]
    assert "style_reference" in refused.value.reasons[0]

    # A writer revokes training consent: the model is flagged and will not generate.
    with transaction(engine) as s:
        writer = s.get(Party, ids["writer1"])
        assert writer is not None
        factory.consent(s, writer, "not_allowed", since=datetime(2026, 5, 1))
    with transaction(engine) as s, pytest.raises(GenerationRefused) as flagged:
        generate_output(s, tmp_path, model_id=model.id, seed=1, actor="test", at=AT,
                        prompt="a reel", platform_id=ids["platform"])
    assert "flagged" in flagged.value.stage
    assert f"recording {ids['rec1']}" in flagged.value.reasons[0]
    assert "Writer Number1" in flagged.value.reasons[0]


def test_a_model_trained_on_one_work_copies_it_and_the_check_blocks(
    engine: Engine, tmp_path: Path
) -> None:
    source = "oneills1850/0001-0050.abc#4"
    tune = load_score(f"music21:{source}", cache_dir=tmp_path / "scores")
    copier = MarkovModel.train({1: tune}, order=6)
    made = copier.generate(seed=3, length=len(tune), tonic=tune.tonic, mode=tune.mode,
                           max_verbatim=10_000)
    index = MelodyIndex.build({"1": tune})
    verdict = check_copy(made.melody, index)
    assert verdict.blocked
    assert verdict.hits[0].key == "1" and verdict.hits[0].matched_notes >= 12
    assert "bars" in verdict.reason()

    # Through the pipeline: a dataset of that one work and no copy guard (the checks are the
    # second line of defence); every output is blocked with evidence, and nothing is released.
    ids = _world(engine, (source,))
    _, model = _train(engine, tmp_path, ids["platform"], order=6, max_verbatim=0)
    blocked = 0
    for seed in range(3):
        with transaction(engine) as s:
            try:
                generate_output(s, tmp_path, model_id=model.id, seed=seed, actor="test", at=AT,
                                prompt="a tune in D, 16 bars", platform_id=ids["platform"])
            except GenerationRefused as exc:
                assert exc.stage == "output blocked"
                assert f"work {ids['work0']}" in exc.reasons[0] and "bars" in exc.reasons[0]
                blocked += 1
    assert blocked == 3
    with transaction(engine) as s:
        assert not list(s.scalars(select(audit.AuditEntry).where(
            audit.AuditEntry.action == "generation.release")))
