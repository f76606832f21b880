"""Dataset manifests: built by the consent engine, signed, verified, traced after revocation."""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from attune.generate import dataset as ds
from attune.generate.models import Dataset, DatasetItem
from attune.rights import registry
from attune.rights.models import Party, Recording, Work
from attune.rights.outputs import AttributionIn, OutputIn, add_output
from attune.rights.policy import decide
from attune.rights.records import ArtistIn, OwnerIn, RecordingIn, ShareIn, WorkIn
from attune.store.db import transaction
from tests import factory

BUILT = datetime(2026, 6, 1, tzinfo=UTC)
REVOKED = datetime(2026, 7, 1, tzinfo=UTC)
LATER = datetime(2026, 8, 1, tzinfo=UTC)
SCORE = "music21:bach/bwv66.6.mxl"
KEY = Ed25519PrivateKey.generate()


@dataclass(frozen=True)
class World:
    """Ids of the test world."""

    label: int
    platform: int
    singer: int
    refuser: int
    writer: int
    other_writer: int
    unlicensed: int
    grant: int
    refusal: int
    scoped_refusal: int
    work: int
    other_work: int
    r_in: int
    r_same_set: int
    r_refused: int
    r_no_agreement: int
    r_no_work: int
    r_scoped: int


def _recording(
    s: Session, title: str, work: Work | None, owner: Party, artist: Party, audio: bytes
) -> Recording:
    """A recording with one owner, one main artist and the SHA-256 of some audio bytes."""
    return registry.add_recording(
        s,
        RecordingIn(
            title=title,
            isrc=factory.next_isrc(),
            work_id=work.id if work else None,
            artists=(ArtistIn(party_id=artist.id),),
            owners=(OwnerIn(party_id=owner.id, share=Decimal(100)),),
            content_hash=hashlib.sha256(audio).hexdigest(),
        ),
        factory.ACTOR,
    )


def build_world(engine: Engine) -> World:
    """A label licensing training to a platform, artists and writers who opt in or out."""
    with transaction(engine) as s:
        label = factory.party(s, "Northbound Records", "label", kind="organisation")
        platform = factory.party(s, "Tonal AI", "platform", kind="organisation")
        unlicensed = factory.party(s, "Quiet Label", "label", kind="organisation")
        singer = factory.party(s, "Mara Vell", "artist")
        refuser = factory.party(s, "Ivo Strand", "artist")
        writer = factory.party(s, "Lena Ortiz", "songwriter")
        other_writer = factory.party(s, "Tom Reyes", "songwriter")
        shares = (ShareIn(party_id=writer.id, share=Decimal(100)),)
        work = registry.add_work(
            s, WorkIn(title="Chorale", shares=shares, source=SCORE), factory.ACTOR
        )
        other_work = factory.work(s, "Other Song", other_writer)
        factory.agreement(s, label, platform)
        grant = factory.consent(s, singer)
        factory.consent(s, writer)
        factory.consent(s, other_writer)
        refusal = factory.consent(s, refuser, "not_allowed")
        r_in = _recording(s, "Chorale (Mara Vell)", work, label, singer, b"one")
        r_same_set = _recording(s, "Chorale (live)", work, label, singer, b"two")
        r_refused = _recording(s, "Other Song", other_work, label, refuser, b"three")
        r_no_agreement = _recording(s, "Chorale (demo)", work, unlicensed, singer, b"four")
        r_no_work = _recording(s, "Untitled", None, label, singer, b"five")
        r_scoped = _recording(s, "Chorale (remix)", work, label, singer, b"six")
        scoped_refusal = factory.consent(
            s, singer, "not_allowed", scope="recording", recording_id=r_scoped.id
        )
        return World(
            label=label.id,
            platform=platform.id,
            singer=singer.id,
            refuser=refuser.id,
            writer=writer.id,
            other_writer=other_writer.id,
            unlicensed=unlicensed.id,
            grant=grant.id,
            refusal=refusal.id,
            scoped_refusal=scoped_refusal.id,
            work=work.id,
            other_work=other_work.id,
            r_in=r_in.id,
            r_same_set=r_same_set.id,
            r_refused=r_refused.id,
            r_no_agreement=r_no_agreement.id,
            r_no_work=r_no_work.id,
            r_scoped=r_scoped.id,
        )


def build(engine: Engine, **extra: object) -> int:
    """Build a training dataset at BUILT and return its id."""
    with transaction(engine) as s:
        return ds.build_dataset(s, at=BUILT, actor="test", key=KEY, **extra).id  # type: ignore[arg-type]


def test_build_includes_exactly_what_decide_allows(engine: Engine) -> None:
    w = build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        dataset = ds.get_dataset(s, dataset_id)
        manifest = ds.manifest_of(dataset)
        included = {i["recording_id"]: i for i in manifest["included"]}
        excluded = {i["recording_id"]: i for i in manifest["excluded"]}
        assert set(included) == {w.r_in, w.r_same_set}
        assert set(excluded) == {w.r_refused, w.r_no_agreement, w.r_no_work, w.r_scoped}
        for rid in included.keys() | excluded.keys():
            decision = decide(s, "train", rid, BUILT)
            assert decision.allowed == (rid in included)
            if decision.allowed:
                assert included[rid]["reasons"] == [r.as_dict() for r in decision.reasons]
            else:
                first = decision.reasons[0]
                (reason,) = excluded[rid]["reasons"]
                assert (reason["code"], reason["party_id"], reason["consent_id"]) == (
                    first.code,
                    first.party_id,
                    first.consent_id,
                )
        grants = {r["consent_id"] for r in included[w.r_in]["reasons"]}
        assert w.grant in grants
        assert any(r["code"] == "agreement_covers" for r in included[w.r_in]["reasons"])
        assert excluded[w.r_refused]["reasons"][0]["consent_id"] == w.refusal
        assert excluded[w.r_scoped]["reasons"][0]["consent_id"] == w.scoped_refusal
        assert excluded[w.r_no_agreement]["reasons"][0]["code"] == "no_agreement"
        assert excluded[w.r_no_agreement]["reasons"][0]["party_id"] == w.unlicensed
        assert excluded[w.r_no_work]["reasons"][0]["code"] == "no_work"
        item = included[w.r_in]
        assert item["content_sha256"] == hashlib.sha256(b"one").hexdigest()
        assert item["source"] == SCORE and item["work_id"] == w.work
        from music21 import corpus

        score = Path(corpus.getWork("bach/bwv66.6.mxl"))  # type: ignore[arg-type]
        assert item["score_sha256"] == hashlib.sha256(score.read_bytes()).hexdigest()
        assert manifest["counts"]["included"] == 2 and manifest["counts"]["excluded"] == 4
        assert ds.training_works(dataset) == {w.work: sorted([w.r_in, w.r_same_set])}
        snap = ds.dataset_snapshots(s, [dataset])[0]
        assert (snap["included"], snap["excluded"]) == (2, 4)
        assert ds.verify_dataset(s, dataset_id) == ds.Verification(True, ())


def test_manifest_is_canonical_and_signed(engine: Engine) -> None:
    build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        dataset = ds.get_dataset(s, dataset_id)
        body = dataset.manifest.encode()
        assert body == ds.canonical(json.loads(body))
        assert dataset.sha256 == hashlib.sha256(body).hexdigest()
        KEY.public_key().verify(bytes.fromhex(dataset.signature), body)
        assert dataset.public_key == ds.public_key_hex(KEY)
        signed = ds.signed_manifest(dataset)
    assert ds.verify_signed(signed).ok
    forged = {**signed, "manifest": {**signed["manifest"], "use": "sample"}}
    result = ds.verify_signed(forged)
    assert not result.ok and any(p.startswith("signature:") for p in result.problems)


def test_verify_names_an_altered_manifest(engine: Engine) -> None:
    w = build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        text = ds.get_dataset(s, dataset_id).manifest
        s.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id)
            .values(manifest=text.replace("Chorale (Mara Vell)", "Chorale (forged)"))
        )
    with transaction(engine) as s:
        result = ds.verify_dataset(s, dataset_id)
    assert not result.ok
    assert any(p.startswith("manifest: its SHA-256") for p in result.problems)
    assert any(p.startswith("signature:") for p in result.problems)
    with transaction(engine) as s:
        s.execute(
            update(DatasetItem)
            .where(DatasetItem.dataset_id == dataset_id, DatasetItem.recording_id == w.r_refused)
            .values(included=True)
        )
    with transaction(engine) as s:
        problems = ds.verify_dataset(s, dataset_id).problems
    assert f"item recording {w.r_refused}: stored as included, the manifest says otherwise" in (
        problems
    )


def test_verify_names_an_altered_signature(engine: Engine) -> None:
    build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        good = ds.get_dataset(s, dataset_id).signature
        bad = ("0" if good[0] != "0" else "1") + good[1:]
        s.execute(update(Dataset).where(Dataset.id == dataset_id).values(signature=bad))
    with transaction(engine) as s:
        result = ds.verify_dataset(s, dataset_id)
    assert not result.ok
    assert len(result.problems) == 1 and result.problems[0].startswith("signature:")


def test_verify_names_changed_audio_and_score(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        s.execute(update(Recording).where(Recording.id == w.r_in).values(content_hash="ab" * 32))
    with transaction(engine) as s:
        result = ds.verify_dataset(s, dataset_id)
    assert not result.ok
    (problem,) = result.problems
    assert problem.startswith(f"item recording {w.r_in} (")
    assert "content hash is now abababababababab" in problem
    monkeypatch.setattr(ds, "_corpus_sha256", lambda path: "cd" * 32)
    with transaction(engine) as s:
        problems = ds.verify_dataset(s, dataset_id).problems
    scores = [p for p in problems if f"score {SCORE} hashes to cdcdcdcd" in p]
    with transaction(engine) as s:
        labels = {
            f"item recording {rid} ({registry.find_recording(s, rid).isrc})"
            for rid in (w.r_in, w.r_same_set)
        }
    assert {p.split(":")[0] for p in scores} == labels


def test_revocation_after_build_flags_dataset_model_and_outputs(engine: Engine) -> None:
    w = build_world(engine)
    dataset_id = build(engine)
    with transaction(engine) as s:
        model = ds.register_model(
            s,
            model_id="markov-1",
            dataset_id=dataset_id,
            kind="attune-markov/1",
            params={"order": 4},
            artifact_sha256="0" * 64,
            artifact_path="/models/markov-1",
            actor="test",
        )
        assert ds.model_snapshot(model)["params"] == {"order": 4}
        with pytest.raises(registry.RegistryError, match="already registered"):
            ds.register_model(
                s,
                model_id="markov-1",
                dataset_id=dataset_id,
                kind="k",
                params={},
                artifact_sha256="0" * 64,
                artifact_path="/x",
                actor="test",
            )

        def output(output_id: str, model_id: str, **target: int) -> None:
            atts = (AttributionIn(share=Decimal(1), **target),)
            data = OutputIn(id=output_id, model=model_id, platform_id=w.platform, attributions=atts)
            add_output(s, data, "test")

        output("gen-1", "markov-1", recording_id=w.r_refused)
        output("by-work", "elsewhere", work_id=w.work)
        output("by-recording", "elsewhere", recording_id=w.r_same_set)
        output("unrelated", "elsewhere", recording_id=w.r_refused)
        assert ds.stale_items(s, dataset_id, at=LATER) == []
        assert ds.consent_impact(s, w.singer, at=LATER).datasets == ()
    with transaction(engine) as s:
        registry.revoke_consent(s, w.grant, "test", effective_from=REVOKED)
    with transaction(engine) as s:
        stale = ds.stale_items(s, dataset_id, at=LATER)
        assert [i.recording_id for i in stale] == sorted([w.r_in, w.r_same_set])
        assert all(i.refusals[0].code == "consent_refused" for i in stale)
        assert all(i.refusals[0].party_id == w.singer for i in stale)
        assert ds.stale_items(s, dataset_id, at=BUILT) == []

        impact = ds.consent_impact(s, w.singer, at=LATER)
        (hit,) = impact.datasets
        assert hit.id == dataset_id
        assert [i.recording_id for i in hit.items] == sorted([w.r_in, w.r_same_set])
        revocation = hit.items[0].refusals[0].consent_id
        assert revocation is not None and revocation != w.grant
        assert all(r.party_id == w.singer for i in hit.items for r in i.refusals)
        assert f"consent record {revocation}" in hit.items[0].reasons[0]
        (flagged,) = impact.models
        assert flagged.id == "markov-1" and flagged.dataset_id == dataset_id
        assert flagged.reasons and f"consent record {revocation}" in flagged.reasons[0]
        outputs = {o.id: o for o in impact.outputs}
        assert set(outputs) == {"gen-1", "by-work", "by-recording"}
        assert outputs["by-work"].work_ids == (w.work,)
        assert outputs["by-recording"].recording_ids == (w.r_same_set,)
        assert all(o.reasons for o in outputs.values())
        assert json.loads(json.dumps(impact.as_dict()))["models"][0]["id"] == "markov-1"

        for bystander in (w.other_writer, w.refuser, w.label, w.writer):
            quiet = ds.consent_impact(s, bystander, at=LATER)
            assert (quiet.datasets, quiet.models, quiet.outputs) == ((), (), ())
        assert ds.consent_impact(s, w.singer, at=BUILT).datasets == ()
        with pytest.raises(LookupError, match="no party"):
            ds.consent_impact(s, 10_000, at=LATER)


def test_signing_key_is_created_once_with_private_mode(tmp_path: Path) -> None:
    first = ds.signing_key(tmp_path / "keys")
    path = tmp_path / "keys" / ds.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ds.public_key_hex(ds.signing_key(tmp_path / "keys")) == ds.public_key_hex(first)
    assert [p.name for p in path.parent.iterdir()] == [ds.KEY_FILE]


def test_build_refuses_bad_input_and_stores_nothing(engine: Engine) -> None:
    build_world(engine)
    with pytest.raises(registry.RegistryError, match="use"):
        build(engine, use="Not A Use")
    with pytest.raises(ValueError, match="territory"):
        build(engine, territory="XX")
    with pytest.raises(registry.RegistryError, match="licensee_id"):
        build(engine, licensee_id=10_000)
    with transaction(engine) as s:
        assert ds.list_datasets(s) == []
        with pytest.raises(LookupError, match="no dataset with id 1"):
            ds.verify_dataset(s, 1)
